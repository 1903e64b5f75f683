"""`UnionFind.union_pairs` (bulk interning; the optional compiled speedups and SciPy) is
`union` in a loop, on every path."""

from __future__ import annotations

import os
from array import array

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


def _compiled() -> core._Speedups:
    """The compiled speedups, which CI builds (skipped elsewhere when they were not built)."""
    speedups = core._load_speedups()
    if speedups is None and not os.environ.get("CI"):
        pytest.skip("the compiled speedups were not built (no C compiler at install time)")
    assert speedups is not None, "CI must build _identity_speedups (gcc, Python headers)"
    return speedups


@pytest.fixture(params=["pure", "accelerated", "compiled"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(core, "_speedups_cache", [None])
    monkeypatch.setattr(core, "_accelerator_cache", [None])
    if request.param == "accelerated":
        pytest.importorskip("scipy")
        monkeypatch.setattr(core, "_ACCELERATE_FROM", 0)
        monkeypatch.setattr(core, "_accelerator_cache", [core._load_scipy()])
    elif request.param == "compiled":
        monkeypatch.setattr(core, "_speedups_cache", [_compiled()])
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
    """A plain install (no compiler, no NumPy, no SciPy): every path runs in pure Python."""
    import sys

    for name in ("numpy", "scipy", "scipy.sparse", "scipy.sparse.csgraph", "_identity_speedups"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.setattr(core, "_accelerator_cache", [])
    monkeypatch.setattr(core, "_speedups_cache", [])
    monkeypatch.delenv(core.PURE_PYTHON_ENV, raising=False)
    monkeypatch.setattr(core, "_ACCELERATE_FROM", 0)
    assert core._accelerator() is None
    assert core._speedups() is None
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


@settings(max_examples=200, deadline=None)
@given(before=pairs, batch=pairs, weights=st.lists(names, max_size=5))
def test_the_compiled_half_builds_the_same_forest(
    before: list[tuple[str, str]], batch: list[tuple[str, str]], weights: list[str]
) -> None:
    """Slot for slot: the C interning and merge leave the pure-Python code's exact forest."""
    speedups = _compiled()
    forests = []
    for compiled in (False, True):
        uf: UnionFind[str] = UnionFind()
        for i, x in enumerate(weights):
            uf.add(x, weight=i + 2)
        for a, b in before:
            uf.union(a, b)
        start = len(uf)
        if compiled:
            slots = list(array("q", speedups.intern_pairs(uf._index, batch)))
        else:
            slots = uf._intern(batch)
        fresh = len(uf._index) - start
        uf._items.extend(list(uf._index)[start:])
        uf._parent.extend(array("q", [-1]) * fresh)
        uf._least.extend(range(start, start + fresh))
        if compiled:
            links = speedups.merge_slots(uf._parent, array("q", slots).tobytes())
        else:
            links = uf._n_links
            uf._merge_slots(slots)
            links = uf._n_links - links
        forests.append((slots, list(uf._index.items()), uf._parent.tolist(), links))
    assert forests[0] == forests[1]


def test_the_compiled_half_refuses_what_the_pure_one_refuses() -> None:
    speedups = _compiled()
    index: dict[object, int] = {"a": 0}
    with pytest.raises(ValueError, match="exactly two items"):
        speedups.intern_pairs(index, [("b", "c"), ("d", "e", "f")])
    assert list(index) == ["a", "b", "c"]  # interned before the bad pair: union_pairs undoes it
    with pytest.raises(TypeError, match="sequence of two items"):
        speedups.intern_pairs(index, [7])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unhashable"):
        speedups.intern_pairs(index, [("g", [])])
    assert list(index) == ["a", "b", "c", "g"]
    with pytest.raises(TypeError, match="list or a tuple"):
        speedups.intern_pairs(index, iter([("g", "h")]))  # type: ignore[arg-type]
    assert array("q", speedups.intern_pairs(index, [["g", "a"], "hg"])).tolist() == [3, 0, 4, 3]
    parent = array("q", [-2, -1, 0])  # {0, 2} below 0, {1}
    with pytest.raises(ValueError, match="slot 3 is not in the forest of 3"):
        speedups.merge_slots(parent, array("q", [0, 1, 3, 0]).tobytes())
    with pytest.raises(ValueError, match="slot -1"):
        speedups.merge_slots(parent, array("q", [-1, 0]).tobytes())
    assert parent.tolist() == [-2, -1, 0]  # a bad slot changes nothing
    with pytest.raises(ValueError, match="whole pairs"):
        speedups.merge_slots(parent, array("q", [0]).tobytes())
    with pytest.raises(TypeError, match="64-bit"):
        speedups.merge_slots(array("i", [-1, -1]), array("q", [0, 1]).tobytes())
    with pytest.raises(BufferError, match="not writable"):
        speedups.merge_slots(b"\xff" * 16, array("q", [0, 1]).tobytes())
    assert speedups.merge_slots(parent, array("q", [1, 0, 2, 1]).tobytes()) == 1
    assert parent.tolist() == [-3, 0, 0]
    pair = array("q", [0, 0]).tobytes()
    with pytest.raises(ValueError, match="parent of slot 0, 5, is not in the forest"):
        speedups.merge_slots(array("q", [5, -1]), pair)  # would read past the buffer
    for cycle in ([0], [1, 0]):  # would loop for ever
        with pytest.raises(ValueError, match="cycle"):
            speedups.merge_slots(array("q", cycle), pair)


class _Shrinking:
    """An item whose equality test empties the list of pairs being interned (hostile)."""

    def __init__(self, victims: list[tuple[object, object]]) -> None:
        self.victims = victims

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        self.victims.clear()
        return False


class _Hostile:
    """An item whose hash or equality test raises, or empties the index being filled."""

    def __init__(self, index: dict[object, int], mode: str) -> None:
        self.index, self.mode = index, mode

    def __hash__(self) -> int:
        if self.mode == "hash":
            raise RuntimeError("no hash today")
        return 7

    def __eq__(self, other: object) -> bool:
        if self.mode == "eq":
            raise RuntimeError("no equality today")
        self.index.clear()
        return False


@pytest.mark.parametrize("mode", ["hash", "eq", "clear"])
def test_the_compiled_half_survives_hostile_items(mode: str) -> None:
    """Errors from an item's own code come back as themselves; an index emptied under the
    interning gives slots that the merge still checks (no read outside the forest)."""
    speedups = _compiled()
    uf: UnionFind[object] = UnionFind()
    uf.union_pairs([(7, 8)])  # 7 hashes like a _Hostile item: its __eq__ runs
    pairs = [(_Hostile(uf._index, mode), 9), (1, 2)]
    if mode == "clear":
        slots = speedups.intern_pairs(uf._index, pairs)
        assert array("q", slots).tolist() == [0, 1, 2, 3]  # slots handed out again from 0
        with pytest.raises(ValueError, match="not in the forest"):
            speedups.merge_slots(array("q", [-1]), slots)
    else:
        with pytest.raises(RuntimeError, match="today"):
            speedups.intern_pairs(uf._index, pairs)


def test_the_compiled_half_survives_pairs_that_change_under_it() -> None:
    speedups = _compiled()
    pairs: list[tuple[object, object]] = []
    pairs += [(_Shrinking(pairs), "a"), (_Shrinking(pairs), "b"), ("c", "d")]
    with pytest.raises(RuntimeError, match="changed size"):
        speedups.intern_pairs({}, pairs)


@pytest.mark.parametrize("speedups", [True, False], ids=["compiled", "pure"])
def test_a_pair_that_can_be_read_only_once_is_refused(
    speedups: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not half-read: a one-shot iterator as a pair would give the check, not the interning,
    its items."""
    monkeypatch.setattr(core, "_speedups_cache", [_compiled() if speedups else None])
    uf: UnionFind[str] = UnionFind()
    with pytest.raises(TypeError):
        uf.union_pairs([("a", "b"), iter(("c", "d"))])  # type: ignore[list-item]
    assert len(uf) == 0
    uf.union_pairs([["a", "b"], "cd"])  # any two-item sequence
    assert uf.n_sets == 2


@pytest.mark.parametrize("speedups", [True, False], ids=["compiled", "pure"])
def test_a_failed_union_pairs_leaves_the_structure_as_it_was(
    speedups: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "_speedups_cache", [_compiled() if speedups else None])
    uf: UnionFind[object] = UnionFind(["q"])
    uf.union_pairs([("a", "b")])
    for bad in ([("c", "d"), ("e", [])], [("c", "d"), ("e",)], [("c", "d"), 5]):
        with pytest.raises((TypeError, ValueError)):
            uf.union_pairs(bad)  # type: ignore[arg-type]
        assert list(uf) == ["q", "a", "b"]
        assert uf.n_sets == 2
    uf.union_pairs([("c", "a")])
    assert uf.name("c") == "a"
    assert uf.size("b") == 3
