"""identity audit: the report model, its engines' reference (memory), text, JSON and HTML."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import Engine
from identity.audit import charts
from identity.audit.bridges import bridges_of
from identity.audit.engines.memory import audit_database, bucket_start, span_of
from identity.audit.html import page
from identity.audit.model import SCHEMA
from identity.cli import main
from identity.inspection import risky

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
DAY0 = 1_699_920_000  # 2023-11-14 00:00 UTC
RECEIVED = T0 + 2_000

#: Every number of its audit is worked out by hand in EXPECTED.
FIXTURE = [
    f"/e?_k=K&_p=anon1&_n=Viewed&_t={T0}&_d=1&page=home",  # 1
    f"/e?_k=K&_p=anon1&_n=Viewed&_t={T0}&_d=1&page=home",  # 2: exact duplicate of 1
    f"/e?_k=K&_p=anon1&_n=Viewed&_t={T0 + 60}&_d=1&page=home",  # 3: a retry of 1 (60 s)
    f"/e?_k=K&_p=anon1&_n=Viewed&_t={T0 + 1000}&_d=1&page=home",  # 4: 940 s later: no retry
    f"/e?_k=K&_p=ann&_n=Signed+up&_t={T0 + 100}&_d=1",  # 5
    f"/e?_k=K&_p=undefined&_n=Viewed&_t={T0 + 5}&_d=1",  # 6: an event on a junk identity
    f"/e?_k=L&_p=lee&_n=Viewed&_t={T0 + 86_400}&_d=1",  # 7: tenant L, the next day
    f"/s?_k=K&_p=ann&plan=pro&seats=3&_t={T0 + 100}&_d=1",  # 8: two property records
    f"/s?_k=K&_p=ann&plan=pro&seats=3&_t={T0 + 100}&_d=1",  # 9: both duplicates
    f"/a?_k=K&_p=anon1&_n=ann&_t={T0 + 100}&_d=1",  # 10: the bridge
    f"/a?_k=K&_p=ann&_n=x1&_t={T0 + 200}&_d=1",  # 11: a triangle ann, x1, x2
    f"/a?_k=K&_p=x1&_n=x2&_t={T0 + 200}&_d=1",  # 12
    f"/a?_k=K&_p=x2&_n=ann&_t={T0 + 300}&_d=1",  # 13
    f"/a?_k=K&_p=ann&_n=anon1&_t={T0 + 400}&_d=1",  # 14: duplicate alias of 10
    f"/a?_k=K&_p=ann&_n=undefined&_t={T0 + 500}&_d=1",  # 15: blocked_identity
    "/e?_k=K&_p=ann",  # 16: missing_event_name
    "/x?_k=K&_p=ann",  # 17: unknown_call
    "/e?_p=ann&_n=x",  # 18: missing_key
]


def _link(a: str, b: str, t: int, sent: int, line: int) -> dict[str, object]:
    return {"a": a, "b": b, "t": t, "sent": sent, "source": f"fixture.txt:{line}"}


EXPECTED = {
    "schema": 1,
    "tenant": None,
    "as_of": None,
    "summary": {
        "calls": 18,
        "records": 7 + 8 + 5 + 4,
        "accepted": 7 + 8 + 5,
        "quarantined": 4,
        "duplicates": 1 + 3 + 1,
        "retries": 1,
        "identities": 6,
        "people": 3,
        "largest_person": 4,
        "risky_links": 1,
        "junk_identities": 1,
        "tenants": 2,
    },
    "sources": [],  # set by the test: the absolute path
    "kinds": [
        {"kind": "event", "received": 7, "stored": 6, "duplicates": 1},
        # an event's properties are set on its identity too (lines 1-4: page=home)
        {"kind": "property", "received": 4 + 4, "stored": 3 + 2, "duplicates": 1 + 2},
        {"kind": "alias", "received": 5, "stored": 4, "duplicates": 1},
    ],
    "quarantine": [
        {"reason": "blocked_identity", "calls": 1, "examples": [FIXTURE[14]]},
        {"reason": "missing_event_name", "calls": 1, "examples": [FIXTURE[15]]},
        {"reason": "missing_key", "calls": 1, "examples": [FIXTURE[17]]},
        {"reason": "unknown_call", "calls": 1, "examples": [FIXTURE[16]]},
    ],
    "retries": {
        "window_s": 300,
        "events": 1,
        "examples": [
            {"tenant": "K", "identity": "anon1", "event": "Viewed", "previous": T0, "t": T0 + 60}
        ],
    },
    "people": {
        "identities": 6,
        "people": 3,
        "sizes": [{"identities": 1, "people": 2}, {"identities": 4, "people": 1}],
        "largest": [
            {"tenant": "K", "person": "ann", "identities": 4, "customer_ids": 2, "events": 4},
            {"tenant": "K", "person": "undefined", "identities": 1, "customer_ids": 1, "events": 1},
            {"tenant": "L", "person": "lee", "identities": 1, "customer_ids": 1, "events": 1},
        ],
    },
    "risky": {
        "bridges": 1,
        "hubs": 0,
        "riskiest": [
            {
                "tenant": "K",
                "person": "ann",
                "identities": 4,
                "link": _link("ann", "anon1", T0 + 100, 2, 10),
                "sizes": [3, 1],
                "customer_ids": [1, 1],
                "ends": ["ann", "anon1"],
                "joined_at": T0 + 100,
                "chain": [_link("ann", "anon1", T0 + 100, 2, 10)],
                "graph": {
                    "nodes": [
                        {"identity": "ann", "customer_id": True},
                        {"identity": "anon1", "customer_id": True},
                        {"identity": "x1", "customer_id": False},
                        {"identity": "x2", "customer_id": False},
                    ],
                    "edges": [["ann", "anon1"], ["ann", "x1"], ["ann", "x2"], ["x1", "x2"]],
                },
            }
        ],
    },
    "junk": {
        "identities": 1,
        "examples": [{"tenant": "K", "identity": "undefined", "person": "undefined", "events": 1}],
        "blocked_aliases": 1,
    },
    "never_customer": 2,
    "tenants": [
        {"tenant": "K", "identities": 5, "people": 2, "events": 5, "quarantined": 3},
        {"tenant": "L", "identities": 1, "people": 1, "events": 1, "quarantined": 0},
    ],
    "timeline": {
        "span": "day",
        "buckets": [
            {"start": DAY0, "event": 6, "property": 8, "alias": 5, "quarantined": 4},
            {"start": DAY0 + 86_400, "event": 1, "property": 0, "alias": 0, "quarantined": 0},
        ],
    },
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "fixture.txt"
    path.write_text("\n".join(FIXTURE) + "\n")
    return path


def test_the_audit_json_of_a_fixture_whose_every_number_is_known(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "fixture.txt", "--received", str(RECEIVED), "--json")
    assert code == 0
    # inputs are named by their absolute path (how `identity ingest` resumes them)
    assert json.loads(out) == {**EXPECTED, "sources": [{"source": str(fixture), "calls": 18}]}
    assert EXPECTED["schema"] == SCHEMA


def test_the_audit_of_files_equals_the_audit_of_the_database_built_from_them(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--received", str(RECEIVED)]
    code, from_files, _ = run(capsys, "audit", "fixture.txt", *common, "--json", "-q")
    assert code == 0
    assert run(capsys, "ingest", "fixture.txt", "--db", "built.db", *common, "-q")[0] == 0
    code, from_db, _ = run(capsys, "audit", "--db", "built.db", "--json")
    assert code == 0
    assert json.loads(from_db) == json.loads(from_files)
    # --db with FILES keeps the database it built
    code, kept, _ = run(capsys, "audit", "fixture.txt", "--db", "kept.db", *common, "--json")
    assert code == 0
    assert json.loads(kept) == json.loads(from_files)
    assert run(capsys, "audit", "--db", "kept.db", "--json")[1] == kept


def test_an_audit_of_a_database_only_reads_it(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "ingest", "fixture.txt", "--db", "x.db", "-q")[0] == 0
    before = Path("x.db").read_bytes()
    assert run(capsys, "audit", "--db", "x.db", "--html", "x.html", "-q")[0] == 0
    assert Path("x.db").read_bytes() == before
    assert not list(Path().glob("*.partial"))


def test_tenant_and_as_of_narrow_the_audit(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "ingest", "fixture.txt", "--db", "x.db", "-q")[0] == 0
    code, out, _ = run(capsys, "audit", "--db", "x.db", "--tenant", "L", "--json")
    report = json.loads(out)
    assert (code, report["tenant"], report["people"]["identities"]) == (0, "L", 1)
    assert [t["tenant"] for t in report["tenants"]] == ["L"]
    assert report["quarantine"] == []
    assert report["risky"]["bridges"] == 0
    # before the bridge was sent, ann and anon1 were two people
    _, out, _ = run(capsys, "audit", "--db", "x.db", "--as-of", str(T0 + 99), "--json")
    report = json.loads(out)
    assert report["as_of"] == T0 + 99
    assert report["people"]["identities"] == 2  # anon1, undefined (ann, lee come later)
    assert report["people"]["people"] == 2
    assert report["kinds"][2] == {"kind": "alias", "received": 0, "stored": 0, "duplicates": 0}


def test_as_of_is_the_audit_of_the_calls_up_to_then(tmp_path: Path) -> None:
    """An as-of audit equals the audit of a database holding only the calls up to then."""
    cut = T0 + 250
    whole = Engine(str(tmp_path / "whole.db"), create=True)
    part = Engine(str(tmp_path / "part.db"), create=True)
    from identity.calls import parse_query

    for line in FIXTURE:
        call = parse_query(line, received=RECEIVED, rules=whole.rules)
        whole.apply_batch([call])
        if call.reason is None and call.t <= cut:
            part.apply_batch([call])
    then, only = audit_database(whole, as_of=cut), audit_database(part)
    for field in ("identities", "people", "sizes", "largest", "bridges", "hubs",
                  "never_customer", "junk", "retries"):  # fmt: skip
        assert getattr(then, field) == getattr(only, field), field
    assert [(m.person, m.link.a, m.link.b, m.sizes, m.customers, m.ends, m.drawing)
            for m in then.riskiest] == [
        (m.person, m.link.a, m.link.b, m.sizes, m.customers, m.ends, m.drawing)
        for m in only.riskiest
    ]  # fmt: skip
    # a link keeps how often it was sent, not when each copy came: only its first time counts
    assert [k.stored for k in then.kinds] == [k.stored for k in only.kinds]


def test_the_text_report_has_every_section(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "audit", "fixture.txt", "--received", str(RECEIVED))
    assert code == 0
    assert "fixture.txt: 18 calls" in err  # the ingest summary goes to stderr
    for title in ("Records by kind", "Quarantined calls by reason", "Likely client retries",
                  "People by size", "Largest people", "Riskiest merges", "Junk identities",
                  "never became Customer IDs", "Tenants", "Calls over time (by day"):  # fmt: skip
        assert title in out, title
    assert "ann - anon1" in out
    assert "18 calls read; 24 records" in out.splitlines()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give FILES to audit, or --db DATABASE"),
        (("--db", "missing.db"), "no such database"),
        (("nope.txt",), "nope.txt: no such file"),
        (("fixture.txt", "--memory-limit", "1GB"), "options of --engine duckdb"),
        (("fixture.txt", "--spark-master", "local"), "option of --engine spark"),
        (("--db", "x.db", "--engine", "duckdb"), "audits FILES"),
        (("fixture.txt", "--as-of", "soon"), "'soon' is not a valid integer"),
        (("fixture.txt", "--format", "xml"), "'xml' is not one of"),
        (("fixture.txt", "--html", "no/such/x.html"), "no such folder"),
    ],
)
def test_bad_command_lines_get_one_line_and_exit_1(
    fixture: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "audit", *args)
    assert code == 1
    assert out == ""
    assert message in err, err
    assert err.count("\n") == 1, err
    assert not Path("missing.db").exists()


# --- bridges, against networkx -------------------------------------------------------------

graphs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(graphs, st.sets(st.integers(0, 12)))
def test_bridges_and_their_parts_match_networkx(
    edges: list[tuple[int, int]], customers: set[int]
) -> None:
    graph = nx.Graph(edges)
    graph.remove_edges_from(nx.selfloop_edges(graph))
    # one person: the component of the first edge's first endpoint
    part = nx.node_connected_component(graph, edges[0][0]) if edges[0][0] in graph else set()
    person = [(a, b) for a, b in edges if a in part and b in part]
    found = {}
    for split in bridges_of(person, dict.fromkeys(customers, True)):
        found[frozenset((split.a, split.b))] = (split.a, split.sizes, split.customers)
    sub = graph.subgraph(part)
    expected = {}
    for a, b in nx.bridges(sub) if sub.number_of_edges() else ():
        cut = nx.restricted_view(sub, [], [(a, b)])
        side = nx.node_connected_component(cut, a)
        sizes = (len(side), len(part) - len(side))
        counts = (len(side & customers), len(part & customers) - len(side & customers))
        expected[frozenset((a, b))] = (a, sizes, counts)
    assert set(found) == set(expected)
    for key, (a, sizes, counts) in expected.items():
        got_a, got_sizes, got_counts = found[key]
        if got_a != a:
            got_sizes, got_counts = got_sizes[::-1], got_counts[::-1]
        assert (got_sizes, got_counts) == (sizes, counts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from("abcdefgh")), max_size=25),
    st.sets(st.sampled_from("abcdefgh")),
)
def test_risky_links_of_the_audit_are_those_of_identity_risky(
    links: list[tuple[str, str]], customers: set[str]
) -> None:
    engine = Engine()
    for t, (a, b) in enumerate(links):
        engine.alias("K", a, b, t=t + 1)
    for c in customers:
        engine.record("K", c, "Seen", t=100)
    report = audit_database(engine)
    expected = risky(engine, "K")
    assert report.bridges == len(expected.bridges)
    assert report.hubs == len(expected.hubs)
    got = [(m.link.a, m.link.b, m.sizes, m.customers) for m in report.riskiest]
    want = [(b.link.start, b.link.end, b.sizes, b.customers) for b in expected.bridges]
    assert sorted(got) == sorted(want)[: len(got)] or set(got) <= set(want)


def test_the_timeline_span_and_buckets() -> None:
    assert span_of(0, 120 * 86_400) == "day"
    assert span_of(0, 730 * 86_400) == "week"
    assert span_of(0, 731 * 86_400) == "month"
    monday = bucket_start(19_676, "week")  # 2023-11-14 was a Tuesday
    assert monday == 1_699_833_600  # Monday 2023-11-13
    assert bucket_start(19_676, "month") == 1_698_796_800  # 2023-11-01


# --- the HTML page -------------------------------------------------------------------------

HOSTILE = '<script>alert(1)</script>"onload=x'


@pytest.fixture
def hostile_engine() -> Engine:
    engine = Engine()
    engine.alias("K", HOSTILE, "b", t=T0)
    engine.alias("K", "b", "c", t=T0 + 1)
    for x in (HOSTILE, "c"):
        engine.record("K", x, "<img src=x>", t=T0 + 2)
    return engine


def test_the_page_is_self_contained_and_escapes_everything(hostile_engine: Engine) -> None:
    text = page(audit_database(hostile_engine))
    assert "<script" not in text
    assert "<img" not in text
    assert "&lt;script&gt;" in text
    for external in ("src=", 'href="http', "url(http", "url(/", "@import", "<link"):
        assert external not in text, external
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", text))
    assert text.count("<svg") >= 3  # sizes, timeline, the risky person's graph


def test_without_matplotlib_the_page_has_tables_and_says_how_to_get_charts(
    hostile_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charts, "available", lambda: False)
    text = page(audit_database(hostile_engine))
    assert "<svg" not in text
    assert "pip install &#x27;identity[report]&#x27;" in text
    assert "<table>" in text
    assert "Which merges look wrong?" in text


def test_charts_say_unavailable_when_matplotlib_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert charts.available() is False


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium; CI installs it)",
)
def test_the_page_renders_in_headless_chromium_without_console_errors(
    fixture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = _chromium()
    assert browser is not None, "CI must have Chromium (.ci/run installs it)"
    out = tmp_path / "audit.html"
    code, _, _ = run(capsys, "audit", "fixture.txt", "--html", str(out), "-q")
    assert code == 0
    shot = tmp_path / "audit.png"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*base, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    # the charts are in the rendered document: sizes, reasons, timeline, the person's graph
    assert dom.stdout.count("<svg") == 4
    assert 'id="risky"' in dom.stdout
    assert "ann" in dom.stdout
    shot_run = subprocess.run(
        [*base, "--window-size=1100,2300", f"--screenshot={shot}", out.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot_run.returncode == 0, shot_run.stderr[-2000:]
    png = shot.read_bytes()
    if os.environ.get("IDENTITY_REGOLD"):  # the README's screenshot comes from this test
        shutil.copyfile(shot, Path(__file__).resolve().parent.parent / "docs" / "audit.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 20_000


def test_a_tenant_name_with_quotes_is_only_a_value(tmp_path: Path) -> None:
    engine = Engine(str(tmp_path / "q.db"), create=True)
    hostile = "x' OR 1=1; DROP TABLE identities; --"
    engine.alias(hostile, "a", "b", t=1)
    engine.alias("other", "c", "d", t=1)
    report = audit_database(engine, hostile)
    assert [t.tenant for t in report.tenants] == [hostile]
    assert (report.identities, report.people) == (2, 1)
    assert audit_database(engine, "x").people == 0
    assert engine.check()["identities"] == 4


def test_an_audit_reads_one_snapshot_while_a_writer_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch committed by another connection in the middle of an audit is not half-seen."""
    from identity.audit.engines import memory

    path = str(tmp_path / "live.db")
    engine = Engine(path, create=True)
    engine.alias("K", "a", "b", t=1)
    writer = Engine(path)
    real = memory._retries

    def meanwhile(q: memory._Query) -> object:
        writer.alias("K", "c", "d", t=2)  # committed between the audit's queries
        writer.record("K", "c", "Seen", t=2)
        return real(q)

    monkeypatch.setattr(memory, "_retries", meanwhile)
    report = audit_database(engine)
    assert (report.identities, report.people) == (2, 1)
    assert [k.stored for k in report.kinds] == [0, 0, 1]
    assert [t.events for t in report.tenants] == [0]
    monkeypatch.setattr(memory, "_retries", real)
    assert audit_database(engine).identities == 4  # the next audit sees it
