from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from identity.cli import cli, main

README = Path(__file__).resolve().parent.parent / "README.md"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def calls_file(tmp_path: Path) -> Path:
    path = tmp_path / "calls.txt"
    path.write_bytes(
        b"/e?_k=K&_p=anon-1&_n=Viewed+Pricing&_t=10\n"
        b"/a?_k=K&_p=anon-1&_n=bob%40example.com&_t=11\r\n"
        b"\n"
        b"/s?_k=K&_p=bob%40example.com&Plan=pro&_t=12&_d=1\n"
        b"/a?_k=K&_p=solo&_n=solo\n"
        b"/e?_k=K&_p=bob\n"
        b"/e?_k=K&_p=\xff\xfe&_n=x\n"
    )
    return path


def test_ingest_then_people_json(
    tmp_path: Path, calls_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "id.db")
    code, out, _ = run(capsys, "ingest", str(calls_file), "--db", db)
    assert code == 0
    assert "6 calls: 4 accepted" in out
    assert "bad_encoding=1" in out
    code, out, _ = run(capsys, "people", "--db", db, "--tenant", "K", "--json")
    people = [json.loads(line) for line in out.splitlines()]
    assert people == [
        {
            "tenant": "K",
            "person": "anon-1",
            "identities": ["anon-1", "bob@example.com"],
            "customer_ids": ["anon-1", "bob@example.com"],
            "properties": {"Plan": "pro"},
            "events": 1,
        },
        {
            "tenant": "K",
            "person": "solo",
            "identities": ["solo"],
            "customer_ids": [],
            "properties": {},
            "events": 0,
        },
    ]
    code, out, _ = run(capsys, "person", "bob@example.com", "--db", db, "--tenant", "K")
    assert code == 0
    assert "anon-1" in out
    assert "Plan" in out
    code, out, _ = run(capsys, "quarantine", "--db", db, "--json")
    reasons = sorted(json.loads(line)["reason"] for line in out.splitlines())
    assert reasons == ["bad_encoding", "missing_event_name"]
    code, out, _ = run(capsys, "check", "--db", db)
    assert (code, out.strip()) == (0, "ok: 3 identities, 1 links, 2 people")


def test_km_format_with_tenant_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import sys

    data = b'{"_p":"bob","_n":"Paid","_t":5}\n{"_p":"bob","_p2":"b@x.org","_t":6}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    db = str(tmp_path / "id.db")
    code, out, _ = run(capsys, "ingest", "-", "--db", db, "--tenant", "T", "--format", "km")
    assert code == 0, out
    code, out, _ = run(capsys, "person", "b@x.org", "--db", db, "--tenant", "T", "--json")
    assert json.loads(out)["identities"] == ["b@x.org", "bob"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "missing.txt", "--db", "x.db"], "missing.txt: no such file"),
        (["people", "--db", "missing.db", "--tenant", "K"], "no such database"),
        (["people", "--db", "x.db"], "Missing option '--tenant'"),
        (["ingest", "f", "--db", "x.db", "--format", "xml"], "'xml' is not one of"),
        (["person", "ghost", "--db", "{db}", "--tenant", "K"], "no identity 'ghost'"),
        (["check", "--db", "{junk}"], "not a usable SQLite database"),
        (["frobnicate"], "No such command"),
    ],
)
def test_errors_are_one_line_and_nonzero(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "ok.db"
    from identity import Engine

    Engine(db).close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 1000)
    args = [a.format(db=db, junk=junk) for a in args]
    code, _, err = run(capsys, *args)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert err.startswith("identity: error: ")


def test_demo_runs_on_the_packaged_sample_and_ends_with_its_audit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "Qm9i7xK2pL, bob@example.com" in out
    assert "blocked_identity" in out
    lines = out.splitlines()
    assert lines[-2].startswith("audit: 23 records (17 accepted, 6 quarantined, 1 exact")
    page = tmp_path / "identity-demo-audit.html"
    assert lines[-1] == f"audit page: {page}"
    assert "Which merges look wrong?" in page.read_text()
    assert run(capsys, "demo", "--html", "elsewhere.html")[0] == 0
    assert (tmp_path / "elsewhere.html").exists()


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    runner = CliRunner()
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"], catch_exceptions=False)
        assert result.exit_code == 0
        assert command.help, name
        assert re.search(rf"identity {name}\b", readme), f"{name} is not in README.md"
        row = next(line for line in readme.splitlines() if line.startswith(f"| `identity {name}"))
        listing = {"--json", "--nl", "--csv", "--tsv", "--table", "--fmt", "--no-headers"}
        for param in command.params:
            flags = [f for f in param.opts if f.startswith("-")]
            if not flags or "--help" in flags or (listing & set(flags) and "[OUTPUT" in row):
                continue
            assert any(f in row for f in flags), f"identity {name} {flags} not in README's table"


def test_no_arguments_prints_the_commands_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0
    assert err == ""
    assert out.startswith("Usage: identity")
    assert "ingest" in out


def test_demo_never_writes_into_an_existing_database(
    tmp_path: Path, calls_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "mine.db"
    assert run(capsys, "ingest", str(calls_file), "--db", str(db), "-q")[0] == 0
    before = db.read_bytes()
    code, out, err = run(capsys, "demo", "--db", str(db))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "exists" in err
    assert db.read_bytes() == before
    fresh = tmp_path / "new.db"
    assert run(capsys, "demo", "--db", str(fresh), "--html", str(tmp_path / "a.html"))[0] == 0
    assert fresh.stat().st_size > 0
