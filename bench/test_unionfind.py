"""Union all alias pairs, then list the sets: core UnionFind vs networkx vs scipy.

Every subject must find the same partition as networkx's UnionFind (asserted); the times are
pytest-benchmark's to compare (``--benchmark-group-by=group``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import subjects
from bench.conftest import Sizes, pedantic


@pytest.fixture(scope="module")
def expected(pairs: list[subjects.Pair]) -> set[frozenset[str]]:
    return subjects.canonical(subjects.partition_networkx(pairs))


@pytest.mark.benchmark(group="union-find: union all + to_sets")
@pytest.mark.parametrize("name", sorted(subjects.PARTITIONS))
def test_partition(
    benchmark: BenchmarkFixture,
    name: str,
    pairs: list[subjects.Pair],
    expected: set[frozenset[str]],
    sizes: Sizes,
) -> None:
    partition: Callable[[list[subjects.Pair]], subjects.Partition] = subjects.PARTITIONS[name]
    partition(pairs[:100])  # warm up: lazy imports (scipy) are not part of the figure
    benchmark.extra_info["pairs"] = len(pairs)
    result = pedantic(benchmark, partition, args=(pairs,), rounds=sizes.rounds)
    assert subjects.canonical(result) == expected
