"""Fixtures of the pytest-benchmark suite (``pytest bench/ --benchmark-only``).

Sizes come from the environment (``BENCH_PAIRS``, ``BENCH_CALLS``, ``BENCH_IDENTITIES``,
``BENCH_ROUNDS``), and are tiny under ``--benchmark-disable`` (what CI runs: every benchmark
runs once, as a test, in seconds). The benchmarks time one thing each; the comparisons with
goals and ratios are ``python -m bench report``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import subjects


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the inputs of the benchmarks are."""

    pairs: int
    calls: int
    identities: int
    rounds: int


#: Under ``--benchmark-disable``: enough to exercise every path, small enough for CI.
TINY = Sizes(pairs=2_000, calls=500, identities=1_000, rounds=1)
#: Benchmarking defaults, a few seconds a round on a slow machine.
DEFAULT = Sizes(pairs=200_000, calls=20_000, identities=100_000, rounds=3)


def _env(name: str, default: int) -> int:
    value = os.environ.get(name, "").replace("_", "")
    return int(float(value)) if value else default


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    """Return the sizes: `TINY` when benchmarks are disabled, else the environment's."""
    if pytestconfig.getoption("benchmark_disable", default=False):
        return TINY
    return Sizes(
        pairs=_env("BENCH_PAIRS", DEFAULT.pairs),
        calls=_env("BENCH_CALLS", DEFAULT.calls),
        identities=_env("BENCH_IDENTITIES", DEFAULT.identities),
        rounds=_env("BENCH_ROUNDS", DEFAULT.rounds),
    )


@pytest.fixture(scope="session")
def pairs(sizes: Sizes) -> list[subjects.Pair]:
    """Alias pairs over ``0.8 * pairs`` identities (the union-find goal's proportions)."""
    return subjects.alias_pairs(sizes.pairs, int(sizes.pairs * subjects.IDENTITIES_PER_PAIR))


@pytest.fixture(scope="session")
def lines_file(sizes: Sizes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of ``sizes.calls`` `issue2` query-string lines."""
    path = tmp_path_factory.mktemp("lines") / "issue2.url"
    subjects.write_issue2(path, sizes.calls)
    return path


@pytest.fixture(scope="session")
def identities_db(sizes: Sizes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of exactly ``sizes.identities`` identities, made by the engine."""
    path = tmp_path_factory.mktemp("db") / "identities.db"
    subjects.build_db(path, sizes.identities)
    return path


def pedantic(
    benchmark: BenchmarkFixture,
    fn: Callable[..., Any],
    *,
    rounds: int,
    args: tuple[Any, ...] = (),
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
) -> Any:
    """Time `fn` for exactly `rounds` rounds of one call (``benchmark.pedantic``, typed).

    Under ``--benchmark-disable`` it is called once, as a test.
    """
    return benchmark.pedantic(  # type: ignore[no-untyped-call]
        fn, args=args, setup=setup, rounds=rounds, iterations=1
    )
