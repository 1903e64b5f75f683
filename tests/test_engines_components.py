"""Connected components of the DuckDB and Spark engines equal networkx's, in few rounds."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from identity.audit.engines.components import duckdb_components, reference_components

duckdb = pytest.importorskip("duckdb")

Edges = list[tuple[int, int]]


def _chains(links: int, length: int, seed: int) -> Edges:
    """Chains of `length` links, node numbers shuffled (the worst order for labels)."""
    rng = random.Random(seed)
    nodes = links + links // length + 1
    ids = list(range(nodes))
    rng.shuffle(ids)
    edges = [(ids[i], ids[i + 1]) for i in range(nodes - 1) if (i + 1) % (length + 1)]
    return edges[:links]


def _hubs(seed: int) -> Edges:
    """Hubs of many leaves, joined by a chain, with self-loops and duplicates."""
    rng = random.Random(seed)
    edges: Edges = []
    base = 0
    for hub in range(5):
        centre = base
        for leaf in range(1, 2000):
            edges.append((centre, base + leaf) if leaf % 2 else (base + leaf, centre))
        if hub:
            edges.append((centre, centre - 2000))
        base += 2000
    edges += [(x, x) for x in rng.sample(range(base), 50)]  # self-loops
    edges += [(base + 10, base + 10)]  # a node seen only in a self-loop
    edges += rng.sample(edges, 500)  # duplicates
    edges += [(b, a) for a, b in rng.sample(edges, 500)]  # the same links reversed
    perm = list(range(base + 11))
    rng.shuffle(perm)
    return [(perm[a], perm[b]) for a, b in edges]


def _random_graph(seed: int) -> Edges:
    rng = random.Random(seed)
    return [(rng.randrange(30_000), rng.randrange(30_000)) for _ in range(20_000)]


GRAPHS = {
    "chains-500": lambda: _chains(12_000, 500, 1),
    "chain-50000": lambda: _chains(50_000, 50_000, 2),
    "hubs-loops-duplicates": lambda: _hubs(3),
    "random": lambda: _random_graph(4),
}


def _partition(edges: Edges, moved: dict[int, int]) -> set[frozenset[int]]:
    nodes = {x for e in edges for x in e}
    groups: dict[int, set[int]] = {}
    for x in nodes:
        groups.setdefault(moved.get(x, x), set()).add(x)
    return {frozenset(g) for g in groups.values()}


def _networkx(edges: Edges) -> set[frozenset[int]]:
    graph = nx.Graph()
    graph.add_edges_from(edges)
    return {frozenset(c) for c in nx.connected_components(graph)}


def _duckdb(edges: Edges) -> tuple[dict[int, int], int]:
    con = duckdb.connect()
    con.execute("CREATE TABLE e (a BIGINT, b BIGINT)")
    if edges:
        con.execute(
            "INSERT INTO e SELECT unnest($1), unnest($2)",
            [[a for a, _ in edges], [b for _, b in edges]],
        )
    rounds = duckdb_components(con, "e", "labels")
    moved = dict(con.execute("SELECT node, root FROM labels").fetchall())
    con.close()
    return moved, rounds


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_duckdb_components_equal_networkx(name: str) -> None:
    edges = GRAPHS[name]()
    moved, rounds = _duckdb(edges)
    assert _partition(edges, moved) == _networkx(edges)
    assert rounds <= 12


def test_reference_is_networkx() -> None:
    edges = _hubs(5)
    assert _partition(edges, reference_components(edges)) == _networkx(edges)


def test_duckdb_components_of_nothing_and_of_loops() -> None:
    assert _duckdb([]) == ({}, 0)
    moved, rounds = _duckdb([(1, 1), (2, 2)])
    assert (moved, rounds) == ({}, 0)
    moved, _ = _duckdb([(1, 2), (2, 1), (2, 2)])
    assert _partition([(1, 2)], moved) == {frozenset({1, 2})}


# -- Spark ---------------------------------------------------------------------------------


def test_spark_components_equal_networkx(spark: object) -> None:
    from identity.audit.engines.spark import components

    # one graph of every shape (Spark's cost here is per round, not per link)
    edges = GRAPHS["chain-50000"]()
    offset = 1 + max(max(e) for e in edges)
    edges += [(a + offset, b + offset) for a, b in GRAPHS["hubs-loops-duplicates"]()]
    frame = spark.createDataFrame(edges, "a long, b long")  # type: ignore[attr-defined]
    labels, rounds = components(frame, local_below=0)  # every round on Spark
    moved = {row["node"]: row["root"] for row in labels.collect()}
    assert _partition(edges, moved) == _networkx(edges)
    assert rounds <= 12
    # the last links joined on the driver: the same partition, in fewer rounds
    labels, fewer = components(frame, local_below=20_000)
    moved = {row["node"]: row["root"] for row in labels.collect()}
    assert _partition(edges, moved) == _networkx(edges)
    assert fewer < rounds
