from __future__ import annotations

import json
import os
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import Engine, UnknownIdentityError
from identity.cli import main
from identity.inspection import Explanation, explain, person_graph


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


# -- explain ------------------------------------------------------------------------------------


def _links(*links: tuple[str, str, int]) -> Engine:
    engine = Engine()
    for x, y, t in links:
        engine.alias("K", x, y, t=t)
    return engine


def _walk(answer: Explanation) -> list[tuple[str, str, int]]:
    return [(link.start, link.end, link.t) for link in answer.chain]


def test_explain_picks_the_earliest_chain_not_the_shortest() -> None:
    engine = _links(("a", "b", 50), ("a", "x", 1), ("x", "y", 2), ("y", "b", 3))
    answer = explain(engine, "K", "a", "b")
    assert answer.same_person
    assert answer.person == "a"
    assert answer.joined_at == 3
    assert _walk(answer) == [("a", "x", 1), ("x", "y", 2), ("y", "b", 3)]


def test_explain_picks_the_shortest_of_equally_early_chains() -> None:
    engine = _links(("a", "p", 1), ("p", "q", 1), ("q", "b", 5), ("a", "z", 2), ("z", "b", 5))
    answer = explain(engine, "K", "b", "a")
    assert answer.joined_at == 5
    assert _walk(answer) == [("b", "z", 5), ("z", "a", 2)]


def test_explain_carries_sent_counts_and_sources() -> None:
    engine = Engine()
    engine.ingest(["/a?_k=K&_p=a&_n=b&_t=7&_d=1"] * 3, source="log.txt", received=9)
    [link] = explain(engine, "K", "a", "b").chain
    assert (link.t, link.sent, link.source) == (7, 3, "log.txt")


def test_explain_different_people_unknown_identities_and_tenants() -> None:
    engine = _links(("a", "b", 1), ("c", "d", 2))
    engine.alias("OTHER", "a", "c", t=3)
    apart = explain(engine, "K", "a", "c")
    assert (apart.same_person, apart.person, apart.joined_at, apart.chain) == (
        False,
        None,
        None,
        (),
    )
    assert (apart.a_since, apart.b_since) == (1, 2)
    assert apart.sentence() == "'a' and 'c' are not the same person."
    unknown = explain(engine, "K", "a", "nobody")
    assert (unknown.a_since, unknown.b_since) == (1, None)
    assert unknown.sentence() == "'a' is known since 1 in tenant 'K'; 'nobody' is not known."
    assert explain(engine, "OTHER", "a", "c").same_person
    assert not explain(engine, "OTHER", "a", "b").same_person


def test_explain_as_of_a_timeline() -> None:
    engine = _links(("a", "b", 10), ("b", "c", 20), ("a", "c", 30))
    assert explain(engine, "K", "a", "c", as_of=15).same_person is False
    assert explain(engine, "K", "a", "c", as_of=15).b_since is None
    at_20 = explain(engine, "K", "a", "c", as_of=25)
    assert (at_20.joined_at, len(at_20.chain)) == (20, 2)
    assert explain(engine, "K", "a", "c").joined_at == 20


def test_explain_cli_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "x.db")
    with Engine(db) as engine:
        engine.ingest(
            ["/a?_k=K&_p=anon-7f&_n=bob&_t=5&_d=1", "/a?_k=K&_p=bob&_n=b%40x.org&_t=6&_d=1"],
            source="calls.txt:1",
            received=9,
        )
    assert main(["explain", "anon-7f", "b@x.org", "--db", db, "--tenant", "K"]) == 0
    assert capsys.readouterr().out == (
        "'anon-7f' and 'b@x.org' are one person ('anon-7f') since 6, joined by 2 links:\n"
        "\n"
        "from     to         t    sent  source\n"
        "-------  -------  ---  ------  -----------\n"
        "anon-7f  bob        5       1  calls.txt:1\n"
        "bob      b@x.org    6       1  calls.txt:1\n"
    )
    assert main(["explain", "anon-7f", "b@x.org", "--db", db, "--tenant", "K", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "tenant": "K",
        "a": "anon-7f",
        "b": "b@x.org",
        "same_person": True,
        "person": "anon-7f",
        "joined_at": 6,
        "chain": [
            {"from": "anon-7f", "to": "bob", "t": 5, "sent": 1, "source": "calls.txt:1"},
            {"from": "bob", "to": "b@x.org", "t": 6, "sent": 1, "source": "calls.txt:1"},
        ],
        "a_since": 5,
        "b_since": 6,
        "as_of": None,
    }
    assert main(["explain", "anon-7f", "zed", "--db", db, "--tenant", "K"]) == 0
    assert "'zed' is not known" in capsys.readouterr().out


names = st.sampled_from("abcdefg")
alias_sets = st.lists(st.tuples(names, names, st.integers(0, 6)), min_size=1, max_size=25)


@settings(max_examples=int(os.environ.get("IDENTITY_HYPOTHESIS_EXAMPLES", "300")), deadline=None)
@given(links=alias_sets, a=names, b=names)
def test_explain_against_a_naive_reference(
    links: list[tuple[str, str, int]], a: str, b: str
) -> None:
    engine = Engine()
    for x, y, t in links:
        engine.alias("K", x, y, t=t)
    sent: dict[frozenset[str], int] = {}
    first: dict[frozenset[str], int] = {}
    for x, y, t in links:
        if x != y:
            pair = frozenset((x, y))
            sent[pair] = sent.get(pair, 0) + 1
            first[pair] = min(first.get(pair, t), t)

    def graph_until(limit: int) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(n for x, y, _ in links for n in (x, y))
        graph.add_edges_from(tuple(p) for p, t in first.items() if t <= limit)
        return graph

    known = {n for x, y, _ in links for n in (x, y)}
    answer = explain(engine, "K", a, b)
    joined = next(
        (
            limit
            for limit in range(7)
            if a in known and b in known and nx.has_path(graph_until(limit), a, b)
        ),
        None,
    )
    if a == b or joined is None:
        assert answer.chain == ()
        assert answer.same_person == (a == b and a in known)
        return
    assert answer.same_person
    assert answer.joined_at == joined
    walked = [answer.a] + [link.end for link in answer.chain]
    assert walked[-1] == b
    for link, start in zip(answer.chain, walked, strict=False):
        pair = frozenset((link.start, link.end))
        assert link.start == start
        assert (link.t, link.sent) == (first[pair], sent[pair])
    assert max(link.t for link in answer.chain) == joined
    assert len(answer.chain) == nx.shortest_path_length(graph_until(joined), a, b)
