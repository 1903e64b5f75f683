"""`UnionFind.union_pairs` (bulk interning, optional SciPy accelerator) is `union` in a loop."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity import core
from identity.core import UnionFind

names = st.text(alphabet="abcdef", min_size=1, max_size=3)
pairs = st.lists(st.tuples(names, names), max_size=60)


def _state(uf: UnionFind[str]) -> tuple[object, ...]:
    sets = sorted(sorted(s) for s in uf.to_sets())
    shown = {x: (uf.name(x), uf.size(x)) for x in uf}
    return sets, shown, list(uf), uf.n_sets, len(uf)


@pytest.fixture(params=["pure", "accelerated"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "accelerated":
        pytest.importorskip("scipy")
        monkeypatch.setattr(core, "_ACCELERATE_FROM", 0)
        monkeypatch.setattr(core, "_accelerator_cache", [core._load_scipy()])
    else:
        monkeypatch.setattr(core, "_accelerator_cache", [None])
    return str(request.param)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=pairs, batch=pairs, after=pairs, weights=st.lists(names, max_size=5))
def test_union_pairs_is_union_in_a_loop(
    path: str, before: list[tuple[str, str]], batch: list[tuple[str, str]],
    after: list[tuple[str, str]], weights: list[str],
) -> None:  # fmt: skip
    bulk: UnionFind[str] = UnionFind()
    each: UnionFind[str] = UnionFind()
    for uf in (bulk, each):
        for i, x in enumerate(weights):
            uf.add(x, weight=i + 2)
        for a, b in before:
            uf.union(a, b)
    bulk.union_pairs(batch)
    for a, b in batch:
        each.union(a, b)
    assert _state(bulk) == _state(each)
    for a, b in after:  # unions after a bulk union see the right smallest members
        bulk.union(a, b)
        each.union(a, b)
    assert _state(bulk) == _state(each)


def test_union_pairs_takes_an_iterator_and_refuses_odd_pairs(path: str) -> None:
    uf: UnionFind[str] = UnionFind()
    uf.union_pairs(iter([("b", "a"), ("c", "b")]))
    assert uf.name("c") == "a"
    assert uf.size("c") == 3
    with pytest.raises(ValueError, match="two items"):
        UnionFind().union_pairs([("a", "b"), ("c",)])  # type: ignore[arg-type]


def test_unordered_members_still_merge(path: str) -> None:
    uf: UnionFind[object] = UnionFind()
    uf.union_pairs([(1, "a"), ("a", 2), (3, 4)])
    assert uf.size(2) == 3
    assert uf.name(3) == 3
    with pytest.raises(TypeError):
        uf.name(1)


@settings(max_examples=100, deadline=None)
@given(batch=pairs, singles=st.lists(names, max_size=5))
def test_accelerated_sets_come_in_the_same_order(
    batch: list[tuple[str, str]], singles: list[str]
) -> None:
    pytest.importorskip("numpy")
    uf: UnionFind[str] = UnionFind(singles)
    uf.union_pairs(batch)
    expected = [sorted(s) for s in uf._sets_pure()]
    assert [sorted(s) for s in uf._sets_numpy()] == expected
    assert [sorted(s) for s in uf._sets_pure()] == expected  # compression kept the partition
