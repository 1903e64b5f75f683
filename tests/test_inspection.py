from __future__ import annotations

import networkx as nx
import pytest

from identity import Engine, UnknownIdentityError
from identity.inspection import person_graph


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.ingest(
        [
            "/a?_k=K&_p=anon-1&_n=bob&_t=10&_d=1",
            "/a?_k=K&_p=bob&_n=anon-1&_t=30&_d=1",  # the same link, sent again later
            "/a?_k=K&_p=bob&_n=b%40x.org&_t=20&_d=1",
            "/e?_k=K&_p=bob&_n=Paid&_t=15&_d=1",
            "/s?_k=K&_p=b%40x.org&plan=pro&tier=1&_t=25&_d=1",
            "/a?_k=OTHER&_p=bob&_n=eve&_t=5&_d=1",  # another tenant's bob
        ],
        source="calls.txt",
        received=100,
    )
    return engine


def test_nodes_and_edges_carry_what_happened(engine: Engine) -> None:
    graph = person_graph(engine, "K", "b@x.org")
    assert graph.graph == {"tenant": "K", "person": "anon-1"}
    assert dict(graph.nodes(data=True)) == {
        "anon-1": {"customer": False, "first_seen": 10, "events": 0, "properties": 0},
        "b@x.org": {"customer": True, "first_seen": 20, "events": 0, "properties": 2},
        "bob": {"customer": True, "first_seen": 10, "events": 1, "properties": 0},
    }
    edges = {frozenset((a, b)): data for a, b, data in graph.edges(data=True)}
    assert edges == {
        frozenset(("anon-1", "bob")): {"t": 10, "sent": 2, "source": "calls.txt"},
        frozenset(("b@x.org", "bob")): {"t": 20, "sent": 1, "source": "calls.txt"},
    }


def test_as_of_gives_the_person_at_that_time(engine: Engine) -> None:
    graph = person_graph(engine, "K", "bob", as_of=16)
    assert sorted(graph.nodes) == ["anon-1", "bob"]
    assert graph.nodes["bob"] == {"customer": True, "first_seen": 10, "events": 1, "properties": 0}
    early = person_graph(engine, "K", "bob", as_of=12)
    assert early.nodes["bob"]["customer"] is False
    assert early.nodes["bob"]["events"] == 0
    with pytest.raises(UnknownIdentityError):
        person_graph(engine, "K", "b@x.org", as_of=19)


def test_tenants_and_unknown_identities(engine: Engine) -> None:
    other = person_graph(engine, "OTHER", "bob")
    assert sorted(other.nodes) == ["bob", "eve"]
    assert nx.is_connected(other)
    with pytest.raises(UnknownIdentityError):
        person_graph(engine, "K", "eve")
    single = Engine()
    single.record("K", "solo", "x", t=1)
    graph = person_graph(single, "K", "solo")
    assert list(graph.nodes) == ["solo"]
    assert graph.number_of_edges() == 0
