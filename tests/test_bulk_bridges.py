"""The array bridge finder equals the per-person one (and networkx) link for link."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from identity.audit.bridges import bridges_of  # noqa: E402
from identity.audit.bulk_bridges import bulk_bridges  # noqa: E402


def _simple(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """One link per unordered pair, no self-loops, each kept in the direction first given."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for a, b in pairs:
        key = (min(a, b), max(a, b))
        if a != b and key not in seen:
            seen.add(key)
            kept.append((a, b))
    return kept


def _expected(pairs: list[tuple[int, int]], customer: list[bool]) -> set[tuple[object, ...]]:
    flags = dict(enumerate(customer))
    found = set()
    for people in nx.connected_components(nx.Graph(pairs)):
        edges = [p for p in pairs if p[0] in people]
        for s in bridges_of(edges, flags):
            found.add((s.a, s.b, s.sizes, s.customers))
    return found


def _found(
    pairs: list[tuple[int, int]], customer: list[bool], *, labelled: bool
) -> set[tuple[object, ...]]:
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    person = None
    if labelled:  # any label per person will do: here the largest identity of each
        label = {}
        for people in nx.connected_components(nx.Graph(pairs)):
            largest = max(people)
            label.update(dict.fromkeys(people, largest))
        person = np.array([label[x] for x in a.tolist()], dtype=np.int64)
    got = bulk_bridges(a, b, np.array(customer, dtype=bool), person)
    rows = zip(
        got.links.tolist(),
        got.size_a.tolist(),
        got.size_b.tolist(),
        got.customers_a.tolist(),
        got.customers_b.tolist(),
        strict=True,
    )
    return {(pairs[i][0], pairs[i][1], (sa, sb), (ca, cb)) for i, sa, sb, ca, cb in rows}


graphs = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=400, deadline=None)
@given(graphs, st.booleans())
def test_bulk_bridges_equal_the_per_person_pass(graph: tuple[list, list], labelled: bool) -> None:
    pairs, customer = graph
    pairs = _simple(pairs)
    assert _found(pairs, customer, labelled=labelled) == _expected(pairs, customer)


def test_a_chain_of_fifty_thousand_links_and_a_cycle_closing_half_of_it() -> None:
    n = 50_001
    rng = np.random.default_rng(7)
    ids = rng.permutation(n).tolist()  # identities in no order along the chain
    pairs = [*itertools.pairwise(ids), (ids[0], ids[25_000])]
    customer = [False] * n
    customer[ids[0]] = customer[ids[-1]] = True
    graph = nx.Graph(pairs)
    assert len(_found(pairs, customer, labelled=False)) == sum(1 for _ in nx.bridges(graph))
    found = _found(pairs, customer, labelled=True)
    assert found == _expected(pairs, customer)
    assert len(found) == 25_000


def test_no_links_no_bridges() -> None:
    empty = np.zeros(0, dtype=np.int64)
    got = bulk_bridges(empty, empty, np.zeros(3, dtype=bool))
    assert got.links.tolist() == []
