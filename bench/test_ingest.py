"""Ingest the same `issue2` query-string lines into a file database: floor vs engine vs CLI.

The floor is `bench.subjects.floor_ingest` (``parse_qsl`` + one ``executemany`` into an
indexed table); every round writes a fresh database in a temporary directory. Each subject
must account for every line (asserted).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import subjects
from bench.conftest import Sizes, pedantic

_serial = itertools.count()


def _fresh_db(tmp_path: Path) -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
    """Return a pedantic `setup` giving each round a new database path."""

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (str(tmp_path / f"round-{next(_serial)}.db"),), {}

    return setup


@pytest.mark.benchmark(group="ingest: issue2 query strings into a file database")
def test_floor(benchmark: BenchmarkFixture, lines_file: Path, sizes: Sizes, tmp_path: Path) -> None:
    def run(db: str) -> int:
        return subjects.floor_ingest(subjects.read_lines(lines_file), db)

    benchmark.extra_info["calls"] = sizes.calls
    rows = pedantic(benchmark, run, setup=_fresh_db(tmp_path), rounds=sizes.rounds)
    assert rows == sizes.calls


@pytest.mark.benchmark(group="ingest: issue2 query strings into a file database")
def test_engine(
    benchmark: BenchmarkFixture, lines_file: Path, sizes: Sizes, tmp_path: Path
) -> None:
    def run(db: str) -> Any:
        return subjects.engine_ingest(subjects.read_lines(lines_file), db)

    benchmark.extra_info["calls"] = sizes.calls
    summary = pedantic(benchmark, run, setup=_fresh_db(tmp_path), rounds=sizes.rounds)
    assert summary.calls == sizes.calls
    assert summary.accepted == sizes.calls


@pytest.mark.benchmark(group="ingest: issue2 query strings into a file database")
def test_cli(benchmark: BenchmarkFixture, lines_file: Path, sizes: Sizes, tmp_path: Path) -> None:
    def run(db: str) -> tuple[int, str]:
        return subjects.cli_ingest(str(lines_file), db)

    benchmark.extra_info["calls"] = sizes.calls
    calls, output = pedantic(benchmark, run, setup=_fresh_db(tmp_path), rounds=sizes.rounds)
    assert calls == sizes.calls, output
