"""Tests for identity.core.UnionFind: parity with networkx.utils.UnionFind, plus extensions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from networkx.utils import UnionFind as NxUnionFind

from identity.core import UnionFind

INT_POOL = tuple(range(12))
STR_POOL = ("a", "B", "b", "ab", "aa", "z", "", "é", "Z", "ba", "é1", "0")
# Never added to anything: used to check that queries create no state.
PROBES = (-1, 99, "missing", ("t",), None)


def partition(uf: Any) -> set[frozenset[Any]]:
    return {frozenset(s) for s in uf.to_sets()}


def build(
    unions: Iterable[Sequence[Hashable]], elements: Iterable[Hashable] | None = None
) -> tuple[UnionFind[Any], Any]:
    """Apply the same calls to a new UnionFind and a new networkx UnionFind."""
    elements = None if elements is None else list(elements)
    ours: UnionFind[Any] = UnionFind(elements)
    theirs = NxUnionFind(elements)
    for objects in unions:
        ours.union(*objects)
        theirs.union(*objects)
    return ours, theirs


def check_state(ours: UnionFind[Any], theirs: Any, *, ordered: bool = True) -> None:
    """Check `ours` against networkx and against its own invariants."""
    items = list(theirs)
    assert list(ours) == items
    assert len(ours) == len(items)
    sets = list(ours.to_sets())
    assert {frozenset(s) for s in sets} == partition(theirs)
    # Same sets in the same order (order of first item in insertion order).
    assert sets == list(theirs.to_sets())
    assert [frozenset(s) for s in sets] == list(ours.components())
    assert ours.n_sets == len(sets)
    set_of = {x: group for group in map(frozenset, sets) for x in group}
    for x in items:
        group = set_of[x]
        assert x in ours
        assert ours.find(x) in group
        assert ours.find(x) == ours[x]
        assert ours.size(x) == len(group)
        assert ours.members(x) == group
        if ordered:
            assert ours.name(x) == min(group)
    for x, y in itertools.product(items, repeat=2):
        assert ours.connected(x, y) == (set_of[x] is set_of[y])
    # None of the queries above created anything.
    assert list(ours) == items


def check_probes(ours: UnionFind[Any]) -> None:
    """Unknown items: queries raise or answer False, and never create state."""
    before = list(ours)
    n_sets = ours.n_sets
    known = before[0] if before else PROBES[0]
    for probe in PROBES:
        assert probe not in ours
        assert not ours.connected(probe, known)
        assert not ours.connected(known, probe)
        assert not ours.connected(probe, probe)
        for query in (ours.find, ours.size, ours.members, ours.name):
            with pytest.raises(KeyError):
                query(probe)
    assert list(ours) == before
    assert ours.n_sets == n_sets


# ----------------------------------------------------------------------
# fixed cases
# ----------------------------------------------------------------------


def test_empty() -> None:
    uf: UnionFind[str] = UnionFind()
    assert len(uf) == 0
    assert list(uf) == []
    assert list(uf.to_sets()) == []
    assert list(uf.components()) == []
    assert uf.n_sets == 0
    check_probes(uf)


def test_networkx_docstring_example() -> None:
    partition_ = UnionFind("xyz")
    assert sorted(map(sorted, partition_.to_sets())) == [["x"], ["y"], ["z"]]
    partition_.union("x", "y")
    assert sorted(map(sorted, partition_.to_sets())) == [["x", "y"], ["z"]]


def test_fixed_sequence_matches_networkx() -> None:
    unions = [
        ("b", "a"),
        ("c", "d"),
        ("d", "e"),
        ("a", "e"),
        ("x", "y"),
        ("y", "x"),
        ("q", "q"),
        ("f",),
        (),
        ("g", "h", "i"),
        ("i", "a", "z", "w"),
    ]
    ours, theirs = build(unions, elements="mnb")
    check_state(ours, theirs)
    check_probes(ours)
    assert ours.name("e") == "a"
    assert ours.size("e") == 10
    assert ours.n_sets == 6


def test_constructor_with_elements() -> None:
    uf = UnionFind([3, 1, 2, 1, 3])
    assert list(uf) == [3, 1, 2]
    assert len(uf) == 3
    assert uf.n_sets == 3
    assert partition(uf) == {frozenset({1}), frozenset({2}), frozenset({3})}
    assert [uf.name(x) for x in uf] == [3, 1, 2]
    assert list(UnionFind(x for x in "abca")) == ["a", "b", "c"]
    assert list(UnionFind(None)) == []
    assert list(UnionFind("hello")) == list(NxUnionFind("hello"))


def test_union_without_arguments_does_nothing() -> None:
    uf = UnionFind("ab")
    uf.union()
    assert list(uf) == ["a", "b"]
    assert uf.n_sets == 2


def test_union_with_one_argument_adds_it() -> None:
    uf: UnionFind[str] = UnionFind()
    uf.union("a")
    uf.union("a")
    assert list(uf) == ["a"]
    assert uf.n_sets == 1
    assert uf.size("a") == 1
    check_state(*build([("a",), ("a",)]))


def test_union_with_the_same_item_twice() -> None:
    uf: UnionFind[str] = UnionFind()
    uf.union("a", "a")
    assert list(uf) == ["a"]
    assert uf.n_sets == 1
    check_state(*build([("a", "a"), ("b", "b", "b"), ("a", "b", "a")]))


@pytest.mark.parametrize("n", [3, 4, 7])
def test_union_with_many_arguments(n: int) -> None:
    objects = [f"i{k}" for k in range(n)]
    uf = UnionFind(["i1", "other"])
    uf.union(*objects)
    assert list(uf) == ["i1", "other", *(x for x in objects if x != "i1")]
    assert uf.n_sets == 2
    assert uf.members("i0") == set(objects)
    assert uf.size(objects[-1]) == n
    assert uf.name(objects[-1]) == "i0"
    check_state(*build([objects], elements=["i1", "other"]))


def test_union_of_many_existing_sets() -> None:
    unions = [("a", "b"), ("c", "d", "e"), ("f", "g"), ("h",), ("b", "d", "g", "h", "new")]
    ours, theirs = build(unions)
    check_state(ours, theirs)
    assert ours.n_sets == 1
    assert ours.size("a") == 9


def test_getitem_adds_unknown_items_and_returns_the_root() -> None:
    uf: UnionFind[str] = UnionFind()
    assert uf["a"] == "a"
    assert list(uf) == ["a"]
    assert uf.n_sets == 1
    uf.union("a", "b")
    assert uf["b"] in {"a", "b"}
    assert uf["a"] == uf["b"] == uf.find("a")
    assert len(uf) == 2


def test_contains_creates_nothing() -> None:
    uf = UnionFind("ab")
    assert "a" in uf
    assert "c" not in uf
    assert list(uf) == ["a", "b"]


def test_iteration_is_insertion_order() -> None:
    uf = UnionFind([5])
    uf.union(9, 1)
    uf.union(1, 5, 7)
    uf.add(0)
    uf[3]
    uf.add(9)
    assert list(uf) == [5, 9, 1, 7, 0, 3]
    assert list(uf) == list(iter(uf))


def test_add_is_idempotent() -> None:
    uf: UnionFind[str] = UnionFind()
    uf.add("a")
    uf.union("a", "b")
    uf.add("a")
    uf.add("b")
    uf.add("c")
    assert list(uf) == ["a", "b", "c"]
    assert uf.size("a") == 2
    assert uf.n_sets == 2


def test_queries_on_unknown_items_raise_key_error() -> None:
    uf = UnionFind("ab")
    uf.union("a", "b")
    check_probes(uf)
    with pytest.raises(KeyError, match="zz"):
        uf.find("zz")


def test_name_is_the_smallest_member_by_code_point() -> None:
    uf: UnionFind[str] = UnionFind()
    uf.union("bob", "Bob")
    uf.union("bob", "alice")
    uf.union("été", "eve")
    assert uf.name("alice") == "Bob"  # "B" < "a"
    assert uf.name("été") == "eve"  # "v" < "é"
    uf.union("eve", "alice")
    assert uf.name("bob") == "Bob"


def test_name_does_not_depend_on_union_order() -> None:
    edges = [("m", "k"), ("k", "z"), ("b", "y"), ("y", "z"), ("q", "r"), ("c", "r")]
    names = set()
    for perm in itertools.permutations(edges):
        for flip in (False, True):
            uf: UnionFind[str] = UnionFind()
            for a, b in perm:
                uf.union(*((b, a) if flip else (a, b)))
            names.add(tuple(sorted((x, uf.name(x)) for x in uf)))
    assert len(names) == 1
    assert dict(next(iter(names))) == {
        "b": "b", "k": "b", "m": "b", "y": "b", "z": "b", "c": "c", "q": "c", "r": "c",
    }  # fmt: skip


def test_unorderable_members_only_break_name() -> None:
    uf: UnionFind[Hashable] = UnionFind()
    uf.union(1, "a")
    uf.union("a", 2)
    uf.union(3, 4)
    uf.union("x", "w")
    with pytest.raises(TypeError):
        uf.name(1)
    assert uf.name(3) == 3
    assert uf.name("x") == "w"
    assert uf.size(2) == 3
    assert uf.members("a") == {1, 2, "a"}
    assert uf.connected(1, 2)
    # Merging with an unorderable set keeps it unorderable.
    uf.union(4, 1)
    with pytest.raises(TypeError):
        uf.name(3)
    assert uf.n_sets == 2
    ours, theirs = build([(1, "a"), ("a", 2), (3, 4), ("x", "w"), (4, 1)])
    check_state(ours, theirs, ordered=False)


def test_unhashable_items_raise_type_error_like_networkx() -> None:
    uf: UnionFind[Any] = UnionFind()
    with pytest.raises(TypeError):
        uf.union([1], [2])
    with pytest.raises(TypeError):
        NxUnionFind().union([1], [2])
    assert len(uf) == 0
    assert [1] not in uf
    assert not uf.connected([1], [1])


def test_size_members_connected_n_sets() -> None:
    uf = UnionFind(range(6))
    uf.union(0, 1)
    uf.union(2, 3)
    uf.union(1, 3)
    assert uf.size(0) == 4
    assert uf.size(5) == 1
    assert uf.members(2) == {0, 1, 2, 3}
    assert uf.members(4) == {4}
    assert uf.connected(0, 2)
    assert not uf.connected(0, 4)
    assert uf.connected(4, 4)
    assert uf.n_sets == 3


def test_stored_items_are_returned_not_equal_lookalikes() -> None:
    uf: UnionFind[float] = UnionFind([1])
    assert uf.members(1.0) == {1}
    assert type(next(iter(uf.members(1.0)))) is int
    assert type(uf.find(1.0)) is int
    assert type(uf.name(1.0)) is int
    uf.union(1.0, 2)
    assert list(uf) == [1, 2]


def test_adding_during_iteration_raises_like_networkx() -> None:
    def grow(uf: Any) -> None:
        for x in uf:
            uf[x + "!"]

    for uf in (UnionFind("ab"), NxUnionFind("ab")):
        with pytest.raises(RuntimeError):
            grow(uf)


def test_returned_sets_are_copies() -> None:
    uf = UnionFind("abc")
    uf.union("a", "b")
    uf.members("a").add("zz")
    for s in uf.to_sets():
        s.clear()
    assert partition(uf) == {frozenset("ab"), frozenset("c")}
    assert all(isinstance(c, frozenset) for c in uf.components())


def test_long_chains_and_stars() -> None:
    n = 2000
    chain: UnionFind[int] = UnionFind()
    for i in range(n - 1, 0, -1):
        chain.union(i, i - 1)
    star: UnionFind[int] = UnionFind()
    for i in range(1, n):
        star.union(i, 0)
    for uf in (chain, star):
        assert uf.n_sets == 1
        assert uf.size(n - 1) == n
        assert uf.name(n - 1) == 0
        assert uf.connected(0, n - 1)
        assert partition(uf) == {frozenset(range(n))}


def test_random_unions_match_networkx() -> None:
    rng = random.Random(20240229)
    pool = [f"id-{i}" for i in range(3000)]
    unions = [tuple(rng.sample(pool, rng.choice((2, 2, 2, 1, 3)))) for _ in range(2500)]
    ours, theirs = build(unions)
    assert list(ours) == list(theirs)
    assert list(ours.to_sets()) == list(theirs.to_sets())
    for s in ours.to_sets():
        x = next(iter(s))
        assert ours.name(x) == min(s)
        assert ours.size(x) == len(s)
    assert ours.n_sets == len(list(theirs.to_sets()))


def test_works_with_ints_like_the_engine() -> None:
    uf: UnionFind[int] = UnionFind(r for r in (10, 20, 30, 40))
    uf.union(40, 20)
    uf.union(20, 30)
    assert sorted(sorted(s) for s in uf.to_sets()) == [[10], [20, 30, 40]]
    assert uf.name(40) == 20


def test_repr() -> None:
    uf = UnionFind("abc")
    uf.union("a", "b")
    assert repr(uf) == "UnionFind(<3 items in 2 sets>)"


# ----------------------------------------------------------------------
# property-based parity with networkx
# ----------------------------------------------------------------------


def _ops(pool: tuple[Hashable, ...]) -> st.SearchStrategy[list[tuple[str, tuple[Hashable, ...]]]]:
    item = st.sampled_from(pool)
    op = st.one_of(
        st.tuples(st.just("union"), st.lists(item, max_size=2).map(tuple)),
        st.tuples(st.just("union"), st.lists(item, min_size=2, max_size=2).map(tuple)),
        st.tuples(st.just("union"), st.lists(item, min_size=3, max_size=5).map(tuple)),
        st.tuples(st.just("getitem"), st.tuples(item)),
        st.tuples(st.just("add"), st.tuples(item)),
    )
    return st.lists(op, max_size=25)


def _scenario(pool: tuple[Hashable, ...]) -> st.SearchStrategy[Any]:
    elements = st.none() | st.lists(st.sampled_from(pool), max_size=6)
    return st.tuples(elements, _ops(pool))


# Built once (not with flatmap): strategy construction dominates the run time otherwise.
scenarios = _scenario(INT_POOL) | _scenario(STR_POOL)


@settings(max_examples=500, deadline=None, database=None)
@given(scenarios)
def test_matches_networkx_on_random_operations(
    scenario: tuple[list[Hashable] | None, list[tuple[str, tuple[Hashable, ...]]]],
) -> None:
    elements, ops = scenario
    ours: UnionFind[Any] = UnionFind(elements)
    theirs = NxUnionFind(elements)
    for kind, args in ops:
        if kind == "union":
            ours.union(*args)
            theirs.union(*args)
        elif kind == "getitem":
            root = ours[args[0]]
            assert ours.connected(root, args[0])
            theirs[args[0]]
        else:
            ours.add(args[0])
            theirs[args[0]]  # networkx adds unknown items on lookup
        assert list(ours) == list(theirs)
    check_state(ours, theirs)
    check_probes(ours)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.sampled_from(STR_POOL), st.sampled_from(STR_POOL)), max_size=20),
    st.randoms(use_true_random=False),
)
def test_partition_and_names_do_not_depend_on_union_order(
    edges: list[tuple[str, str]], rnd: random.Random
) -> None:
    first, _ = build(edges)
    shuffled = [(b, a) if rnd.random() < 0.5 else (a, b) for a, b in edges]
    rnd.shuffle(shuffled)
    second, _ = build(shuffled)
    assert partition(first) == partition(second)
    assert {x: first.name(x) for x in first} == {x: second.name(x) for x in second}
    assert first.n_sets == second.n_sets
