"""Audit engines at scale: components and the whole audit, against networkx and scipy.

Run ``python -m bench.engines --links 1e6`` (add ``--memory-limit 256MB``, ``--spark``,
``--skip-memory``...). One run generates a file of alias chains (``--chain`` links each, the
identities 20-character strings in a shuffled order, a few events along them), then measures
in the same process, each in a child process for its peak memory (``ru_maxrss``):

* ``networkx``: ``nx.Graph`` from the edge list of strings and ``connected_components``;
* ``scipy``: the strings interned to integers, then ``scipy.sparse.csgraph.connected_components``
  (the interning is timed too, apart);
* ``duckdb-components``: the same edges as integers in DuckDB, randomized contraction;
* ``duckdb-audit``: the whole audit of the file (read, validate, fold, components, report);
* ``memory-audit``: the in-memory engine's audit of the file (ingest into SQLite, then audit);
* ``spark-components`` and ``spark-audit`` (the whole audit, local[2]), when asked for.

Times are wall-clock medians of ``--repeat`` rounds, the subjects taking turns in each round;
the machine is shared, so compare ratios (each round's too, printed at the end).

Measured on the 2-core, 24 GiB machine (shared; its speed varies by half from hour to hour,
so compare ratios within a run), chains of 500, 2026-12-03: see the README's "Scaling out"
table. At 1M links networkx took 4.51 s and the DuckDB audit 4.26 s (0.94x, median of 5
rounds; 0.88x to 1.06x round by round; 7.41 s, 1.67x, under ``--memory-limit 256MB``); at
10M, 63.4 s and 53.5 s (0.84x, ``--memory-limit 4GB``); at 100M the DuckDB audit 1,361 s
(``--memory-limit 8GB``, 19.1 GiB peak); Spark (``local[2]``, 8 GB driver, 2026-12-02)
110 s at 1M and 729 s at 10M.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["chains_file", "main", "measure"]

BASE_T = 1_262_304_000


def _ident(rng: random.Random) -> str:
    return "".join(
        rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=20)
    )


def chains_file(path: str, links: int, chain: int = 500, seed: int = 0, events: float = 0.1) -> int:
    """Write `links` alias calls in chains of `chain` links (plus events) as url lines.

    Returns the number of lines written. Identities are random 20-character strings, so
    their order says nothing about the chains.
    """
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        done = 0
        while done < links:
            length = min(chain, links - done)
            ids = [_ident(rng) for _ in range(length + 1)]
            lines = []
            for i in range(length):
                t = BASE_T + rng.randrange(86_400 * 30)
                lines.append(f"/a?_k=K&_p={ids[i]}&_n={ids[i + 1]}&_t={t}&_d=1")
                if rng.random() < events:
                    lines.append(f"/e?_k=K&_p={ids[i]}&_n=Visited+page&page=%2Fhome&_t={t}&_d=1")
            out.write("\n".join(lines) + "\n")
            written += len(lines)
            done += length
    return written


def _edges(path: str) -> list[tuple[str, str]]:
    edges = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("/a?"):
                parts = dict(p.split("=", 1) for p in line[3:].rstrip("\n").split("&"))
                edges.append((parts["_p"], parts["_n"]))
    return edges


def _networkx(path: str, _: str | None = None) -> dict[str, Any]:
    import networkx as nx

    edges = _edges(path)
    start = time.perf_counter()
    graph = nx.Graph()
    graph.add_edges_from(edges)
    n = sum(1 for _ in nx.connected_components(graph))
    return {"seconds": time.perf_counter() - start, "components": n}


def _scipy(path: str, _: str | None = None) -> dict[str, Any]:
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = _edges(path)
    start = time.perf_counter()
    ids: dict[str, int] = {}
    a = np.fromiter((ids.setdefault(x, len(ids)) for x, _ in edges), np.int64, len(edges))
    b = np.fromiter((ids.setdefault(y, len(ids)) for _, y in edges), np.int64, len(edges))
    interned = time.perf_counter()
    n = len(ids)
    matrix = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)).tocsr()
    count, _ = connected_components(matrix, directed=False)
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "intern_s": interned - start,
        "components_s": end - interned,
        "components": int(count),
    }


def _duckdb_components(path: str, memory_limit: str | None) -> dict[str, Any]:
    import duckdb

    from identity.audit.engines.components import duckdb_components

    config = {"memory_limit": memory_limit} if memory_limit else {}
    con = duckdb.connect(config=config)
    quoted = path.replace("'", "''")
    con.execute(
        f"CREATE TABLE s AS SELECT regexp_extract(text, '_p=([^&]*)', 1) AS a, "
        f"regexp_extract(text, '_n=([^&]*)', 1) AS b FROM read_csv('{quoted}', "
        "columns = {'text': 'VARCHAR'}, header = false, delim = chr(1), quote = '', "
        "escape = '', auto_detect = false) WHERE starts_with(text, '/a?')"
    )
    start = time.perf_counter()
    con.execute(
        "CREATE TABLE ids AS SELECT x, row_number() OVER () AS id FROM "
        "(SELECT a AS x FROM s UNION SELECT b FROM s)"
    )
    con.execute(
        "CREATE TABLE e AS SELECT i.id AS a, j.id AS b FROM s JOIN ids i ON i.x = s.a "
        "JOIN ids j ON j.x = s.b"
    )
    numbered = time.perf_counter()
    rounds = duckdb_components(con, "e", "labels")
    end = time.perf_counter()
    row = con.execute(
        "SELECT count(*) FROM ids LEFT JOIN labels ON labels.node = ids.id "
        "WHERE labels.node IS NULL"
    ).fetchone()
    return {
        "seconds": end - start,
        "number_s": numbered - start,
        "rounds": rounds,
        "components": int(row[0]) if row else 0,
    }


def _duckdb_audit(path: str, memory_limit: str | None) -> dict[str, Any]:
    # the libraries are imported before the clock starts, as networkx is for its subject
    import duckdb  # noqa: F401
    import networkx  # noqa: F401
    import scipy.sparse.csgraph  # type: ignore[import-untyped]  # noqa: F401

    import identity.inspection  # noqa: F401
    from identity.audit.engines.duckdb import audit

    marks: list[tuple[float, str]] = []
    start = time.perf_counter()

    def progress(message: str) -> None:
        marks.append((time.perf_counter(), message))
        print(f"# {marks[-1][0] - start:8.1f}s {message}", file=sys.stderr, flush=True)

    report = audit([path], memory_limit=memory_limit, progress=progress)
    end = time.perf_counter()
    rounds = [m for _, m in marks if m.startswith("people:")]
    return {
        "seconds": end - start,
        "people": report.people,
        "rounds": rounds[-1] if rounds else None,
        "steps": [(round(t - start, 2), m) for t, m in marks],
    }


def _memory_audit(path: str, _: str | None) -> dict[str, Any]:
    from identity.audit.engines import memory
    from identity.cli import ingest_inputs
    from identity.io.sources import expand

    def ingest(engine: Any, _: object) -> None:
        ingest_inputs(engine, expand([path]), quiet=True)

    start = time.perf_counter()
    report = memory.audit_files([path], ingest=ingest)
    return {"seconds": time.perf_counter() - start, "people": report.people}


def _spark(path: str) -> Any:
    """A local[2] session sized for `path`: 8 GB for the driver (the default 1 GB runs out
    of memory at 10M links), a shuffle partition per 20 MB of input (4 at least)."""
    from identity.audit.engines.spark import local_session

    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 8g pyspark-shell")
    return local_session("local[2]", partitions=max(4, os.path.getsize(path) // 20_000_000))


def _spark_components(path: str, _: str | None) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from identity.audit.engines.spark import components

    spark = _spark(path)
    text = spark.read.text(path).where(F.col("value").startswith("/a?"))
    s = text.select(
        F.regexp_extract("value", "_p=([^&]*)", 1).alias("a"),
        F.regexp_extract("value", "_n=([^&]*)", 1).alias("b"),
    )
    start = time.perf_counter()
    ids = s.select(F.col("a").alias("x")).union(s.select(F.col("b").alias("x"))).distinct()
    ids = ids.withColumn("id", F.monotonically_increasing_id()).localCheckpoint()
    e = (
        s.join(ids.withColumnRenamed("x", "a").withColumnRenamed("id", "ia"), "a")
        .join(ids.withColumnRenamed("x", "b").withColumnRenamed("id", "ib"), "b")
        .select(F.col("ia").alias("a"), F.col("ib").alias("b"))
    )
    labels, rounds = components(e)
    n = labels.count()
    return {"seconds": time.perf_counter() - start, "rounds": rounds, "moved": n}


def _spark_audit(path: str, _: str | None) -> dict[str, Any]:
    from identity.audit.engines.spark import audit

    spark = _spark(path)
    start = time.perf_counter()
    report = audit([path], session=spark)
    return {"seconds": time.perf_counter() - start, "people": report.people}


SUBJECTS: dict[str, Callable[[str, str | None], dict[str, Any]]] = {
    "networkx": _networkx,
    "scipy": _scipy,
    "duckdb-components": _duckdb_components,
    "duckdb-audit": _duckdb_audit,
    "memory-audit": _memory_audit,
    "spark-components": _spark_components,
    "spark-audit": _spark_audit,
}


def _child(name: str, path: str, memory_limit: str | None, out: Any) -> None:
    result = SUBJECTS[name](path, memory_limit)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.send(result)


def measure(name: str, path: str, memory_limit: str | None = None) -> dict[str, Any]:
    """Run one subject in a fresh process; return its figures and peak memory (MiB)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(name, path, memory_limit, child))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the engines benchmark; print one JSON line per subject and a summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    parser.add_argument("--links", type=float, default=1e6)
    parser.add_argument("--chain", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--subjects", default="networkx,scipy,duckdb-components,duckdb-audit")
    parser.add_argument("--file", default=None, help="reuse (or keep) the generated file here")
    args = parser.parse_args(argv)
    links = int(args.links)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        path = args.file or os.path.join(tmp, f"chains-{links}.txt")
        if not os.path.exists(path):
            start = time.perf_counter()
            lines = chains_file(path, links, args.chain)
            print(
                f"# wrote {lines:,} lines ({links:,} links, chains of {args.chain}) in "
                f"{time.perf_counter() - start:.1f}s",
                file=sys.stderr,
            )
        # the subjects take turns, round by round: the machine's speed drifts over minutes,
        # and each round's ratio compares runs made side by side
        names = args.subjects.split(",")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:
                runs[name].append(measure(name, path, args.memory_limit))
        medians = {name: statistics.median(r["seconds"] for r in runs[name]) for name in names}
        for name in names:
            best = runs[name][0] | {
                "subject": name,
                "links": links,
                "chain": args.chain,
                "memory_limit": args.memory_limit,
                "median_s": medians[name],
            }
            print(json.dumps(best), flush=True)
        if "networkx" in medians:
            for name in names:
                pairs = zip(runs[name], runs["networkx"], strict=True)
                ratios = [r["seconds"] / n["seconds"] for r, n in pairs]
                print(
                    f"# {name}: {medians[name]:.2f}s = {medians[name] / medians['networkx']:.2f}x"
                    f" networkx (round by round: {', '.join(f'{x:.2f}x' for x in ratios)};"
                    f" median {statistics.median(ratios):.2f}x)",
                    file=sys.stderr,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
