"""Readers of real inputs: access logs, Kissmetrics exports and imports, JSONL, URLs.

Every sample is written here as it appears in the wild, odd lines included: truncated,
undecodable, bad JSON, CRLF line ends, path prefixes, absolute URLs, fragments, BOMs.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pytest

from identity import Engine
from identity.calls import Call
from identity.cli import main
from identity.errors import InputError
from identity.io.sources import MAX_LINE, NOT_LOGGED, Input, Reader, expand, sniff


def read(data: bytes, name: str = "in", **options: object) -> tuple[Reader, list[Call]]:
    reader = Reader(name, stream=io.BytesIO(data), received=1000, **options)  # type: ignore[arg-type]
    return reader, list(reader)


def outline(calls: list[Call]) -> list[tuple[object, ...]]:
    return [(c.source, c.kind, c.identity, c.name, c.reason) for c in calls]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- access logs ----------------------------------------------------------------------------

ACCESS_LOG = (
    # nginx "combined", a path prefix before /e, CRLF
    b'203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /km/e?_k=K&_p=anon-7f&_n=Viewed+Pricing'
    b'&_t=971211300 HTTP/1.1" 200 43 "https://shop.example.com/pricing" "Mozilla/5.0"\r\n'
    # a static file and a health check: not tracking calls
    b'203.0.113.7 - - [10/Oct/2000:13:55:37 -0700] "GET /static/app.js?v=3 HTTP/1.1" 200 5120'
    b' "-" "Mozilla/5.0"\n'
    b'10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] "HEAD /e HTTP/1.1" 200 0 "-" "kube-probe/1.27"\n'
    # Apache common log format, absolute URL (a proxy log), UTF-8 escaped by the server
    b'198.51.100.4 - frank [10/Oct/2000:22:55:38 +0200] "GET https://trk.example.com/a?_k=K'
    b'&_p=anon-7f&_n=ren\\xc3\\xa9%40example.com HTTP/1.0" 200 43\n'
    # a POST whose form body the beacon joined to the query string, with an escaped quote
    b'198.51.100.4 - - [10/Oct/2000:20:55:39 +0000] "POST /s?_k=K&_p=ren%C3%A9%40example.com'
    b'&Company=%22Acme\\"+Inc HTTP/1.1" 200 43 "-" "python-requests/2.31"\n'
    # a POST whose parameters were in the body: not in the log
    b'198.51.100.4 - - [10/Oct/2000:20:55:40 +0000] "POST /e HTTP/1.1" 200 43 "-" "curl/8.4"\n'
    # a fragment, and a user agent in Latin-1 (the call itself is fine)
    b'198.51.100.9 - - [10/Oct/2000:20:55:41 +0000] "GET /e?_k=K&_p=bob&_n=Paid#section HTTP/1.1"'
    b' 200 43 "-" "Gr\xfc\xdfe/1.0"\n'
    # truncated by a crash mid-write
    b'198.51.100.9 - - [10/Oct/2000:20:55:42 +0000] "GET /e?_k=K&_p=bob&_n=Pa\n'
    # an impossible date
    b'198.51.100.9 - - [31/Feb/2000:20:55:42 +0000] "GET /e?_k=K&_p=bob&_n=Paid HTTP/1.1" 200 43\n'
    # percent-encoded bytes that are not UTF-8
    b'198.51.100.9 - - [10/Oct/2000:20:55:43 +0000] "GET /s?_k=K&_p=%ff%fe&x=1 HTTP/1.1" 200 43\n'
    # TLS bytes sent to the HTTP port, and an empty request: logged, not tracking calls
    b'192.0.2.1 - - [10/Oct/2000:20:55:44 +0000] "\\x16\\x03\\x01\\x02\\x00" 400 157 "-" "-"\n'
    b'192.0.2.1 - - [10/Oct/2000:20:55:45 +0000] "-" 400 0 "-" "-"\n'
    # a tracking call with a missing parameter: quarantined with the whole log line
    b'192.0.2.1 - - [10/Oct/2000:20:55:46 +0000] "GET /e?_k=K&_p=bob HTTP/1.1" 200 43 "-" "-"\n'
)


def test_access_log() -> None:
    reader, calls = read(ACCESS_LOG, "access.log")
    assert (reader.format, reader.sniffed) == ("access", True)
    assert outline(calls) == [
        ("access.log:1", "e", "anon-7f", "Viewed Pricing", None),
        ("access.log:4", "a", "anon-7f", "rené@example.com", None),
        ("access.log:5", "s", "rené@example.com", None, None),
        ("access.log:6", "", None, None, NOT_LOGGED),
        ("access.log:7", "e", "bob", "Paid", None),
        ("access.log:8", "", None, None, "malformed"),
        ("access.log:9", "", None, None, "malformed"),
        ("access.log:10", "s", None, None, "bad_encoding"),
        ("access.log:13", "e", "bob", None, "missing_event_name"),
    ]
    assert reader.skipped == 4
    # the log's time, with its zone, is the receive time; _t without _d is the dedupe time
    first = calls[0]
    assert (first.received, first.t, first.td) == (971211336, 971211336, 971211300)
    assert calls[1].received == 971211338  # 22:55:38 +0200 = 20:55:38 UTC
    assert calls[2].properties == (("company", "Company", '"Acme" Inc'),)
    # refused lines keep the raw log line; the malformed ones the receive time given
    assert calls[3].raw.startswith("198.51.100.4 - - [10/Oct/2000:20:55:40 +0000]")
    assert calls[5].raw.endswith('"GET /e?_k=K&_p=bob&_n=Pa')
    assert calls[5].received == 1000
    assert calls[8].raw.endswith('200 43 "-" "-"')


def test_access_log_read_into_an_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(ACCESS_LOG)
    db = str(tmp_path / "a.db")
    code, out, err = run(capsys, "ingest", str(log), "--db", db)
    assert code == 0
    assert "format access (sniffed)" in err
    assert out.strip().endswith("; 4 lines skipped (not tracking calls)")
    assert f"{NOT_LOGGED}=1" in out
    engine = Engine(db)
    assert engine.person("K", "bob").customer_ids == ("bob",)
    assert engine.same_person("K", "anon-7f", "rené@example.com")


# -- Kissmetrics Data Export folders and JSON import files ----------------------------------


@pytest.fixture
def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "km-export"
    (folder / "revisions").mkdir(parents=True)
    (folder / "index.csv").write_text(
        "Filename,Minimum Timestamp,Maximum Timestamp,Minimum UTC Timestamp,"
        "Maximum UTC Timestamp\n"
        "revisions/2.json,1393344600,1393344700,2014-02-25 16:10:00,2014-02-25 16:11:40\n"
        "revisions/10.json,1393344700,1393344800,2014-02-25 16:11:40,2014-02-25 16:13:20\n",
        encoding="utf-8",
    )
    (folder / "revisions" / "2.json").write_bytes(
        b'{"_n":"visited site","_p":"anon-1","_t":1393344604}\r\n'
        b'{"url":"www.example.com/","_n":"Caf\\303\\251 menu","_p":"anon-1","_t":1393344607}\n'
        b'{"_p":"anon-1","_p2":"bob@example.com","_t":1393344614}\n'
        b"\n"
    )
    (folder / "revisions" / "10.json").write_bytes(
        b'{"_p":"bob@example.com","plan":"pro","_t":1393344701}\n'
        b'{"_p":"bob@example.com","_n":"Paid","amount":49.9,"_t":1393344702\n'  # truncated
        b'{"_p":"bob@example.com","_n":"Caf\xe9"}\n'  # Latin-1, and no _t
        b'{"_p":"bob@example.com","_n":"Logged In"}\n'  # no _t: the index's latest time
        b'{"_p":"\\ud800","_n":"x","_t":1}\n'  # a lone surrogate cannot be stored
    )
    return folder


def test_export_folder_is_read_in_index_order(export_folder: Path) -> None:
    inputs = expand([str(export_folder)])
    assert [Path(i.name).name for i in inputs] == ["2.json", "10.json"]
    assert [(i.fmt, i.received) for i in inputs] == [("km", 1393344700), ("km", 1393344800)]
    calls = []
    for item in inputs:
        with Reader(item, tenant="K") as reader:
            calls += list(reader)
    assert [(Path(c.source).name, c.kind, c.name, c.reason) for c in calls] == [
        ("2.json:1", "e", "visited site", None),
        ("2.json:2", "e", "Café menu", None),
        ("2.json:3", "a", "bob@example.com", None),
        ("10.json:1", "s", None, None),
        ("10.json:2", "", None, "malformed"),
        ("10.json:3", "", None, "bad_encoding"),
        ("10.json:4", "e", "Logged In", None),
        ("10.json:5", "", None, "bad_encoding"),
    ]
    assert calls[1].properties == (("url", "url", "www.example.com/"),)
    assert calls[6].t == 1393344800
    assert calls[5].raw == '{"_p":"bob@example.com","_n":"Caf\\xe9"}'


def test_export_folder_without_index_reads_revisions_by_number(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        path = tmp_path / "revisions" / f"{n}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f'{{"_p": "p{n}", "_t": {n}}}\n', encoding="utf-8")
    assert [Path(i.path).name for i in expand([str(tmp_path)])] == ["1.json", "2.json", "10.json"]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (None, "not a Kissmetrics Data Export"),
        ("Filename\nrevisions/9.json\n", "lists 'revisions/9.json', which is not in the folder"),
    ],
)
def test_a_folder_that_is_not_an_export(tmp_path: Path, index: str | None, message: str) -> None:
    if index is not None:
        (tmp_path / "index.csv").write_text(index, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        expand([str(tmp_path)])


def test_kissmetrics_json_import_lines() -> None:
    data = (
        b'{"_n":"visited site","_p":"bob@example.com","_t":1393344604}\n'
        b'{"url":"www.example.com/","_n":"visited","_p":"bob@example.com","_t":1393344607}\n'
        b'{"_p":"bob@example.com","_p2":"robert@example.com","_t":1393344614}\n'
        b'{"_p":"bob@example.com","gender":"male","_t":1393344620}\n'
        b'["not", "an", "object"]\n'
        b'{"_p":"bob@example.com","_n":"Paid","_t":"soon"}\n'
    )
    reader, calls = read(data, "import.json", tenant="K")
    assert reader.format == "km"
    assert [(c.kind, c.reason) for c in calls] == [
        ("e", None), ("e", None), ("a", None), ("s", None), ("", "malformed"),
        ("e", "bad_timestamp"),
    ]  # fmt: skip
    assert {c.tenant for c in calls[:4]} == {"K"}


# -- the Kissmetrics CSV import layout ------------------------------------------------------

CSV = (
    "\ufeffIdentity,Timestamp,Event,Prop:Billing Amount,Prop:Plan,Alias\r\n"
    "bob@bob.com,1328044149,Subscribed,9.99,pro,\r\n"
    "admin@bob.com,1327871425,Joined Newsletter,,,\r\n"
    "matt@bob.com,,,,,matt.smith@bob.com\r\n"  # an alias only
    "joe@bob.com,1325974373,,,free,\r\n"  # a property but no event in an event file
    '"Smith, Phil",1325629592,Subscribed,,,\r\n'  # quoted comma
    "ann@bob.com,yesterday,Subscribed,,,\r\n"  # not a timestamp
    "too,many,cells,1,2,3,4\r\n"
    '"unbalanced,1,Subscribed,,,\r\n'
).encode()


def test_kissmetrics_csv_import() -> None:
    reader, calls = read(CSV, "import.csv", tenant="K")
    assert (reader.format, reader.sniffed) == ("csv", True)
    assert outline(calls) == [
        ("import.csv:2", "e", "bob@bob.com", "Subscribed", None),
        ("import.csv:3", "e", "admin@bob.com", "Joined Newsletter", None),
        ("import.csv:4", "a", "matt@bob.com", "matt.smith@bob.com", None),
        ("import.csv:5", "e", "joe@bob.com", "", "missing_event_name"),
        ("import.csv:6", "e", "Smith, Phil", "Subscribed", None),
        ("import.csv:7", "e", "ann@bob.com", "Subscribed", "bad_timestamp"),
        ("import.csv:8", "", None, None, "malformed"),
        ("import.csv:9", "", None, None, "malformed"),
    ]
    assert calls[0].properties == (
        ("billing amount", "Billing Amount", "9.99"),
        ("plan", "Plan", "pro"),
    )
    assert calls[0].t == 1328044149
    assert calls[3].raw == "joe@bob.com,1325974373,,,free,"


def test_csv_needs_a_tenant() -> None:
    with pytest.raises(InputError, match="carries no API key: give the tenant"):
        read(CSV)


def test_csv_without_event_column_sets_properties() -> None:
    data = b"Identity,Timestamp,Prop:Plan,Alias\nbob,5,pro,\nbob,6,,robert\nann,7,,\n"
    _, calls = read(data, tenant="K")
    assert [(c.kind, c.properties, c.t) for c in calls] == [
        ("s", (("plan", "Plan", "pro"),), 5),
        ("a", (), 6),
        ("s", (), 7),
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Identity,Timestamp,Event,Referrer\n", "column 'Referrer' is not Identity"),
        (b"Name,Timestamp,Event\n", "no Identity column"),
    ],
)
def test_csv_with_a_header_that_is_not_kissmetrics(header: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Reader("f.csv", stream=io.BytesIO(header + b"bob,1,x\n"), fmt="csv", tenant="K")


# -- JSONL of call mappings ------------------------------------------------------------------


def test_jsonl_of_call_mappings() -> None:
    data = (
        b'{"_path": "e", "_k": "K", "_p": "bob", "_n": "Paid", "amount": 5, "vip": true}\n'
        b'{"_path": "/a", "_p": "bob", "_n": "robert"}\r\n'
        b'{"_path": "x", "_k": "K", "_p": "bob"}\n'
        b'{"_path": "e", "_k": "K", "_p": "bob", "_n": \n'
        b'"just a string"\n'
        b'{"_path": "s", "_k": "K", "_p": "\xff"}\n'
        b'{"_path": "s", "_k": "K", "_p": "\\udfff"}\n'
    )
    reader, calls = read(data, "calls.jsonl", tenant="T")
    assert reader.format == "jsonl"
    assert [(c.kind, c.tenant, c.reason) for c in calls] == [
        ("e", "K", None),
        ("a", "T", None),
        ("x", "K", "unknown_call"),
        ("", "K", "malformed"),  # a broken line keeps the key it plainly carries
        ("", "T", "malformed"),
        ("", "K", "bad_encoding"),
        ("", "K", "bad_encoding"),  # the line's own key, even when a text cannot be stored
    ]
    assert calls[0].properties == (("amount", "amount", "5"), ("vip", "vip", "true"))
    assert calls[2].raw == '{"_path": "x", "_k": "K", "_p": "bob"}'


# -- URL / query-string lines ----------------------------------------------------------------


def test_url_lines() -> None:
    data = (
        b"/e?_k=K&_p=anon-7f&_n=Viewed+Pricing&_t=10\r\n"
        b"https://trk.example.com/t/a?_k=K&_p=User+12345&_n=bob%40bob.com#after-signup\n"
        b"\n"
        b"   \n"
        b"/km/s?_k=K&_p=bob%40bob.com&Plan=pro&_t=12&_d=1\n"
        b"_k=K&_p=bob\n"
        b"/e?_k=K&_p=%C3%A9&_n=%ff\n"
        b"/e?_k=K&_p=\xe9&_n=x\n"
        b"/e?_k=K&_p=bob&_n=Paid&_t=12&_d=1&_td=9\n"
    )
    reader, calls = read(data, "calls.txt")
    assert reader.format == "url"
    assert outline(calls) == [
        ("calls.txt:1", "e", "anon-7f", "Viewed Pricing", None),
        ("calls.txt:2", "a", "User 12345", "bob@bob.com", None),
        ("calls.txt:5", "s", "bob@bob.com", None, None),
        ("calls.txt:6", "", "bob", None, "unknown_call"),
        ("calls.txt:7", "e", None, None, "bad_encoding"),
        ("calls.txt:8", "", None, None, "bad_encoding"),
        ("calls.txt:9", "e", "bob", "Paid", None),
    ]
    assert (calls[0].t, calls[0].td) == (1000, 10)
    assert calls[5].raw == "/e?_k=K&_p=\\xe9&_n=x"
    # the export's dedupe-time extension: _t the event time, _td the dedupe time
    assert (calls[6].t, calls[6].td, calls[6].properties) == (12, 9, ())


def test_url_lines_take_the_tenant_option() -> None:
    _, calls = read(b"/e?_p=bob&_n=x\n/e?_k=Other&_p=bob&_n=x\n", tenant="K")
    assert [c.tenant for c in calls] == ["K", "Other"]


# -- every format: gzip, overlong lines, sniffing, stdin -------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        ACCESS_LOG,
        CSV,
        b'{"_p":"a","_n":"x","_t":1}\n{"_p":"a","_p2":"b","_t":2}\n',
        b"/a?_p=a&_n=b",
    ],
)
def test_gzip_is_read_transparently(data: bytes) -> None:
    plain_reader, plain = read(data, tenant="K")
    gz_reader, unzipped = read(gzip.compress(data), tenant="K")
    assert gz_reader.compressed
    assert not plain_reader.compressed
    assert gz_reader.format == plain_reader.format
    assert unzipped == plain


def test_an_overlong_line_is_quarantined_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    data = b"/e?_k=K&_p=" + b"x" * (MAX_LINE * 3) + b"\n/e?_k=K&_p=bob&_n=ok\n"
    path.write_bytes(data)
    with Reader(str(path), fmt="url") as reader:
        calls = list(reader)
    assert [(c.source[-2:], c.reason) for c in calls] == [(":1", "malformed"), (":2", None)]
    assert len(calls[0].raw) < 5000
    assert reader.position == len(data)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b'{"_p":"a","_n":"x"}'], "km"),
        ([b"{broken", b'{"_path": "e", "_p": "a"}'], "jsonl"),
        ([b"{broken"], "km"),
        ([b"", b'127.0.0.1 - - [01/Jan/2010:00:00:00 +0000] "GET /e HTTP/1.1" 200 43'], "access"),
        ([b"identity,timestamp,event"], "csv"),
        ([b"https://trk.example.com/e?_k=K"], "url"),
        ([b"\xff\xfe", b"/e?_k=K"], "url"),
        ([], "url"),
    ],
)
def test_sniff(lines: list[bytes], expected: str) -> None:
    assert sniff(lines) == expected


def test_a_revision_is_not_read_as_another_format(export_folder: Path) -> None:
    revision = expand([str(export_folder)])[0]
    with pytest.raises(InputError, match="holds km lines"):
        Reader(revision, fmt="url")


def test_an_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Is a directory"):
        Reader(Input("dir", str(tmp_path)))


def test_damaged_gzip_is_an_input_error() -> None:
    data = gzip.compress(b"/e?_k=K&_p=a&_n=x\n" * 50_000)
    with pytest.raises(InputError, match="damaged gzip data"):
        read(data[: len(data) // 2])


def test_stdin_gzip_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = gzip.compress(b'{"_p":"bob","_n":"Paid","_t":5}\n{"_p":"bob","_p2":"b@x.org","_t":6}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    db = str(tmp_path / "a.db")
    code, out, err = run(capsys, "ingest", "-", "--db", db, "--tenant", "K")
    assert code == 0
    assert "-: format km (sniffed)" in err
    assert "-: 2 calls: 2 accepted" in out
    assert Engine(db).person_of("K", "b@x.org") == "b@x.org"


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.txt"
    path.write_text("/e?_k=K&_p=a&_n=x\n", encoding="utf-8")
    assert run(capsys, "ingest", str(path), "--db", str(tmp_path / "a.db"), "-q") == (0, "", "")


def test_progress_bar_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import identity.cli

    path = tmp_path / "c.txt"
    path.write_text("".join(f"/e?_k=K&_p=p{i}&_n=x\n" for i in range(300)), encoding="utf-8")
    monkeypatch.setattr(identity.cli, "_PROGRESS_BYTES", 100)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "ingest", str(path), "--db", str(tmp_path / "a.db"),
                         "--batch-size", "50")  # fmt: skip
    assert code == 0
    assert "calls/s" in err
    assert "100%" in err
    assert "300 calls: 300 accepted" in out


def test_every_call_keeps_its_line_number_as_source(tmp_path: Path) -> None:
    path = tmp_path / "calls.json"
    path.write_text(
        "\n".join(json.dumps({"_p": f"p{i}", "_n": "x", "_t": i}) for i in range(5)) + "\n",
        encoding="utf-8",
    )
    with Reader(str(path), tenant="K") as reader:
        calls = list(reader)
    assert [c.source for c in calls] == [f"{path}:{i}" for i in range(1, 6)]
