"""The README's transcripts of the shipped sample are what the commands print (SPEC §10 docs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from identity.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _transcripts() -> list[tuple[str, str]]:
    """Return ``(command, expected output)`` of every README command run on ``sample.db``."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        command, output = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    found.append((command, "\n".join(output)))
                command, output = line[2:], []
            elif command is not None:
                output.append(line)
        if command is not None:
            found.append((command, "\n".join(output)))
    return [(c, o) for c, o in found if "--db sample.db" in c and not c.startswith("identity demo")]


TRANSCRIPTS = _transcripts()


def test_the_readme_has_sample_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 4


@pytest.mark.parametrize(("command", "expected"), TRANSCRIPTS, ids=[c for c, _ in TRANSCRIPTS])
def test_readme_transcript(
    command: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--db", "sample.db"]) == 0
    capsys.readouterr()
    args = shlex.split(command)
    assert args[0] == "identity"
    assert main(args[1:]) == 0
    printed = capsys.readouterr()  # a terminal shows both streams
    assert (printed.out + printed.err).rstrip("\n") == expected.rstrip("\n")
