"""What the benchmarks measure, each with the reference it is compared with.

* Union-find: `alias_pairs` makes the input; `partition_core`, `partition_networkx` and
  `partition_scipy` each turn it into the same partition (union all pairs, then list the sets).
* Ingest: `floor_ingest` is the floor the engine is compared with -- each line parsed with
  `urllib.parse.parse_qsl` and written with one ``executemany`` into an indexed SQLite table;
  `engine_ingest` is the engine on the same lines, `cli_ingest` the ``identity ingest`` command.
* Reopen and lookups: `build_db` makes a database of exactly N identities through the engine;
  `reopen_lookup` opens it and answers one lookup.

Every function here does the work only; timing and memory are `bench.measure`'s business.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import sqlite3
from array import array
from binascii import b2a_base64
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from bench import workloads

#: Receive time of every ingested call (so that runs are reproducible).
RECEIVED = workloads.EPOCH
#: The tenant of the `issue2` calls with the default single tenant.
TENANT = workloads.tenant_names(1)[0]
#: Identities per alias pair in the union-find goal: 1,000,000 pairs over 800,000 identities.
IDENTITIES_PER_PAIR = 0.8

Pair = tuple[str, str]
Partition = list[set[str]]

# --- union-find --------------------------------------------------------------------------------


def identity_names(n: int, seed: int = 0) -> list[str]:
    """Return `n` distinct identities shaped like real ones, in a seeded random order.

    60% anonymous base64 IDs (16 characters, mixed case, ``+`` and ``/``), 30% e-mail
    addresses, 10% user ids, as in the `issue2` workload.

    Examples
    --------
    >>> names = identity_names(10)
    >>> len(set(names)), identity_names(10) == names
    (10, True)
    """
    rng = random.Random(f"identity-bench:names:{seed}")
    salt = rng.getrandbits(64)
    mask = (1 << 64) - 1
    names: list[str] = []
    for i in range(n):
        x = ((i + 1) * 0x9E3779B97F4A7C15 ^ salt) & mask
        kind = i % 10
        if kind < 6:
            # x is a bijection of i, so the IDs are distinct
            raw = x.to_bytes(8, "big") + (x * 0xD6E8FEB86659FD93 & 0xFFFFFFFF).to_bytes(4, "big")
            names.append(b2a_base64(raw, newline=False).decode("ascii"))
        elif kind < 9:
            names.append(f"user{x % 997}.{i}@example.com")
        else:
            names.append(f"User {i}")
    rng.shuffle(names)
    return names


def alias_pairs(n_pairs: int, n_identities: int, seed: int = 0) -> list[Pair]:
    """Return `n_pairs` alias pairs over exactly `n_identities` identities (when they fit).

    The first ``n_identities // 2`` pairs join the identities two by two, so each occurs at
    least once; the rest join uniformly random distinct identities. The pairs are then
    shuffled. With fewer than ``n_identities / 2`` pairs only ``2 * n_pairs`` occur.

    Examples
    --------
    >>> pairs = alias_pairs(10, 8)
    >>> len(pairs), len({x for pair in pairs for x in pair}), all(a != b for a, b in pairs)
    (10, 8, True)
    """
    if n_identities < 2 and n_pairs:
        raise ValueError(f"alias pairs need at least 2 identities, not {n_identities}")
    names = identity_names(n_identities, seed)
    rng = random.Random(f"identity-bench:pairs:{seed}")
    covering = min(n_pairs, n_identities // 2)
    pairs = [(names[2 * i], names[2 * i + 1]) for i in range(covering)]
    rand = rng.random
    for _ in range(n_pairs - covering):
        a = int(rand() * n_identities)
        b = int(rand() * (n_identities - 1))
        pairs.append((names[a], names[b + 1 if b >= a else b]))
    rng.shuffle(pairs)
    return pairs


def partition_core(pairs: Iterable[Pair]) -> Partition:
    """Union every pair with `identity.core.UnionFind`, then list the sets.

    The pairs go in with one `~identity.core.UnionFind.union_pairs` call (interning in bulk),
    the way the engine hands a batch's links over; `partition_core_each` is the same with
    one ``union`` call per pair.
    """
    from identity.core import UnionFind

    uf: UnionFind[str] = UnionFind()
    uf.union_pairs(pairs)
    return list(uf.to_sets())


def partition_core_each(pairs: Iterable[Pair]) -> Partition:
    """Union every pair with one `identity.core.UnionFind.union` call each, then list the sets."""
    from identity.core import UnionFind

    uf: UnionFind[str] = UnionFind()
    union = uf.union
    for a, b in pairs:
        union(a, b)
    return list(uf.to_sets())


def partition_networkx(pairs: Iterable[Pair]) -> Partition:
    """Union every pair with `networkx.utils.UnionFind`, then list the sets."""
    from networkx.utils import UnionFind

    uf = UnionFind()
    union = uf.union
    for a, b in pairs:
        union(a, b)
    return list(uf.to_sets())


def partition_scipy(pairs: Iterable[Pair]) -> Partition:
    """Intern the identities, run `scipy.sparse.csgraph.connected_components`, list the sets.

    Interning (a ``dict`` from identity to a dense integer) and turning labels back into sets
    of identities are part of the work, as they are for the union-find structures.
    """
    import numpy as np
    from scipy.sparse import coo_matrix  # type: ignore[import-untyped]
    from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

    index: dict[str, int] = {}
    intern = index.setdefault
    rows, cols = array("q"), array("q")
    add_row, add_col = rows.append, cols.append
    for a, b in pairs:
        add_row(intern(a, len(index)))
        add_col(intern(b, len(index)))
    n = len(index)
    row = np.frombuffer(rows, dtype=np.int64)
    col = np.frombuffer(cols, dtype=np.int64)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    names = np.empty(n, dtype=object)
    names[:] = list(index)
    return [set(group.tolist()) for group in np.split(names[order], cuts)] if n else []


def union_find_core(pairs: Iterable[Pair]) -> Any:
    """Return an `identity.core.UnionFind` holding every pair, unioned (for memory figures)."""
    from identity.core import UnionFind

    uf: UnionFind[str] = UnionFind()
    uf.union_pairs(pairs)
    return uf


def union_find_networkx(pairs: Iterable[Pair]) -> Any:
    """Return a `networkx.utils.UnionFind` holding every pair, unioned (for memory figures)."""
    from networkx.utils import UnionFind

    uf = UnionFind()
    union = uf.union
    for a, b in pairs:
        union(a, b)
    return uf


PARTITIONS = {
    "core": partition_core,
    "networkx": partition_networkx,
    "scipy": partition_scipy,
}


def canonical(partition: Iterable[Iterable[str]]) -> set[frozenset[str]]:
    """Return a partition as a set of frozensets, to compare partitions (networkx's way).

    Examples
    --------
    >>> canonical([{"b", "a"}, {"c"}]) == canonical([["c"], ["a", "b"]])
    True
    """
    return {frozenset(group) for group in partition}


# --- ingest ----------------------------------------------------------------------------------


def issue2_lines(n_calls: int, seed: int = 0) -> Iterator[str]:
    """Yield `n_calls` query-string lines of the `issue2` workload (no newlines)."""
    return map(workloads.to_url, workloads.issue2(n_calls, seed))


def write_issue2(path: str | os.PathLike[str], n_calls: int, seed: int = 0) -> int:
    """Write `n_calls` `issue2` lines to `path`; return how many were written."""
    return workloads.write(workloads.issue2(n_calls, seed), path, "url")


def read_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield the non-blank lines of a text file, without their line ends (streamed)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.strip():
                yield line


_FLOOR_SCHEMA = """
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant TEXT,
    identity TEXT,
    name TEXT,
    t TEXT,
    d TEXT,
    properties TEXT
);
CREATE INDEX calls_identity ON calls (tenant, identity);
"""


def _floor_rows(lines: Iterable[str]) -> Iterator[tuple[str | None, ...]]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for line in lines:
        path, _, query = line.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        pop = params.pop
        yield (
            path[path.rfind("/") + 1 :],
            pop("_k", None),
            pop("_p", None),
            pop("_n", None),
            pop("_t", None),
            pop("_d", None),
            dumps(params) if params else None,
        )


def floor_ingest(lines: Iterable[str], db_path: str | os.PathLike[str]) -> int:
    """Store `lines` the simplest way there is; return how many rows were written.

    Each line is split at ``?`` and its query parsed with `urllib.parse.parse_qsl`; one
    ``executemany`` in one transaction writes a row per line (kind, the reserved parameters
    and the other ones as a JSON object) into a table indexed on ``(tenant, identity)``. The
    file gets the engine's settings: WAL and ``synchronous=FULL``.
    """
    conn = sqlite3.connect(os.fspath(db_path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_FLOOR_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.executemany(
            "INSERT INTO calls (kind, tenant, identity, name, t, d, properties) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            _floor_rows(lines),
        )
        rows = cursor.rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    return rows


def engine_ingest(
    lines: Iterable[str], db_path: str | os.PathLike[str], *, batch_size: int = 10_000
) -> Any:
    """Apply `lines` with `Engine.ingest` to a database file; return the engine's Summary."""
    from identity.engine import Engine

    with Engine(db_path) as engine:
        return engine.ingest(lines, received=RECEIVED, batch_size=batch_size)


_CALLS = re.compile(r":\s*([\d,]+) calls\b")


def cli_ingest(lines_path: str, db_path: str, *extra: str) -> tuple[int, str]:
    """Run ``identity ingest LINES --db DB`` in this process; return (calls, its output).

    The number of calls is read from the command's summary line (0 if it cannot be found).
    """
    from identity.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["ingest", lines_path, "--db", db_path, "--received", str(RECEIVED), *extra])
    text = out.getvalue()
    if status != 0:
        raise RuntimeError(f"identity ingest exited with status {status}: {text[-2000:]}")
    counts = _CALLS.findall(text)
    return (int(counts[-1].replace(",", "")) if counts else 0), text.strip()


# --- reopen and lookups ----------------------------------------------------------------------


def fill_line(i: int) -> str:
    """Return a property set naming the fresh identity number `i` (tops a database up)."""
    return f"/s?_k={TENANT}&_p=fill-{i}&filled=1&_t={RECEIVED}"


def build_db(db_path: str | os.PathLike[str], n_identities: int, seed: int = 0) -> int:
    """Make `db_path` hold exactly `n_identities` identities, through the engine.

    A new (or existing, smaller) database gets `issue2` calls enough for about 95% of the
    identities, then property sets on fresh identities up to the exact count. Returns the
    number of identities.
    """
    from identity.engine import Engine

    with Engine(db_path, durable=False) as engine:
        have = engine.counts().get("identities", 0)
        if have == 0 and n_identities:
            calls = int(n_identities * 0.95 / 0.8)
            engine.ingest(issue2_lines(calls, seed), received=RECEIVED)
            have = engine.counts()["identities"]
        if have > n_identities:
            raise ValueError(f"{db_path} already holds {have} > {n_identities} identities")
        engine.ingest((fill_line(have + i) for i in range(n_identities - have)), received=RECEIVED)
        return int(engine.counts()["identities"])


def sample_identities(
    db_path: str | os.PathLike[str], k: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Return `k` (tenant, identity) pairs of the database, a seeded sample, read with SQL."""
    conn = sqlite3.connect(f"file:{os.fspath(db_path)}?mode=ro", uri=True)
    try:
        (top,) = conn.execute("SELECT max(id) FROM identities").fetchone()
        rng = random.Random(f"identity-bench:sample:{seed}")
        ids = [1 + int(rng.random() * top) for _ in range(k)] if top else []
        found = []
        for row_id in ids:
            row = conn.execute(
                "SELECT tenant, identity FROM identities WHERE id >= ? ORDER BY id LIMIT 1",
                (row_id,),
            ).fetchone()
            found.append((str(row[0]), str(row[1])))
        return found
    finally:
        conn.close()


def reopen_lookup(db_path: str | os.PathLike[str], tenant: str, identity: str) -> str:
    """Open the database and answer one lookup: the person id of `identity`."""
    from identity.engine import Engine

    with Engine(db_path, create=False) as engine:
        return engine.person_of(tenant, identity)
