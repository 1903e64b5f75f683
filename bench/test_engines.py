"""python -m bench.engines: the chains generator and each subject, on a small graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import engines


def test_chains_file_and_subjects_agree(tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    path = str(tmp_path / "chains.txt")
    lines = engines.chains_file(path, 2_000, chain=50)
    assert lines >= 2_000
    found = {
        name: engines.SUBJECTS[name](path, "64MB")
        for name in ("networkx", "scipy", "duckdb-components", "duckdb-audit")
    }
    assert found["networkx"]["components"] == 40
    assert found["scipy"]["components"] == 40
    assert found["duckdb-components"]["components"] == 40
    assert found["duckdb-audit"]["people"] == 40


def test_main_prints_one_line_a_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert engines.main(["--links", "500", "--chain", "25", "--subjects", "networkx,scipy"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.count('"subject"') for line in out] == [1, 1]
