from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import Engine, UnknownIdentityError
from identity.cli import main
from identity.inspection import Explanation, diff, explain, person_graph, risky, what_if


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


# -- risky links, what-if ------------------------------------------------------------------------


@pytest.fixture
def two_customers() -> Engine:
    """Two customers, each a triangle of identities, glued by one alias; a shared hub."""
    engine = Engine()
    for x, y in [
        ("a1", "a2"),
        ("a2", "a3"),
        ("a3", "a1"),
        ("b1", "b2"),
        ("b2", "b3"),
        ("b3", "b1"),
    ]:
        engine.alias("K", x, y, t=1)
    engine.alias("K", "a3", "b1", t=7)  # the glue: a bridge between two sizeable parts
    engine.alias("K", "b3", "leaf", t=8)  # a bridge, but one part is a lone identity
    engine.record("K", "a1", "Paid", t=2)
    engine.record("K", "b2", "Paid", t=2)
    for i in range(4):
        engine.alias("K", "hub", f"h{i}", t=3)
    engine.record("K", "null", "Viewed", t=4)  # a junk identity, tracked
    engine.alias("K", "null", "a1", t=5)  # refused: blocked_identity
    return engine


def test_risky_bridges_with_and_without_sizeable_parts(two_customers: Engine) -> None:
    risks = risky(two_customers, "K", hub_links=4, large_person=7)
    assert [(b.link.start, b.link.end, b.sizes, b.customers) for b in risks.bridges] == [
        ("a3", "b1", (3, 4), (1, 1)),
    ]
    assert risks.bridges[0].person == "a1"
    assert risks.bridges[0].link.t == 7
    loose = risky(two_customers, "K", min_part=1, hub_links=4)
    assert [(b.link.start, b.link.end) for b in loose.bridges][:1] == [("a3", "b1")]
    assert ("b3", "leaf") in [(b.link.start, b.link.end) for b in loose.bridges]
    assert risks.hubs == (("hub", "h0", 4),)
    assert risks.large == (("a1", 7),)
    assert risks.junk == (("null", "null"),)
    assert risks.blocked_aliases == 1
    before = risky(two_customers, "K", as_of=6)
    assert before.bridges == ()


def test_what_if_splits_on_a_copy(two_customers: Engine) -> None:
    splits = what_if(two_customers, "K", drop_links=[("b1", "a3")])
    assert [(s.person, s.size, s.parts) for s in splits] == [("a1", 7, (("b1", 4), ("a1", 3)))]
    hub = what_if(two_customers, "K", drop_identities=["hub"])
    assert [s.parts for s in hub] == [(("h0", 1), ("h1", 1), ("h2", 1), ("h3", 1))]
    assert what_if(two_customers, "K", drop_identities=["leaf"]) == ()  # only loses a member
    assert what_if(two_customers, "K", drop_junk=True) == ()
    assert what_if(two_customers, "K", drop_identities=["nobody"], drop_links=[("x", "y")]) == ()


def test_what_if_and_risky_cli_leave_the_file_untouched(
    two_customers: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "x.db"
    with Engine(db) as engine:
        engine.ingest(export_lines(two_customers), received=1)
    before = db.read_bytes()
    args = ["--db", str(db), "--tenant", "K"]
    assert main(["what-if", *args, "--drop-link", "a3", "b1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "tenant": "K",
        "splits": [
            {
                "person": "a1",
                "size": 7,
                "parts": [{"person": "b1", "identities": 4}, {"person": "a1", "identities": 3}],
            }
        ],
    }
    assert main(["what-if", *args, "--drop-identity", "hub"]) == 0
    assert capsys.readouterr().out.startswith("1 people would split\n")
    assert main(["risky", *args, "--hub-links", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bridges: 1\n")
    assert re.search(r"\na1 +a3 +b1 +3 \| 4 +1 \| 1 +7 +1", out), out
    assert main(["risky", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bridges"][0]["sizes"] == [3, 4]
    assert main(["what-if", *args]) == 1
    assert "say what to drop" in capsys.readouterr().err
    assert db.read_bytes() == before


def export_lines(engine: Engine) -> list[str]:
    from identity.io.export import lines

    return list(lines(engine.store, "K", fmt="url"))


# -- graph export ---------------------------------------------------------------------------------


def _same_graph(read: nx.Graph, graph: nx.Graph) -> None:
    assert dict(read.nodes(data=True)) == dict(graph.nodes(data=True))
    assert {frozenset((a, b)): d for a, b, d in read.edges(data=True)} == {
        frozenset((a, b)): d for a, b, d in graph.edges(data=True)
    }


@pytest.mark.parametrize("fmt", ["graphml", "gexf", "json", "dot"])
def test_graph_export_reads_back_as_the_same_graph(
    engine: Engine, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "x.db"
    with Engine(db) as copy:
        copy.ingest(
            [
                "/a?_k=K&_p=anon%3A1&_n=bob&_t=10&_d=1",
                "/a?_k=K&_p=bob&_n=b%40x.org&_t=20&_d=1",
                "/e?_k=K&_p=bob&_n=Paid&_t=15&_d=1",
            ],
            source="access.log:12",
            received=100,
        )
        graph = person_graph(copy, "K", "bob")
    out = tmp_path / f"bob.{fmt}"
    assert (
        main(["graph", "bob", "--db", str(db), "--tenant", "K", "--format", fmt, "-o", str(out)])
        == 0
    )
    assert capsys.readouterr().err == f"{out}: 3 identities, 2 links\n"
    if fmt == "graphml":
        _same_graph(nx.read_graphml(out), graph)
    elif fmt == "gexf":
        read = nx.read_gexf(out)
        for _, data in read.nodes(data=True):
            data.pop("label", None)
        for _, _, data in read.edges(data=True):
            data.pop("id", None)
        _same_graph(read, graph)
    elif fmt == "json":
        data = json.loads(out.read_text())
        read = nx.node_link_graph(data, source="from", target="to", edges="links")
        _same_graph(read, graph)
        assert read.graph == {"tenant": "K", "person": "anon:1"}
    else:  # DOT keeps every value as text, quoted where needed
        with warnings.catch_warnings():  # pydot's parser uses deprecated pyparsing names
            warnings.simplefilter("ignore", DeprecationWarning)
            read = nx.Graph(nx.nx_pydot.read_dot(out))
        unquote = {n: n.strip('"') for n in read}
        read = nx.relabel_nodes(read, unquote)
        assert set(read.nodes) == set(graph.nodes)
        assert {frozenset(e) for e in read.edges} == {frozenset(e) for e in graph.edges}
        assert read.edges["anon:1", "bob"]["sent"] == "1"


# -- what changed ---------------------------------------------------------------------------------


def test_diff_over_a_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "x.db"
    with Engine(db) as engine:
        engine.ingest(
            [
                "/a?_k=K&_p=a&_n=b&_t=10&_d=1",  # before the window
                "/a?_k=K&_p=c&_n=d&_t=20&_d=1",  # two new identities: a merge, a new person
                "/a?_k=K&_p=b&_n=c&_t=30&_d=1",  # two people become one
                "/a?_k=K&_p=a&_n=d&_t=35&_d=1",  # same person already: no merge
                "/a?_k=K&_p=x&_n=y&_t=40&_d=1",  # a new person
                "/a?_k=K&_p=y&_n=z&_t=60&_d=1",  # after the window
                "/a?_k=OTHER&_p=a&_n=q&_t=30&_d=1",
            ],
            source="week.log",
            received=100,
        )
        changes = diff(engine, "K", 15, 50)
        assert [(m.t, m.link.start, m.link.end, m.people, m.person) for m in changes.merges] == [
            (20, "c", "d", (("c", 1), ("d", 1)), "c"),
            (30, "b", "c", (("a", 2), ("c", 2)), "a"),
            (40, "x", "y", (("x", 1), ("y", 1)), "x"),
        ]
        assert changes.merges[1].link.source == "week.log"
        assert changes.appeared == (("x", 2),)
        assert diff(engine, "K", 50, 100).merges[0].people == (("x", 2), ("z", 1))
        assert diff(engine, "K", 0, 100).appeared == (("a", 4), ("x", 3))
        assert diff(engine, "K", 35, 39).merges == ()
    before = db.read_bytes()
    args = ["diff", "--db", str(db), "--tenant", "K", "--from", "15", "--to", "50"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 merges after 15 up to 50\n")
    assert re.search(r"\n +30 +b +c +a \(2\), c \(2\) +a +1 +week\.log\n", out), out
    assert out.endswith(
        "1 people appeared\n"
        "person      identities\n"
        "--------  ------------\n"
        "x                    2\n"
    )
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["merges"][1] == {
        "t": 30,
        "from": "b",
        "to": "c",
        "sent": 1,
        "source": "week.log",
        "people": [{"person": "a", "identities": 2}, {"person": "c", "identities": 2}],
        "person": "a",
    }
    assert main(["diff", "--db", str(db), "--tenant", "K", "--from", "9", "--to", "1"]) == 1
    assert db.read_bytes() == before


@settings(max_examples=int(os.environ.get("IDENTITY_HYPOTHESIS_EXAMPLES", "300")), deadline=None)
@given(links=alias_sets, customers=st.sets(names))
def test_bridge_sides_against_a_naive_reference(
    links: list[tuple[str, str, int]], customers: set[str]
) -> None:
    engine = Engine()
    for x, y, t in links:
        engine.alias("K", x, y, t=t)
    for name in customers:
        engine.record("K", name, "Paid", t=9)
    graph = nx.Graph([(x, y) for x, y, _ in links if x != y])
    graph.add_nodes_from(n for x, y, _ in links for n in (x, y))
    graph.add_nodes_from(customers)
    expected = {}
    for x, y in nx.bridges(graph):
        x, y = min(x, y), max(x, y)
        cut = graph.copy()
        cut.remove_edge(x, y)
        side_x, side_y = nx.node_connected_component(cut, x), nx.node_connected_component(cut, y)
        expected[(x, y)] = (
            (len(side_x), len(side_y)),
            (len(side_x & customers), len(side_y & customers)),
        )
    found = risky(engine, "K", min_part=1).bridges
    assert {(b.link.start, b.link.end): (b.sizes, b.customers) for b in found} == expected
