"""Connected components in few rounds at any diameter: randomized contraction in SQL.

Bögeholz, Brand and Todor, "In-Database Connected Component Analysis" (ICDE 2020). Nodes are
integers: the engines number identities with ``row_number`` over the distinct strings, never
with a hash, so two identities never share a number. Each round

1. orders the nodes by a fresh hash of the round (ties by number: a hash collision changes
   the order, never the answer) and moves every node to the first of itself and its
   neighbours;
2. follows the moves to their end by pointer jumping (each jump one self-join of the moves),
   so that every moved node lands on a node that stays: a local minimum of the order;
3. relabels the links with the moves, dropping the self-loops and duplicates this makes.

The nodes left are the local minima, a constant fraction, so there are ``O(log n)`` rounds
and ``O(m)`` work in all whatever the graph's diameter (plain min-label propagation needs one
round per link of the longest chain). Measured: 7 rounds at 1M links in chains of 500,
8 at 10M, 10 to 11 for chains of 50,000. The moves are composed backwards at the end.

This module has the DuckDB form (SQL over a connection the caller owns) and a pure-Python
reference for tests; the Spark form (the same steps on DataFrames, the plan cut after each)
lives in :mod:`identity.audit.engines.spark`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    import duckdb

__all__ = ["MAX_ROUNDS", "duckdb_components", "reference_components"]

#: A guard, never reached on real graphs: rounds are ``O(log^2 n)``.
MAX_ROUNDS = 200


def duckdb_components(
    con: duckdb.DuckDBPyConnection,
    edges: str,
    out: str,
    *,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Map every node of an edge list to its component's representative, in DuckDB.

    Randomized contraction (Bögeholz et al., ICDE 2020): each round orders the nodes by a
    fresh hash (ties by node), moves every node to the first of itself and its neighbours,
    follows those moves to their end (pointer jumping: a node moves to the local minimum its
    descent reaches), and relabels the edges, dropping the self-loops and duplicates that
    the moves create. Each round leaves a constant fraction of the nodes, so the rounds are
    ``O(log n)`` and the total work ``O(m)``, whatever the diameter. The moves are then
    composed backwards, from the last round to the first.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The connection holding `edges`; the result table is created in it.
    edges : str
        A table or view with BIGINT columns ``a`` and ``b`` (undirected; duplicates and
        self-loops allowed).
    out : str
        Name of the table created: ``(node BIGINT, root BIGINT)``, one row per node that is
        not its component's representative (``root`` is the representative, some node of the
        component). Nodes absent from `out` represent themselves.
    progress : callable, optional
        Called with a line after each round.

    Returns
    -------
    int
        Contraction rounds run.
    """
    ex = con.execute
    ex(
        f"CREATE OR REPLACE TEMP TABLE _cc_e AS SELECT DISTINCT least(a, b) AS u, "
        f"greatest(a, b) AS v FROM {edges} WHERE a <> b"
    )
    rounds = 0
    while True:
        left = _count(con, "_cc_e")
        if not left:
            break
        rounds += 1
        if rounds > MAX_ROUNDS:  # pragma: no cover - a guard
            raise RuntimeError("connected components did not converge")
        seed = rounds * 0x9E3779B1
        # every node moves to the first (by hash, then id) of itself and its neighbours
        ex(
            f"CREATE OR REPLACE TEMP TABLE _cc_r AS "
            f"WITH d AS (SELECT u AS x, v AS y FROM _cc_e UNION ALL SELECT v, u FROM _cc_e), "
            f"b AS (SELECT x, min((hash(y + {seed}), y)) AS best FROM d GROUP BY x) "
            f"SELECT x, best[2] AS rep FROM b WHERE best < (hash(x + {seed}), x)"
        )
        # pointer jumping: follow the moves to a node that does not move
        while True:
            ex(
                "CREATE OR REPLACE TEMP TABLE _cc_j AS SELECT r.x, coalesce(s.rep, r.rep) AS rep, "
                "s.rep IS NOT NULL AS moved FROM _cc_r r LEFT JOIN _cc_r s ON r.rep = s.x"
            )
            moved = con.execute("SELECT count(*) FROM _cc_j WHERE moved").fetchone()
            ex("CREATE OR REPLACE TEMP TABLE _cc_r AS SELECT x, rep FROM _cc_j")
            if not moved or not moved[0]:
                break
        ex(f"CREATE OR REPLACE TEMP TABLE _cc_m{rounds} AS SELECT x, rep FROM _cc_r")
        ex(
            "CREATE OR REPLACE TEMP TABLE _cc_e AS SELECT DISTINCT least(p, q) AS u, "
            "greatest(p, q) AS v FROM (SELECT coalesce(a.rep, e.u) AS p, coalesce(b.rep, e.v) AS q "
            "FROM _cc_e e LEFT JOIN _cc_r a ON e.u = a.x LEFT JOIN _cc_r b ON e.v = b.x) "
            "WHERE p <> q"
        )
        if progress is not None:
            progress(f"components: round {rounds}, {left:,} links in")
    # compose the moves backwards: a node's root is its rep's root
    ex(f"CREATE OR REPLACE TEMP TABLE {out} (node BIGINT, root BIGINT)")
    for k in range(rounds, 0, -1):
        ex(
            f"INSERT INTO {out} SELECT m.x, coalesce(o.root, m.rep) FROM _cc_m{k} m "
            f"LEFT JOIN {out} o ON m.rep = o.node"
        )
        ex(f"DROP TABLE _cc_m{k}")
    for name in ("_cc_e", "_cc_r", "_cc_j"):
        ex(f"DROP TABLE IF EXISTS {name}")
    return rounds


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return 0 if row is None else int(row[0])


def reference_components(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Return ``{node: smallest node of its component}`` by union-find (the test reference).

    Examples
    --------
    >>> reference_components([(3, 1), (1, 2), (5, 5), (7, 6)])
    {3: 1, 1: 1, 2: 1, 5: 5, 7: 6, 6: 6}
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}
