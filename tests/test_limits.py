"""Input limits (SPEC §4): every input is bounded wherever it enters, and one bad call never
costs another. Each test here failed on the code before the limits existed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from identity import ConfigurationError, Engine
from identity.calls import (
    MAX_JSON_DEPTH,
    MAX_PROPERTIES,
    MAX_TIME,
    REASONS,
    from_mapping,
    parse_form,
    parse_km_line,
    parse_query,
)
from identity.cli import main
from identity.io.formats import sniff
from identity.io.sources import Reader

HUGE_TIMES = ["1e100000000", "1e30", "99999999999999999999", "-1e30", "-5", str(MAX_TIME + 1)]


@pytest.mark.parametrize("stamp", HUGE_TIMES)
@pytest.mark.parametrize("d", ["&_d=1", ""])
def test_a_time_out_of_range_is_bad_timestamp_in_a_url(stamp: str, d: str) -> None:
    call = parse_query(f"/e?_k=K&_p=bob&_n=Paid&_t={stamp}{d}", received=5)
    assert (call.reason, call.tenant) == ("bad_timestamp", "K")


@pytest.mark.parametrize("stamp", ["1e30", "99999999999999999999", "1e100000000", "-1"])
def test_a_time_out_of_range_is_bad_timestamp_in_a_km_line_form_and_mapping(stamp: str) -> None:
    km = parse_km_line(f'{{"_p": "bob", "_n": "x", "_t": {stamp}}}', tenant="K", received=1)
    assert km.reason == "bad_timestamp"
    form = parse_form(f"_k=K&_p=bob&_n=x&_t={stamp}&_d=1".encode(), kind="e", received=1)
    assert form.reason == "bad_timestamp"
    mapping = from_mapping({"_path": "e", "_k": "K", "_p": "b", "_n": "x", "_t": stamp}, received=1)
    assert mapping.reason == "bad_timestamp"


def test_the_largest_and_smallest_times_are_accepted() -> None:
    for stamp in ("0", str(MAX_TIME), "1262304000.9", "1e9", "1e-100000000"):
        assert parse_query(f"/e?_k=K&_p=b&_n=x&_t={stamp}&_d=1", received=1).ok, stamp


def test_library_times_out_of_range_are_quarantined_not_an_overflow() -> None:
    engine = Engine()
    assert engine.record("K", "bob", "Paid", t=10**30).reason == "bad_timestamp"
    assert engine.set("K", "bob", {"a": "1"}, t=-(10**30)).reason == "bad_timestamp"
    assert engine.alias("K", "bob", "b@x.org", t=10**30).reason == "bad_timestamp"
    assert [q.reason for q in engine.quarantine()] == ["bad_timestamp"] * 3
    with pytest.raises(ConfigurationError, match="received must be"):
        engine.record("K", "bob", "Paid", received=10**30)


def test_a_huge_exponent_is_parsed_at_bounded_cost() -> None:
    # In a child with a watchdog: before, int(Decimal("1e100000000")) ran for minutes.
    code = (
        "from identity.calls import parse_query\n"
        "c = parse_query('/e?_k=K&_p=b&_n=x&_t=1e100000000&_d=1', received=1)\n"
        "print(c.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "bad_timestamp"


def test_as_of_far_out_of_range_answers_instead_of_overflowing() -> None:
    engine = Engine()
    engine.alias("K", "a", "b", t=5)
    assert engine.person("K", "a", as_of=10**30).identities == ("a", "b")
    assert list(engine.people("K", as_of=-(10**30))) == []
    assert [p.id for p in engine.people("K", as_of=10**30)] == ["a"]
    assert engine.events("K", "a", as_of=10**40) == []


@pytest.mark.parametrize(
    "query",
    [
        "/e?_k=K&_p=bob%00&_n=Paid",
        "/e?_k=K&_p=bob&_n=Pa%00id",
        "/a?_k=K&_p=bob&_n=b%01x",
        "/s?_k=K&_p=bob&pl%00an=pro",
        "/s?_k=K%00&_p=bob",
        "/e?_k=K&_p=bo%C2%85b&_n=x",  # a C1 control (NEL)
        "/e?_k=K&_p=bob&_n=x%7F",
    ],
)
def test_control_characters_in_identities_and_names_are_refused(query: str) -> None:
    assert parse_query(query, received=1).reason == "control_character"


def test_raw_nul_in_a_km_line_is_refused_and_values_keep_theirs() -> None:
    assert parse_km_line('{"_p": "a\\u0000b", "_n": "x"}', tenant="K", received=1).reason == (
        "control_character"
    )
    call = parse_query("/s?_k=K&_p=bob&note=line%0Abreak", received=1)
    assert call.ok
    assert call.properties == (("note", "note", "line\nbreak"),)


def test_too_many_properties() -> None:
    params = "&".join(f"p{i}=1" for i in range(MAX_PROPERTIES))
    assert parse_query(f"/s?_k=K&_p=b&{params}", received=1).ok
    assert parse_query(f"/s?_k=K&_p=b&{params}&one=more", received=1).reason == (
        "too_many_properties"
    )


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000, 100_000])
def test_deep_json_is_malformed_not_a_recursion_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    line = f'{{"_k": "K", "_p": "bob", "_n": "x", "deep": {nested}}}'
    assert parse_km_line(line, received=1).reason == "malformed"
    assert parse_km_line(line, received=1).tenant == "K"
    reader = Reader("x.jsonl", stream=_bytes(line.replace('{"_k"', '{"_path": "e", "_k"')))
    assert [(c.reason, c.tenant) for c in reader] == [("malformed", "K")]
    value: object = {}
    for _ in range(depth):
        value = {"x": value}
    mapping = from_mapping({"_path": "e", "_k": "K", "_p": "b", "_n": "x", "v": value}, received=1)
    assert mapping.reason == "malformed"


def test_json_within_the_depth_limit_is_kept_as_text() -> None:
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    call = parse_km_line(f'{{"_p": "bob", "_n": "x", "v": {nested}}}', tenant="K", received=1)
    assert call.ok
    assert call.properties[0][2] == nested


def test_a_circular_mapping_is_malformed() -> None:
    loop: list[object] = []
    loop.append(loop)
    call = from_mapping({"_path": "e", "_k": "K", "_p": "b", "_n": "x", "v": loop}, received=1)
    assert (call.reason, call.tenant) == ("malformed", "K")


@pytest.mark.parametrize(
    ("fmt", "line", "tenant"),
    [
        ("url", b"/e?_k=K1&_p=%ff&_n=x", "K1"),
        ("url", b"/e?_k=K1&_p=\xff&_n=x", "K1"),
        ("km", b'{"_k": "K1", "_p": "bob", "_n": ', "K1"),
        ("km", b'{"_k": "K1", "_p": "\xff"}', "K1"),
        ("jsonl", b'{"_path": "e", "_k": "K1", "_p": "b", "_n": ', "K1"),
        (
            "access",
            b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K1&_p=\xff HTTP/1.1" 200 43',
            "K1",
        ),
        ("km", b'{"_p": "bob", "_n": ', "T"),  # none of its own: the --tenant one
    ],
)
def test_refused_lines_keep_the_tenant_they_carry(fmt: str, line: bytes, tenant: str) -> None:
    reader = Reader("f", stream=_raw(line + b"\n"), fmt=fmt, tenant="T", received=1)
    [call] = list(reader)
    assert call.reason in ("bad_encoding", "malformed")
    assert call.tenant == tenant


def test_quarantine_tenant_finds_refused_lines(tmp_path: Path) -> None:
    path = tmp_path / "calls.txt"
    path.write_bytes(b"/e?_k=K1&_p=%ff&_n=x\n/e?_k=K2&_p=ok&_n=x\n")
    db = str(tmp_path / "x.db")
    assert main(["ingest", str(path), "--db", db, "-q"]) == 0
    with Engine(db) as engine:
        assert [q.reason for q in engine.quarantine("K1")] == ["bad_encoding"]


@pytest.mark.parametrize("first", [b"[1, 2]", b'"just a string"', b"42", b"[]"])
def test_json_arrays_and_scalars_are_not_sniffed_as_url_lines(first: bytes) -> None:
    assert sniff([first, b'{"_p": "bob", "_n": "x"}']) == "km"
    assert sniff([first]) == "km"
    reader = Reader("f", stream=_raw(first + b"\n"), tenant="K", received=1)
    assert [c.reason for c in reader] == ["malformed"]


def test_poison_call_is_quarantined_and_the_rest_of_the_batch_commits() -> None:
    engine = Engine()
    good = [parse_query(f"/e?_k=K&_p=u{i}&_n=Paid", received=5) for i in range(5)]
    poison = replace(good[2], t=10**30)  # past validation: only the store can refuse it
    summary = engine.apply_batch([*good[:2], poison, *good[3:]])
    assert summary.accepted == 4
    assert summary.quarantined == {"rejected_by_store": 1}
    assert [(q.reason, q.raw, q.tenant) for q in engine.quarantine()] == [
        ("rejected_by_store", "/e?_k=K&_p=u2&_n=Paid", "K")
    ]
    assert sorted(engine.tenants()) == ["K"]
    assert engine.counts()["identities"] == 4
    engine.check()
    # the engine's cache is still right after the retry
    assert engine.apply_batch([good[2]]).new_identities == 1
    assert engine.record("K", "u0", "Paid", received=5).status == "duplicate"


def test_a_file_with_out_of_range_times_and_deep_json_can_be_finished(tmp_path: Path) -> None:
    lines = [
        '{"_p": "a", "_n": "x", "_t": 5}',
        '{"_p": "b", "_n": "x", "_t": 1e30}',
        '{"_p": "c", "_n": "x", "_t": 99999999999999999999}',
        '{"_p": "d", "_n": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"_p": "e", "_p2": "a", "_t": 6}',
    ]
    path = tmp_path / "export.json"
    path.write_text("\n".join(lines) + "\n")
    db = str(tmp_path / "x.db")
    for _ in range(2):  # the second run finds the file finished
        assert main(["ingest", str(path), "--db", db, "--tenant", "K", "-q"]) == 0
    with Engine(db) as engine:
        assert engine.person("K", "e").identities == ("a", "e")
        assert sorted(q.reason for q in engine.quarantine()) == [
            "bad_timestamp",
            "bad_timestamp",
            "malformed",
        ]
        assert engine.store.input_state(str(path.resolve()))[3] is True


def test_every_new_reason_is_listed() -> None:
    for reason in ("control_character", "too_many_properties", "rejected_by_store"):
        assert reason in REASONS


def test_cli_received_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=a&_n=x\n")
    code = main(["ingest", str(path), "--db", str(tmp_path / "x.db"), "--received", "1" + "0" * 30])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "--received" in err


def test_cli_as_of_out_of_range_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "x.db")
    with Engine(db) as engine:
        engine.alias("K", "a", "b", t=5)
    assert main(["person", "a", "--db", db, "--tenant", "K", "--as-of", "9" * 30, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identities"] == ["a", "b"]


def _bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode() + b"\n")


def _raw(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_a_storage_fault_is_not_retried_call_by_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fault of the database is the batch's, not one call's: raised once, nothing quarantined
    from identity import DiskFullError
    from identity import engine as engine_module

    attempts = []

    def full(*args: object, **kwargs: object) -> None:
        attempts.append(1)
        raise DiskFullError(":memory:", "database or disk is full")

    engine = Engine()
    monkeypatch.setattr(engine_module, "apply_batch", full)
    calls = [parse_query(f"/e?_k=K&_p=u{i}&_n=Paid", received=5) for i in range(3)]
    with pytest.raises(DiskFullError):
        engine.apply_batch(calls)
    assert attempts == [1]
    monkeypatch.undo()
    assert list(engine.quarantine()) == []
    assert engine.apply_batch(calls).accepted == 3


def test_a_poison_call_in_a_bulk_load_is_retried_over_the_indexes(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "bulk.db", durable=False)
    first = [parse_query(f"/a?_k=K&_p=u{i}&_n=v{i}", received=5) for i in range(1500)]
    engine.apply_batch(first)
    assert engine.store.deferred  # an empty database: its read indexes wait for the end
    good = [parse_query(f"/e?_k=K&_p=v{i}&_n=Paid", received=5) for i in range(1500)]
    poison = replace(good[2], t=10**30)
    summary = engine.apply_batch([*good[:2], poison, *good[3:]])
    assert summary.quarantined == {"rejected_by_store": 1}
    # call by call, each one looks its identities up (a read): the indexes are built first
    assert not engine.store.deferred
    assert summary.new_identities == 0
    assert engine.person("K", "v7").customer_ids == ("v7",)
    engine.check()
    engine.close()
