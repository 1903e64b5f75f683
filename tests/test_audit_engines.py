"""The DuckDB (and Spark) audit engines give the in-memory engine's report for the same files.

The reference is :func:`identity.audit.engines.memory.audit_files`, which ingests the files
through identity's own readers; every engine's :class:`~identity.audit.model.Audit` must be
equal to it (and so its JSON), and DuckDB's reading of query-string lines must give the same
calls and quarantine reasons as :class:`identity.io.sources.Reader`, line by line.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import workloads
from identity.audit.engines import memory
from identity.audit.model import Audit
from identity.calls import DEFAULT_RULES, MAX_CALL_LENGTH
from identity.cli import ingest_inputs
from identity.io.sources import Reader, expand

duckdb = pytest.importorskip("duckdb")
from identity.audit.engines import duckdb as engine_duckdb  # noqa: E402

RECEIVED = 1_700_000_000

HOSTILE = [
    "/e?_k=K&_p=bob&_n=Signed+Up&plan=pro&_t=1262304000&_d=1",
    "/e?_k=K&_p=bob&_n=Signed+Up&plan=pro&_t=1262304000&_d=1",
    "/e?_k=K&_p=bob&_n=signed%20up&plan=pro&_t=1262304100",
    "/e?_k=K&_p=bob&_n=signed%20up&plan=pro&_t=1262304200.7",
    "/s?_k=K&_p=b%40x.org&Plan%3A+Tier=pro&tier,x=1&_t=25&_d=1",
    "/a?_k=K&_p=bob&_n=b%40x.org&_t=20&_d=1",
    "/a?_k=K&_p=b%40x.org&_n=bob&_t=10&_d=1",
    "/a?_k=K&_p=bob&_n=undefined",
    "/a?_k=K&_p=bob&_n=%22NULL%22",
    "/a?_k=K&_p=bob&_n=+%27Guest%27+",
    "/a?_k=K&_p=bob&_n=0-0-0",
    "/a?_k=K&_p=bob&_n=bob",
    "/a?_k=K&_p=undefined&_n=undefined",
    "/e?_k=K&_p=undefined&_n=Visit",
    "/e?_k=&_p=x&_n=y",
    "/e?_p=x&_n=y",
    "/e?_k=K&_n=y",
    "/e?_k=K&_p=x",
    "/a?_k=K&_p=x",
    "/e?_k=K&_p=" + "x" * 256 + "&_n=y",
    "/e?_k=K&_p=" + "x" * 255 + "&_n=y",
    "/e?_k=" + "k" * 256 + "&_p=x&_n=y",
    "/e?_k=K&_p=x&_n=" + "n" * 256,
    "/a?_k=K&_p=x&_n=" + "n" * 256,
    "/e?_k=K&_p=x&_n=y&_t=abc&_d=1",
    "/e?_k=K&_p=x&_n=y&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=-5",
    "/e?_k=K&_p=x&_n=y&_t=1e5&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=999999999999999&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=253402300800&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=253402300799&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=12.&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=&_d=1",
    "/e?_k=K&_p=x&_n=y&_t=",
    "/e?_k=K&_p=x&_n=y&=v",
    "/e?_k=K&_p=x&_n=y&" + "p" * 256 + "=v",
    "/e?_k=K&_p=x&_n=y&v=" + "x" * 8193,
    "/e?_k=K&_p=x&_n=y&=v&v=" + "x" * 8193,
    "/s?_k=K&_p=x&_n=notreserved&a=1",
    "/s?_k=K&_p=x",
    "/s?_k=K&_p=q&_t=5&_d=0&x=1",
    "/e?_k=K&_p=x&_n=y&a=1&a=2",
    "/e?_k=K&_p=x&_n=y&A=1&a=2",
    "/e?_k=K&_p=x&_n=y&k,:=v",
    "/x?_k=K&_p=x",
    "_k=K&_p=bob",
    "https://trk.example.com/t/a?_k=K&_p=User+12345&_n=bob%40bob.com",
    "/e?_k=K&_p=caf%C3%A9&_n=Caf%C3%A9+%C3%9F",
    "/e?_k=K&_p=%ff&_n=x",
    "/e?_k=K&_p=a%00b&_n=x",
    "/e?_k=K&_p=a%09b&_n=x",
    "/e?_k=K&_p=a%7Fb&_n=x",
    "/e?_k=K&_p=x&_n=y#frag",
    "  /e?_k=K&_p=sp&_n=y  ",
    "/e?_k=K&_p=x&_n=y&_td=5&_t=6",
    "/e?_k=K&_p=x&_n=y&_prop%3A_n=5",
    "",
    "   ",
    "\t\x0b \x0c",
    "/e?_k=K&_p=x&_n=y&" + "&".join(f"p{i}=1" for i in range(1001)),
    "/e?_k=K&_p=x&_n=y&" + "&".join(f"p{i}=1" for i in range(1000)),
    "/e?_k=K2&_p=x&_n=y&q=%7e%7E",
    "/e/?_k=K&_p=slash&_n=y",
    "e?_k=K&_p=bare&_n=y",
    "/e?_k=K&_p=x&_n=y&q=a%2",
    "/e?_k=K&_p=x&_n=y&q=%zz",
    "/e?_k=K&_p=q%22uote&_n=y&w=%5C%22",
    "/e?_p=nokey&_n=y",
    "/e?_k=K&_p=x&_n=y&a=b=c",
    "/e?_k=K&_p=x&_n=y&flag",
    "/e?_k=K&_p=x&_n=y&&&",
    # the SQL path's flat lane (every parameter key=value, split at = and & by turns)
    "/a?_k=K&_n=_p&_p=x",
    "/e?_k=K&_p=_n&_n=y",
    "/e?_p=_k&_k=K&_n=y&_t=_d&_d=1",
    "/a?_k=K&_p=x&_n=y&_p=z",
    "/e?_k=K&_p=x&_n=y&_n=z",
    "/a?_k=K&_p=x&_n=y&_t=1&_t=2",
    "/a?_k=K&_p=x&_n=y&plan=pro",
    "/a?_k=K&_p=x&_n=y&q=1&q=2",
    "/s?_k=K&_p=x&_n=v",
    "/s?_k=K&_p=x&_n=1&_n=2",
    "/e?_k=K&_p=a%3Db&_n=y",
    "/e?_k=K&_p=a%3db&_n=y",
    "/e?_k=K&_p=a%26b&_n=y",
    "/e?_k=K&_p=x&_n=y&k%3D=v",
    "/e?_k=K&_p=a%2541&_n=y",
    "/e?_k=K&_p=x&_n=y&a+b=c+d",
    "/e?_k=K&_p=x&_n=y&%5Fp=z",
    "/a?_k=K&%5Fp=x&_n=y",
    "/e?_k=K&_p=x?y&_n=z",
    "/e?_k=K&_p=x&_n=",
    "/e?_k=K&_p=x&_n=y&_d=1&_t=5",
    "/a?_k=K&_p=x&_n=y&_d=1",
    "/s?_k=K&_p=x&_t=_t&_d=1",
]


_LOG = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "{} {} HTTP/1.1" 200 43'

#: Access-log lines: every hostile query string that fits a request, and the log's own traps.
ACCESS = [
    *(_LOG.format("GET", "/t/" + x.lstrip("/")) for x in HOSTILE if x and " " not in x),
    *(_LOG.format("GET", x) for x in HOSTILE[:12]),
    _LOG.format("POST", "/e?_k=K&_p=posted&_n=y"),
    _LOG.format("POST", "/e"),
    _LOG.format("HEAD", "/e?_k=K&_p=head&_n=y"),
    _LOG.format("GET", "/logo.png"),
    _LOG.format("GET", "/t/x?_k=K&_p=x&_n=y"),
    _LOG.format("GET", "/t/e/?_k=K&_p=slash&_n=y"),
    _LOG.format("GET", "/t/e?_k=K&_p=frag&_n=y#top"),
    _LOG.format("GET", "/t/e#x?_k=K&_p=frag&_n=y"),
    _LOG.format("GET", "/t/e?_k=K&_p=sp%20ace&_n=y&_t=5&_d=1"),
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=q\\"uote&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=\\x41b&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [31/Feb/2000:13:55:36 -0700] "GET /e?_k=K&_p=feb&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:60 +0000] "GET /e?_k=K&_p=leap&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [10/oct/2000:13:55:36 +0000] "GET /e?_k=K&_p=lower&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [31/Dec/1969:23:59:59 +0000] "GET /e?_k=K&_p=old&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [31/Dec/9999:23:59:59 -0100] "GET /e?_k=K&_p=late&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [31/Dec/9999:23:59:59 +0000] "GET /e?_k=K&_p=last&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [01/Jan/2001:00:00:00 +0530] "GET /e?_k=K&_p=ist&_n=y HTTP/1.0" 304 -',
    '1.2.3.4 - a user [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=user&_n=y HTTP/1.1" 200 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=h2&_n=y HTTP/2.0" 200 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=noproto&_n=y" 200 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=big&_n=y HTTP/1.1" 200 4x',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=st&_n=y HTTP/1.1" 2000 4',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_k=K&_p=combined&_n=y HTTP/1.1" 200 4 '
    '"https://example.com/?q=[x]" "Mozilla/5.0 (X11)"',
    "just garbage",
    "",
]


#: Kissmetrics JSON lines: what the SQL path decides, and every way a line can fall outside it.
KM = [
    json.dumps({"_p": "bob", "_n": "Paid", "_t": 5}),
    json.dumps({"_p": "bob", "_p2": "b@x.org", "_t": 7}),
    json.dumps({"_p": "bob", "_p2": "b@x.org", "_n": "zzz", "_t": 7, "plan": "x"}),
    json.dumps({"_p": "u", "plan": "x", "_t": 9}),
    json.dumps({"_p": "u", "plan": "x", "_t": 9, "_d": "0"}),
    json.dumps({"_p": "u", "plan": "x", "_t": "9"}),
    json.dumps({"_p": "u", "plan": 5, "n": 0}),
    json.dumps({"_k": "", "_p": "u"}),
    json.dumps({"_k": "T2", "_p": "u", "_n": "A,b:c", "x": "a+b%20"}),
    json.dumps({"_p": "undefined", "_p2": "bob"}),
    json.dumps({"_p": "bob", "_p2": "bob"}),
    json.dumps({}),
    '{"_p": "dup", "_p": "dup2", "_n": "x"}',
    '{"_p":"x","_n":"y","_t":-5}',
    '{"_p":"x","_n":"y","_t":1.5}',
    '{"_p":"x","_n":"y","_t":253402300800}',
    '{"_p":"x","_n":"y","_t":99999999999999999999}',
    '{"_p":"x","_n":"y","v":true}',
    '{"_p":"x","_n":"y","v":null}',
    '{"_p":"x","_n":"y","v":"a\\"b"}',
    '{"_p":"bob", "_n": "Caf\\303\\251", "_t": 11}',
    '{"_p":"x","_n":""}',
    '{"_p":"x","_n":"' + "n" * 256 + '"}',
    '{"_p":"' + "p" * 256 + '","_n":"y"}',
    '{"_p":"x","_n":"y","' + "k" * 256 + '":"v"}',
    '{"_p":"x","_n":"y","":"v"}',
    '{"_p":"x","_n":"y","A":"1","a":"2"}',
    '{"_p":"x","_n":"y","_td":"5"}',
    '{"_p":"x","_n":"y","_prop:_n":"5"}',
    '{"_p":"x" ,  "_n" :"y"  }',
    '{"_p":"x","_n":"y"} ',
    "[1]",
    '{"_p": "bob"',
    "garbage",
    "",
    '{"_p":"x","_s":"y"}',
    '{"_p":"x","_n":"y","_k":"K","_t":"abc"}',
    '{"_p":"x","_n":"y","_t":"5","_d":"1"}',
    '{"_p":"x","_p2":"","_t":5}',
    '{"_p":"x","_n":"y","v":"' + "x" * 8193 + '"}',
    '{"_p":"x","_n":"y",' + ",".join(f'"p{i}":"1"' for i in range(1001)) + "}",
    '{"_p":"x","_n":"y",' + ",".join(f'"p{i}":"1"' for i in range(999)) + "}",
]


def _write(path: Path, lines: Sequence[str], *, gz: bool = False, end: str = "\n") -> str:
    data = (end.join(lines) + end).encode("utf-8")
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    os.utime(path, (RECEIVED, RECEIVED))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Named sets of input files."""
    root = tmp_path_factory.mktemp("audit-engines")

    def generated(shape: str, n: int, tenants: int = 1, gz: bool = False) -> str:
        name = root / f"{shape}.txt{'.gz' if gz else ''}"
        workloads.write(workloads.generate(shape, n, 0, tenants), str(name), "url")
        os.utime(name, (RECEIVED, RECEIVED))
        return str(name)

    hostile = _write(root / "hostile.txt", HOSTILE)
    crlf = _write(root / "crlf.txt", HOSTILE[:12], end="\r\n")
    hostile_gz = _write(root / "hostile.txt.gz", HOSTILE[5:30], gz=True)
    unnamed_gz = _write(root / "calls-gzip-without-suffix", HOSTILE[:20], gz=True)
    bad = root / "bad.txt"
    bad.write_bytes(b"/e?_k=K&_p=\xff&_n=x\n/e?_k=K&_p=ok&_n=x\n")
    bom = root / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf/e?_k=K&_p=bom&_n=x\n/e?_k=K&_p=ok2&_n=x\n")
    km = _write(
        root / "export.json",
        [
            json.dumps({"_p": "bob", "_n": "Paid", "_t": 5}),
            json.dumps({"_p": "bob", "_p2": "b@x.org", "_t": 7}),
            '{"_p": "bob"',
            json.dumps({"_p": "u", "plan": "x", "_t": 9}),
            '{"_p": "bob", "_n": "Caf\\303\\251", "_t": 11}',
        ],
    )
    jsonl = _write(
        root / "calls.jsonl",
        [
            '{"_path": "e", "_k": "K", "_p": "j", "_n": "Paid", "amount": 5}',
            "[1]",
            '{"_path": "a", "_k": "K", "_p": "j", "_n": "bob"}',
        ],
    )
    access = _write(
        root / "access.log",
        [
            '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /t/s?_k=K&_p=bob&x=1 HTTP/1.1" 200 43',
            '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /logo.png HTTP/1.1" 200 9',
            '1.2.3.4 - - [10/Oct/2000:13:55:37 -0700] "POST /e HTTP/1.1" 200 9',
            "garbage",
        ],
    )
    logs = _write(root / "hostile-access.log", ACCESS)
    logs_gz = _write(root / "hostile-access.log.gz", ACCESS[::-1], gz=True)
    for path in (bad, bom):
        os.utime(path, (RECEIVED, RECEIVED))
    return {
        "hostile": [hostile, crlf, hostile_gz, unnamed_gz, str(bad), str(bom)],
        "formats": [km, jsonl, access, hostile],
        "access": [logs, logs_gz, access],
        "km": [_write(root / "hostile.json", KM), _write(root / "hostile.json.gz", KM, gz=True)],
        "mixed": [generated("mixed", 4000, 3), generated("junk", 1500, gz=True)],
        "chains": [generated("long_chain", 12_000), generated("power_law", 3000)],
        "retries": [generated("retries", 3000), generated("shared_device", 2000)],
    }


def _memory(
    paths: Sequence[str], *, tenant: str | None = None, as_of: int | None = None,
    default_tenant: str | None = None,
) -> Audit:  # fmt: skip
    def ingest(engine: object, _: object) -> None:
        ingest_inputs(engine, expand(paths), tenant=default_tenant, quiet=True)  # type: ignore[arg-type]

    return memory.audit_files(paths, tenant=tenant, as_of=as_of, ingest=ingest)


def _merge_key(m: dict[str, Any]) -> tuple[Any, ...]:
    return (-min(m["sizes"]), -min(m["customer_ids"]), m["tenant"], m["person"],
            m["link"]["a"], m["link"]["b"])  # fmt: skip


def _assert_same(expected: Audit, got: Audit) -> None:
    want, have = expected.as_dict(), got.as_dict()
    assert have["risky"]["riskiest"] == sorted(have["risky"]["riskiest"], key=_merge_key)
    for key in want:
        assert have[key] == want[key], key
    assert got == expected


@pytest.fixture(params=["scipy", "contraction"])
def components(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the DuckDB engine finds people: SciPy (links that fit), SQL (the rest)."""
    if request.param == "contraction":  # no link fits in memory
        monkeypatch.setattr(engine_duckdb, "_BYTES_A_LINK", 1 << 62)
    return str(request.param)


@pytest.mark.parametrize(
    "name", ["hostile", "formats", "access", "km", "mixed", "chains", "retries"]
)
def test_duckdb_audit_equals_memory(
    files: dict[str, list[str]], name: str, components: str
) -> None:
    paths = files[name]
    steps: list[str] = []
    _assert_same(_memory(paths), engine_duckdb.audit(paths, progress=steps.append))
    how = [s for s in steps if s.startswith("people: components in")]
    rounds = sum(s.startswith("components: round") for s in steps)
    if components == "contraction":
        assert how == [f"people: components in {rounds} rounds"]
    else:  # SciPy, unless there is no link at all
        assert rounds == 0
        assert how in (["people: components in memory (SciPy)"], ["people: components in 0 rounds"])


def test_duckdb_audit_with_default_tenant_tenant_and_as_of(
    files: dict[str, list[str]], components: str
) -> None:
    paths = files["formats"]
    got = engine_duckdb.audit(paths, default_tenant="K")
    _assert_same(_memory(paths, default_tenant="K"), got)
    paths = files["mixed"]
    as_of = 1_262_304_000 + 3 * 86_400
    for tenant in ("tenant-2", None):
        want = _memory(paths, tenant=tenant, as_of=as_of)
        _assert_same(want, engine_duckdb.audit(paths, tenant=tenant, as_of=as_of))


def test_duckdb_audit_under_a_memory_limit(
    files: dict[str, list[str]], tmp_path: Path, components: str
) -> None:
    paths = files["chains"]
    got = engine_duckdb.audit(paths, memory_limit="64MB", spill_dir=str(tmp_path))
    _assert_same(_memory(paths), got)


def _reader_calls(path: str) -> list[tuple[object, ...]]:
    with Reader(path) as reader:
        return [
            (
                c.source,
                c.kind if c.ok else None,
                c.tenant,
                c.identity,
                c.name,
                c.properties,
                c.t,
                c.td,
                c.received,
                None if c.ok else c.raw,  # the engines keep the raw text of refused calls only
                c.reason,
            )
            for c in reader
        ]


def _duckdb_calls(path: str, native: bool) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    engine_duckdb.read_calls(con, expand([path]), native=native)
    rows = con.execute(
        "SELECT $name || ':' || line, CASE WHEN reason IS NULL THEN kind END, tenant, identity, "
        "name, props, t, td, received, raw, reason FROM calls ORDER BY line",
        {"name": path},
    ).fetchall()
    con.close()
    return [(*row[:5], tuple((p["k"], p["n"], p["v"]) for p in row[5]), *row[6:]) for row in rows]


def test_native_reading_equals_the_reader_line_by_line(files: dict[str, list[str]]) -> None:
    for path in files["hostile"] + files["mixed"] + files["access"] + files["km"]:
        want = _reader_calls(path)
        assert _duckdb_calls(path, native=True) == want, path
    # and the SQL path decided most of the generated lines itself
    con = duckdb.connect()
    ((_, calls, fmt, _, native),) = engine_duckdb.read_calls(con, expand([files["mixed"][0]]))
    assert (calls, fmt) == (4000, "url")
    assert native > 0.9 * calls


def test_native_reading_in_chunks_equals_the_reader(
    files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_duckdb, "_CHUNK", 7)  # a 10^8-line file is parsed 4M at a time
    for path in [files["hostile"][0], files["access"][0], files["km"][0]]:
        assert _duckdb_calls(path, native=True) == _reader_calls(path), path
    paths = files["mixed"]
    monkeypatch.setattr(engine_duckdb, "_CHUNK", 999)
    _assert_same(_memory(paths), engine_duckdb.audit(paths))


def test_native_reading_of_kissmetrics_json_equals_the_reader(tmp_path: Path) -> None:
    path = str(tmp_path / "generated.json")
    workloads.write(workloads.generate("mixed", 4000, 0, 2), path, "km")
    os.utime(path, (RECEIVED, RECEIVED))
    assert _duckdb_calls(path, native=True) == _reader_calls(path)
    con = duckdb.connect()
    ((_, calls, fmt, _, native),) = engine_duckdb.read_calls(con, expand([path]))
    assert (calls, fmt) == (4000, "km")
    assert native > 0.9 * calls


def test_native_reading_of_an_access_log_equals_the_reader(
    files: dict[str, list[str]], tmp_path: Path
) -> None:
    with open(files["mixed"][0], encoding="utf-8") as lines:
        requests = [_LOG.format("GET", "/t" + line.rstrip("\n")) for line in lines]
    path = _write(tmp_path / "generated-access.log", requests)
    assert _duckdb_calls(path, native=True) == _reader_calls(path)
    con = duckdb.connect()
    ((_, calls, fmt, _, native),) = engine_duckdb.read_calls(con, expand([path]))
    assert (calls, fmt) == (4000, "access")
    assert native > 0.9 * calls


def test_duckdb_audit_of_stdin(
    files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    data = Path(files["hostile"][0]).read_bytes()
    want = engine_duckdb.audit(files["hostile"][:1], received=RECEIVED)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    got = engine_duckdb.audit(["-"], received=RECEIVED)
    assert got.kinds == want.kinds
    assert got.quarantine == want.quarantine
    assert (got.identities, got.people) == (want.identities, want.people)


def test_duckdb_audit_of_a_file_named_twice_reads_it_once(
    files: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(files["hostile"][0])
    monkeypatch.chdir(path.parent)
    paths = [path.name, str(path), f"./{path.name}"]  # relative, absolute, another spelling
    got = engine_duckdb.audit(paths)
    _assert_same(_memory(paths), got)
    assert got.sources == ((str(path.resolve()), got.sources[0][1]),)


#: Junk identities in every padding and case the block list's form removes, and near misses
#: that the first/last-character prefilter of the SQL path must not let through as junk.
JUNK = [
    f"/a?_k=K&_p={p}&_n={n}"
    for p, n in [
        ("bob", "%22+null+%22"), ("bob", "+%60Undefined%60+"), ("bob", "%27none%27"),
        ("bob", "NaN"), ("bob", "0000-00"), ("bob", "--"), ("bob", "+0+"), ("bob", "%5B%5D"),
        ("bob", "%7B%7D"), ("bob", "%3Cnil%3E"), ("bob", "n%2Fa"), ("bob", "%5Bobject+Object%5D"),
        ("Guest", "bob"), ("bob", "nulls"), ("bob", "xnull"), ("bob", "nul"), ("bob", "0a0"),
        ("bob", "%22%22"), ("bob", "+"), ("bob", "-1"), ("bob", "1-"), ("anon", "anon"),
        ("bob", "00000000-0000-0000-0000-000000000000"), ("bob", "%22distinct_id"),
    ]
]  # fmt: skip


def test_native_reading_of_junk_identities_equals_the_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "junk.txt", JUNK)
    got = _duckdb_calls(path, native=True)
    assert got == _reader_calls(path)
    assert sum(row[-1] == "blocked_identity" for row in got) > 15


_JUNK_PARTS = [" ", "  ", '"', "'", "`", "0", "-", "-0-", "a", "Z", "/", "[", "}"]


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            _JUNK_PARTS
            + sorted(DEFAULT_RULES.blocked)
            + [b.upper() for b in DEFAULT_RULES.blocked]
            + [b.title() for b in DEFAULT_RULES.blocked]
        ),
        max_size=5,
    ).map("".join)
)
def test_the_sql_block_list_test_equals_rules_is_blocked(identity: str) -> None:
    """One regular expression in SQL decides printable-ASCII identities as is_blocked does."""
    test = engine_duckdb._is_blocked_ascii("$x", sorted(DEFAULT_RULES.blocked))
    ((got,),) = duckdb.execute(f"SELECT {test}", {"x": identity}).fetchall()
    assert got is DEFAULT_RULES.is_blocked(identity)


def test_native_reading_of_overlong_lines_equals_the_reader(tmp_path: Path) -> None:
    """A line past MAX_LINE (and past DuckDB's own line limit) sends the file to the reader."""
    from identity.io.sources import MAX_LINE

    for size in (MAX_LINE + 10, 5 * MAX_LINE):
        path = _write(tmp_path / f"long-{size}.txt", [HOSTILE[0], "/e?_k=K&_p=" + "x" * size])
        assert _duckdb_calls(path, native=True) == _reader_calls(path)
        con = duckdb.connect()
        ((_, calls, _, _, native),) = engine_duckdb.read_calls(con, expand([path]))
        assert (calls, native) == (2, 0)


def _jsonl_lines() -> list[str]:
    """Hostile JSONL: every KM line as it is (no ``_path``) and under paths good and bad."""
    found = []
    for path in ('"e"', '"/a"', '"/t/s/"', '"s/"', '"x"', '""', "5", '"/"'):
        for line in KM:
            if line.startswith("{") and line != "{}":
                found.append('{"_path": ' + path + ", " + line[1:])
    found += KM  # after the first lines, by which the file is sniffed as JSONL
    found.append('{"_path": "e", "_path": "s", "_p": "x", "_n": "y"}')
    found.append('{"_p": "x", "_n": "y", "_path": "a"}')
    # text within MAX_CALL_LENGTH but the call's text (", " and ": ") past it: too_large
    pairs = ",".join(f'"p{i:03d}":"{"v" * 3485}"' for i in range(300))
    found.append('{"_path":"e","_k":"K","_p":"x","_n":"y",' + pairs + "}")
    assert len(found[-1]) <= MAX_CALL_LENGTH < len(json.dumps(json.loads(found[-1])))
    return found


def test_native_reading_of_jsonl_equals_the_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "hostile.jsonl", _jsonl_lines())
    got = _duckdb_calls(path, native=True)
    assert got == _reader_calls(path)
    assert {row[-1] for row in got} >= {None, "too_large", "malformed", "missing_key"}
    con = duckdb.connect()
    ((_, calls, fmt, _, native),) = engine_duckdb.read_calls(con, expand([path]))
    assert fmt == "jsonl"
    assert native > 0.2 * calls
    generated = str(tmp_path / "generated.jsonl")
    with open(generated, "w", encoding="utf-8") as out:
        for call in workloads.generate("mixed", 4000, 0, 2):
            out.write(json.dumps(dict(call)) + "\n")
    os.utime(generated, (RECEIVED, RECEIVED))
    assert _duckdb_calls(generated, native=True) == _reader_calls(generated)
    con = duckdb.connect()
    ((_, calls, fmt, _, native),) = engine_duckdb.read_calls(con, expand([generated]))
    assert (calls, fmt) == (4000, "jsonl")
    assert native > 0.9 * calls
    _assert_same(_memory([path, generated]), engine_duckdb.audit([path, generated]))


def test_native_reading_of_jsonl_with_a_default_tenant_equals_the_reader(tmp_path: Path) -> None:
    """The default tenant's pair counts towards the call's length, as from_mapping counts it."""
    tenant = "T" * 200
    pairs = ",".join(f'"p{i:03d}":"{"v" * 3483}"' for i in range(300))
    long = '{"_path":"e","_p":"x","_n":"y",' + pairs + "}"
    assert len(json.dumps(json.loads(long))) <= MAX_CALL_LENGTH
    assert len(json.dumps({"_k": tenant, **json.loads(long)})) > MAX_CALL_LENGTH
    path = _write(tmp_path / "tenant.jsonl", [*_jsonl_lines()[:40], long])
    with Reader(path, tenant=tenant) as reader:
        want = [(c.source, c.tenant, c.reason) for c in reader]
    con = duckdb.connect()
    engine_duckdb.read_calls(con, expand([path]), default_tenant=tenant)
    got = con.execute(
        "SELECT $name || ':' || line, tenant, reason FROM calls ORDER BY line", {"name": path}
    ).fetchall()
    assert got == want
    assert want[-1][2] == "too_large"
