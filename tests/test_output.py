"""The command line's output, pinned byte for byte per format (golden files in tests/gold/).

Set IDENTITY_REGOLD=1 to rewrite the golden files after a deliberate change, then read the
diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from identity.cli import main

GOLD = Path(__file__).resolve().parent / "gold"

CALLS = (
    b"/e?_k=K&_p=anon-1&_n=Viewed+Pricing&_t=10\n"
    b"/a?_k=K&_p=anon-1&_n=bob%40example.com&_t=11&_d=1\n"
    b"/s?_k=K&_p=bob%40example.com&Plan=pro&_t=12&_d=1\n"
    b"/s?_k=K&_p=carol&Plan=free%2C+%22trial%22&_t=13&_d=1\n"
    b"/a?_k=K&_p=solo&_n=solo&_t=14&_d=1\n"
    b"/e?_k=K&_p=bob\n"
    b"/a?_k=K&_p=carol&_n=undefined\n"
)

CASES = {
    "people.txt": ["people", "--tenant", "K"],
    "people-csv.txt": ["people", "--tenant", "K", "--csv"],
    "people-tsv-no-headers.txt": ["people", "--tenant", "K", "--tsv", "--no-headers"],
    "people-nl.txt": ["people", "--tenant", "K", "--nl"],
    "people-json.txt": ["people", "--tenant", "K", "--json"],
    "people-github.txt": ["people", "--tenant", "K", "--fmt", "github"],
    "person.txt": ["person", "anon-1", "--tenant", "K"],
    "person-json.txt": ["person", "anon-1", "--tenant", "K", "--json"],
    "person-csv.txt": ["person", "carol", "--tenant", "K", "--csv"],
    "quarantine.txt": ["quarantine"],
    "quarantine-nl.txt": ["quarantine", "--nl"],
    "quarantine-raw.txt": ["quarantine", "--raw"],
    "check.txt": ["check"],
    "check-json.txt": ["check", "--json"],
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gold")
    calls = folder / "calls.txt"
    calls.write_bytes(CALLS)
    path = folder / "id.db"
    here = os.getcwd()
    os.chdir(folder)  # sources are recorded as given: calls.txt:N, the same on every machine
    try:
        assert main(["ingest", "calls.txt", "--db", str(path), "--received", "100", "-q"]) == 0
    finally:
        os.chdir(here)
    return path


def _compare(name: str, text: str) -> None:
    gold = GOLD / name
    if os.environ.get("IDENTITY_REGOLD"):
        gold.write_text(text, encoding="utf-8")
    assert text == gold.read_text(encoding="utf-8"), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_matches_its_golden_file(
    name: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*CASES[name], "--db", str(db)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    _compare(name, out.replace(str(db), "ID.DB"))


def test_ingest_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = tmp_path / "calls.txt"
    calls.write_bytes(CALLS)
    db = str(tmp_path / "id.db")
    assert main(["ingest", str(calls), "--db", db, "--received", "100", "--json"]) == 0
    assert main(["ingest", str(calls), "--db", db, "--received", "100", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    _compare("ingest-json.txt", out.replace(str(calls), "CALLS.TXT"))


def test_export_json_summary(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--db", str(db), "--tenant", "K", "--json"]) == 0
    out, err = capsys.readouterr()
    _compare("export.txt", out)
    _compare("export-summary-json.txt", err)


@pytest.mark.parametrize(
    "flags",
    [
        ["--json", "--csv"],
        ["--csv", "--tsv"],
        ["--nl", "--fmt", "grid"],
        ["--table", "--json"],
    ],
)
def test_two_output_formats_are_a_usage_error(
    flags: list[str], db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["people", "--db", str(db), "--tenant", "K", *flags]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "two output formats" in err


def test_raw_takes_no_other_format(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quarantine", "--db", str(db), "--raw", "--json"]) == 1
    assert "--raw" in capsys.readouterr().err


def test_json_and_nl_together_are_one_format(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["people", "--db", str(db), "--tenant", "K", "--json", "--nl"]) == 0
    assert capsys.readouterr().out == (GOLD / "people-nl.txt").read_text()
