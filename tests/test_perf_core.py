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


def test_pure_python_env_is_read_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "_accelerator_cache", [lambda rows, cols, n: (0, None)])
    monkeypatch.setenv(core.PURE_PYTHON_ENV, "1")
    assert core._accelerator() is None
    monkeypatch.setenv(core.PURE_PYTHON_ENV, "0")
    assert core._accelerator() is not None


def test_without_numpy_every_path_is_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain install (no NumPy, no SciPy): big batches and to_sets run in pure Python."""
    import sys

    for name in ("numpy", "scipy", "scipy.sparse", "scipy.sparse.csgraph"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.setattr(core, "_accelerator_cache", [])
    monkeypatch.delenv(core.PURE_PYTHON_ENV, raising=False)
    monkeypatch.setattr(core, "_ACCELERATE_FROM", 0)
    assert core._accelerator() is None
    uf: UnionFind[int] = UnionFind()
    uf.union_pairs([(i, i + 1) for i in range(0, 20, 2)] + [(1, 2)])
    assert sorted(sorted(s) for s in uf.to_sets())[0] == [0, 1, 2, 3]
    assert uf.n_sets == 9


def test_an_unhashable_item_leaves_the_structure_as_it_was(path: str) -> None:
    uf: UnionFind[object] = UnionFind(["q"])
    uf.union_pairs([("a", "b")])
    with pytest.raises(TypeError):
        uf.union_pairs([("c", "d"), ("e", [])])  # type: ignore[list-item]
    assert list(uf) == ["q", "a", "b"]
    assert "c" not in uf
    uf.union_pairs([("c", "a")])
    assert uf.name("c") == "a"
    assert uf.size("b") == 3


def test_pairs_of_the_wrong_length_are_refused_even_when_they_add_up(path: str) -> None:
    with pytest.raises(ValueError, match="two items"):
        UnionFind().union_pairs([("a", "b", "c"), ("d",)])  # type: ignore[list-item]
