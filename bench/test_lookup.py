"""Reopen a database of N identities and answer the first lookup; then lookups on it.

The database is made once per session by the engine (`bench.subjects.build_db`). Reopening
happens in this process (imports done): ``python -m bench report`` times it in a fresh one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import subjects
from bench.conftest import Sizes, pedantic
from identity.engine import Engine

#: Lookups per benchmarked call (the figure is per batch of this many).
BATCH = 100


@pytest.fixture(scope="module")
def sample(identities_db: Path) -> list[tuple[str, str]]:
    return subjects.sample_identities(identities_db, BATCH + 1)


@pytest.fixture
def engine(identities_db: Path) -> Iterator[Engine]:
    with Engine(identities_db, create=False) as opened:
        yield opened


@pytest.mark.benchmark(group="reopen: Engine(path) + first person_of")
def test_reopen_first_lookup(
    benchmark: BenchmarkFixture,
    identities_db: Path,
    sample: list[tuple[str, str]],
    sizes: Sizes,
) -> None:
    tenant, identity = sample[0]
    benchmark.extra_info["identities"] = sizes.identities
    person = pedantic(
        benchmark,
        subjects.reopen_lookup,
        args=(identities_db, tenant, identity),
        rounds=sizes.rounds,
    )
    assert person <= identity


@pytest.mark.benchmark(group=f"lookups: {BATCH} random identities")
def test_person(benchmark: BenchmarkFixture, engine: Engine, sample: list[tuple[str, str]]) -> None:
    def run() -> int:
        return sum(len(engine.person(tenant, name).identities) for tenant, name in sample[1:])

    members = benchmark(run)
    assert members >= BATCH


@pytest.mark.benchmark(group=f"lookups: {BATCH} random identities")
def test_person_of(
    benchmark: BenchmarkFixture, engine: Engine, sample: list[tuple[str, str]]
) -> None:
    def run() -> list[str]:
        return [engine.person_of(tenant, name) for tenant, name in sample[1:]]

    ids = benchmark(run)
    assert all(pid <= name for pid, (_, name) in zip(ids, sample[1:], strict=True))


@pytest.mark.benchmark(group=f"lookups: {BATCH} random identities")
def test_same_person(
    benchmark: BenchmarkFixture, engine: Engine, sample: list[tuple[str, str]]
) -> None:
    pairs = list(itertools.pairwise(sample[1:]))

    def run() -> int:
        same = 0
        for (tenant, a), (_, b) in pairs:
            same += engine.same_person(tenant, a, b)
            same += engine.same_person(tenant, a, a)
        return same

    same = benchmark(run)
    assert same >= len(pairs)  # everyone is the same person as themselves
