"""Core disjoint-set (union-find) structure of the identity engine.

This module is the computational core of identity resolution: every identity
that is aliased to another one ends up in the same disjoint set, and the
*name* of a set (its smallest member) is the canonical identity of everybody
in it.

It deliberately uses the **standard library only** (no networkx, no numpy), so
it can be imported cheaply and reasoned about in isolation.  Two accelerators
are optional and give the same results: ``_identity_speedups``, a small C
extension (``identity/_speedups.c``) that setuptools builds at install time
when a C compiler is there, interns and merges the pairs of `union_pairs`; and
SciPy (``identity[accel]``) merges them when the C half is missing.  `UnionFind` is a
drop-in replacement for :class:`networkx.utils.UnionFind` (same constructor,
``uf[x]``, ``union(*objects)``, ``to_sets()``, iteration), plus the read-only
queries the engine needs (`UnionFind.find`, `UnionFind.name`, ...).

Implementation
--------------
Items are interned to dense integers ``0 .. n-1`` ("slots": a ``dict`` item ->
slot and a ``list`` slot -> item).  The forest itself lives in two
``array.array('q')`` buffers, 8 bytes per slot each and no Python object per
slot:

* ``parent`` -- for a non-root slot, the slot of its parent (``>= 0``); for a
  root, **minus the size** of its set (``< 0``).  Folding the sizes into the
  parent array this way saves 8 bytes per item and one memory access per
  union, compared with a separate ``size`` array;
* ``least`` -- at roots only: the slot of the smallest member of the set, or
  ``-1`` when the members of the set cannot be ordered with ``<``.

Unions are *by size* and finds use iterative *path halving*, which gives the
usual O(alpha(n)) amortised cost per operation, where alpha is the inverse
Ackermann function (alpha(n) <= 4 for any practical n).  The number of sets is
``n - (number of successful links)``, maintained in O(1) per union.

Examples
--------
>>> uf = UnionFind(["carol", "bob"])
>>> uf.union("bob", "alice")
>>> uf.union("dave", "erin")
>>> uf.name("bob"), uf.size("bob"), uf.n_sets
('alice', 2, 3)
>>> sorted(sorted(s) for s in uf.to_sets())
[['alice', 'bob'], ['carol'], ['dave', 'erin']]
"""

from __future__ import annotations

import os
from array import array
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import chain, islice, starmap
from operator import is_
from typing import Any, Generic, Protocol, TypeVar, cast

__all__ = ["UnionFind"]

T = TypeVar("T", bound=Hashable)

#: Marker stored in the ``least`` array for sets whose members are not mutually
#: comparable with ``<`` (for example a set holding both ``1`` and ``"a"``).
_UNORDERED = -1


def _load_scipy() -> Callable[[Any, Any, int], tuple[int, Any]] | None:
    """Return SciPy's connected components over an edge list, or None without SciPy."""
    try:
        import numpy as np
        from scipy.sparse import coo_matrix  # type: ignore[import-untyped]
        from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - SciPy is an optional accelerator
        return None

    def components(rows: Any, cols: Any, n: int) -> tuple[int, Any]:
        ones = np.ones(len(rows), dtype=np.int8)
        graph = coo_matrix((ones, (rows, cols)), shape=(n, n)).tocsr()
        n_sets, labels = connected_components(graph, directed=False)
        return int(n_sets), labels

    return components


#: `union_pairs` of at least this many items (twice the pairs) uses SciPy when installed.
_ACCELERATE_FROM = 100_000
#: Set ``IDENTITY_PURE_PYTHON=1`` to use neither accelerator (compiled speedups, SciPy).
PURE_PYTHON_ENV = "IDENTITY_PURE_PYTHON"
_accelerator_cache: list[Callable[[Any, Any, int], tuple[int, Any]] | None] = []


def _pure_python_forced() -> bool:
    """Whether :data:`PURE_PYTHON_ENV` turns both accelerators off (read at every call)."""
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


class _Speedups(Protocol):
    """The compiled half of `UnionFind.union_pairs` (``identity/_speedups.c``)."""

    def intern_pairs(self, index: dict[Any, int], pairs: list[Any] | tuple[Any, ...]) -> bytes:
        """Return the int64 slot of every item of every pair, adding new items to `index`."""

    def merge_slots(self, parent: array[int], slots: bytes) -> int:
        """Union the slot pairs in `parent` as `UnionFind._merge_slots` does; links made."""


def _load_speedups() -> _Speedups | None:
    """Return the compiled `_identity_speedups` module, or None where it was not built."""
    try:
        import _identity_speedups  # type: ignore[import-not-found]
    except ImportError:  # no C compiler at install time: the pure-Python path
        return None
    return cast(_Speedups, _identity_speedups)


_speedups_cache: list[_Speedups | None] = []


def _speedups() -> _Speedups | None:
    """Return the compiled speedups, loaded on first use.

    None where they were not built, or when :data:`PURE_PYTHON_ENV` is set (read at every
    call, like `_accelerator`).
    """
    if _pure_python_forced():
        return None
    if not _speedups_cache:
        _speedups_cache.append(_load_speedups())
    return _speedups_cache[0]


def _accelerator() -> Callable[[Any, Any, int], tuple[int, Any]] | None:
    """Return the accelerator, loaded on first use (importing SciPy costs ~0.2 s).

    None when SciPy is missing or :data:`PURE_PYTHON_ENV` is set (read at every call, so
    that one process can time both paths).
    """
    if _pure_python_forced():
        return None
    if not _accelerator_cache:
        _accelerator_cache.append(_load_scipy())
    return _accelerator_cache[0]


class _Interner(dict[Any, int]):
    """A dict of item to slot whose missing keys get the next slot (for `union_pairs`)."""

    __slots__ = ()

    def __missing__(self, key: Any) -> int:
        slot = self[key] = len(self)
        return slot


class UnionFind(Generic[T]):
    """Disjoint sets of hashable items with union by size and path halving.

    Drop-in replacement for :class:`networkx.utils.UnionFind`: ``uf[x]``,
    ``union(*objects)``, ``to_sets()``, ``iter(uf)`` and the constructor behave
    the same (``uf[x]`` and ``union`` add unknown items, exactly like networkx).
    The extra queries (`find`, `size`, `members`, `connected`, `name`,
    `components`, `n_sets`, ``x in uf``, ``len(uf)``) never add items.

    Parameters
    ----------
    elements : iterable of hashable, optional
        Items to start with, each in its own singleton set.  Duplicates are
        ignored.

    See Also
    --------
    networkx.utils.UnionFind : The dict-based structure this one replaces.

    Notes
    -----
    Items must be hashable.  `name` additionally needs items that are totally
    ordered by ``<`` *within a set* (all strings, all ints, all tuples of
    those, ...).  Sets mixing items that cannot be compared (``1`` and
    ``"a"``) are still fully supported by every other method; only `name`
    raises `TypeError` for them.

    Costs, with n the number of items and alpha the inverse Ackermann function:

    * ``uf[x]``, `union` (per argument), `find`, `size`, `connected`, `name`:
      O(alpha(n)) amortised;
    * `add`, ``x in uf``, `len`, `n_sets`: O(1) (amortised for `add`);
    * `to_sets`, `components`, `members`: O(n alpha(n)).

    Memory per item: 8 bytes in each of the two ``array('q')`` buffers, one
    ``list`` slot, one ``dict`` entry and one ``int`` object (the items
    themselves are shared, not copied): about 90 bytes for strings, versus
    about 77 for networkx.

    Examples
    --------
    >>> uf = UnionFind("abcd")
    >>> uf.union("c", "b")
    >>> uf.union("d", "b")
    >>> uf.name("d"), uf.size("d"), uf.connected("a", "d"), uf.n_sets
    ('b', 3, False, 2)
    >>> sorted(sorted(s) for s in uf.to_sets())
    [['a'], ['b', 'c', 'd']]
    >>> "z" in uf, len(uf)
    (False, 4)
    >>> list(uf)
    ['a', 'b', 'c', 'd']
    """

    __slots__ = ("_index", "_items", "_least", "_n_links", "_parent", "_stale")

    def __init__(self, elements: Iterable[T] | None = None) -> None:
        #: item -> slot; an `_Interner`, so that `union_pairs` interns in place
        self._index: dict[T, int] = _Interner()
        self._items: list[T] = []
        self._parent: array[int] = array("q")
        self._least: array[int] = array("q")
        self._n_links = 0
        #: True after `union_pairs`: ``least`` is recomputed before it is next read.
        self._stale = False
        if elements is not None:
            index = self._index
            for x in elements:
                if x not in index:
                    self._new(x)

    # ------------------------------------------------------------------
    # internals (slot level)
    # ------------------------------------------------------------------

    def _new(self, x: T) -> int:
        """Append `x` (known to be absent) as a singleton and return its slot."""
        i = len(self._items)
        self._index[x] = i
        self._items.append(x)
        self._parent.append(-1)
        self._least.append(i)
        return i

    def _slot(self, x: T) -> int:
        """Return the slot of `x`, raising `KeyError` if it is unknown."""
        i = self._index.get(x)
        if i is None:
            raise KeyError(x)
        return i

    def _root(self, i: int) -> int:
        """Return the root slot of slot `i`, halving the path on the way."""
        parent = self._parent
        p = parent[i]
        while p >= 0:
            g = parent[p]
            if g < 0:
                return p
            parent[i] = g
            i = g
            p = parent[g]
        return i

    def _roots(self) -> list[int]:
        """Return the root slot of every slot, compressing every path to its root."""
        parent = self._parent.tolist()
        roots = list(range(len(parent)))
        for i, p in enumerate(parent):
            if p < 0:
                continue
            r = p
            q = parent[r]
            while q >= 0:
                r = q
                q = parent[r]
            roots[i] = r
            parent[i] = r  # full compression: later members of the path stop at once
        self._parent = array("q", parent)
        return roots

    def _link(self, ra: int, rb: int) -> int:
        """Merge the sets of the distinct roots `ra` and `rb`; return the new root."""
        least = self._least
        la = least[ra]
        lb = least[rb]
        if la >= 0 and lb >= 0:
            items: list[Any] = self._items
            try:
                if items[lb] < items[la]:
                    la = lb
            except TypeError:
                la = _UNORDERED
        else:
            la = _UNORDERED
        # The comparison above is the only step that can fail: mutate after it.
        parent = self._parent
        sa = parent[ra]  # -size
        sb = parent[rb]
        if sa > sb:  # the set of ra is the smaller one: hang it below rb
            ra, rb = rb, ra
        parent[ra] = sa + sb
        parent[rb] = ra
        least[ra] = la
        self._n_links += 1
        return ra

    # ------------------------------------------------------------------
    # networkx.utils.UnionFind interface
    # ------------------------------------------------------------------

    def __getitem__(self, x: T) -> T:
        """Return the root item of the set of `x`, adding `x` if it is unknown.

        This mirrors :class:`networkx.utils.UnionFind`; use `find` for a lookup
        that never adds anything and `name` for an order-independent name.

        Notes
        -----
        O(alpha(n)) amortised.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf["a"], len(uf)
        ('a', 1)
        """
        i = self._index.get(x)
        if i is None:
            self._new(x)
            return x
        return self._items[self._root(i)]

    def __iter__(self) -> Iterator[T]:
        """Iterate over all items, in insertion order.

        Like networkx, adding items during the iteration raises `RuntimeError`.

        Examples
        --------
        >>> list(UnionFind([3, 1, 2, 1]))
        [3, 1, 2]
        """
        return iter(self._index)

    def __len__(self) -> int:
        """Return the number of items (not of sets, see `n_sets`).

        Examples
        --------
        >>> len(UnionFind("abc"))
        3
        """
        return len(self._items)

    def __contains__(self, x: object) -> bool:
        """Return whether `x` is a known item; never adds it.

        Unhashable objects are never items: for them this is ``False``.

        Examples
        --------
        >>> uf = UnionFind("a")
        >>> "a" in uf, "b" in uf, len(uf)
        (True, False, 1)
        """
        try:
            return x in self._index
        except TypeError:  # unhashable
            return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._items)} items in {self.n_sets} sets>)"

    def union(self, *objects: T) -> None:
        """Merge the sets containing all `objects`, adding unknown ones.

        Parameters
        ----------
        *objects : hashable
            Any number of items.  With none this does nothing; with one it
            only adds that item if it is unknown.

        Notes
        -----
        O(alpha(n)) amortised per argument.  The two-argument call is the hot path
        and is fully inlined.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf.union("b", "a")
        >>> uf.union("c", "d", "e")
        >>> uf.union("x")
        >>> uf.union()
        >>> sorted(sorted(s) for s in uf.to_sets())
        [['a', 'b'], ['c', 'd', 'e'], ['x']]
        """
        if self._stale:
            self._refresh_least()
        try:
            a, b = objects
        except ValueError:
            self._union_many(objects)
            return
        # Everything below is _new/_root/_link inlined, for speed.
        items = self._items
        parent = self._parent
        n = len(items)
        # One dict operation both finds the slot of a known item and interns a
        # new one (a new item gets slot n).
        ra = self._index.setdefault(a, n)
        if ra == n:
            items.append(a)
            parent.append(-1)
            self._least.append(n)
            n += 1
        else:
            p = parent[ra]
            while p >= 0:  # path halving
                g = parent[p]
                if g < 0:
                    ra = p
                    break
                parent[ra] = g
                ra = g
                p = parent[g]
        rb = self._index.setdefault(b, n)
        if rb == n:
            items.append(b)
            parent.append(-1)
            self._least.append(n)
        else:
            p = parent[rb]
            while p >= 0:
                g = parent[p]
                if g < 0:
                    rb = p
                    break
                parent[rb] = g
                rb = g
                p = parent[g]
        if ra == rb:
            return
        least = self._least
        la = least[ra]
        lb = least[rb]
        if la >= 0 and lb >= 0:
            ordered: list[Any] = items
            try:
                if ordered[lb] < ordered[la]:
                    la = lb
            except TypeError:
                la = _UNORDERED
        else:
            la = _UNORDERED
        sa = parent[ra]  # -size
        sb = parent[rb]
        if sa <= sb:  # union by size: ra is the root of the larger set
            parent[ra] = sa + sb
            parent[rb] = ra
            least[ra] = la
        else:
            parent[rb] = sa + sb
            parent[ra] = rb
            least[rb] = la
        self._n_links += 1

    def union_pairs(self, pairs: Iterable[tuple[T, T]]) -> None:
        """Merge the two sets of every pair, adding unknown items: many `union` calls in one.

        The same result as ``for a, b in pairs: uf.union(a, b)`` (the same partition,
        `name`, `size`, item order), faster: the items are interned in bulk (dictionary
        operations at C speed rather than one call each) and the unions then run over
        plain integers.

        Parameters
        ----------
        pairs : iterable of (hashable, hashable)
            The pairs; each is a 2-tuple (or any 2-item sequence).

        Notes
        -----
        O(m alpha(n)) for m pairs, with O(m) extra memory while it runs.

        Examples
        --------
        >>> uf = UnionFind(["q"])
        >>> uf.union_pairs([("b", "c"), ("d", "e"), ("c", "a")])
        >>> sorted(sorted(s) for s in uf.to_sets()), uf.name("b"), list(uf)
        ([['a', 'b', 'c'], ['d', 'e'], ['q']], 'a', ['q', 'b', 'c', 'd', 'e', 'a'])
        """
        index, items = self._index, self._items
        if type(pairs) is not list and type(pairs) is not tuple:  # (the C half takes these)
            pairs = list(pairs)
        if len(index) > 2 * len(pairs):  # a few pairs into many items: one at a time
            union = self.union
            for a, b in pairs:
                union(a, b)
            return
        start = len(items)
        speedups = _speedups()
        try:
            if speedups is not None:  # interning and merging in C, the same algorithm
                compiled = speedups.intern_pairs(index, pairs)
            else:
                slots = self._intern(pairs)
        except BaseException:  # an unhashable item or a bad pair: forget the new items
            for x in list(islice(index, start, None)):
                del index[x]
            raise
        fresh = len(index) - start
        if fresh:
            items.extend(islice(index, start, None))
            self._parent.extend(array("q", [-1]) * fresh)
            self._least.extend(range(start, start + fresh))
        if speedups is not None:
            self._n_links += speedups.merge_slots(self._parent, compiled)
        else:
            components = _accelerator() if len(slots) >= _ACCELERATE_FROM else None
            if components is not None:
                self._merge_components(slots, components)
            else:
                self._merge_slots(slots)
        # The smallest member of each set is found again when it is next needed (`name`,
        # `union`): one pass over the items rather than a comparison per union.
        self._stale = True

    def _intern(self, pairs: list[tuple[T, T]] | tuple[tuple[T, T], ...]) -> list[int]:
        """Return the slot of every item of every pair, in order, adding new items to the index.

        Pure Python; on an error the caller removes the new items again.
        """
        # One flat list first, each pair read once (a one-shot iterator as a pair is then
        # refused below, not silently half-read), then every pair checked for exactly two
        # items: `is_` takes two arguments, at C speed (a 3-item pair beside a 1-item one).
        flat = list(chain.from_iterable(pairs))
        try:
            if len(flat) != 2 * len(pairs):
                raise ValueError("every pair must have exactly two items")
            deque(starmap(is_, pairs), maxlen=0)
        except TypeError:
            if set(map(len, pairs)) != {2}:  # (raises TypeError itself for a non-sequence)
                raise ValueError("every pair must have exactly two items") from None
            raise
        # Interning in one pass at C speed, in place: the index is a dict whose __missing__
        # hands out the next slot, looked up by map(); only a new item costs a Python-level
        # call, and nothing is copied.
        index = self._index
        assert isinstance(index, _Interner)
        return list(map(index.__getitem__, flat))

    def _merge_slots(self, slots: list[int]) -> None:
        """Union the slot pairs ``slots[0::2], slots[1::2]`` (pure Python; ``least`` unused)."""
        # the forest as a list while it is worked on (a list hands back its int objects; an
        # array makes a new one on every read)
        parent = self._parent.tolist()
        links = 0
        pairs_of = iter(slots)
        for a, b in zip(pairs_of, pairs_of, strict=False):
            # path halving; each walk ends with p (q) = parent[root] = -size, read once
            p = parent[a]
            while p >= 0:
                g = parent[p]
                if g < 0:
                    a = p
                    p = g
                    break
                parent[a] = g
                a = g
                p = parent[g]
            q = parent[b]
            while q >= 0:
                g = parent[q]
                if g < 0:
                    b = q
                    q = g
                    break
                parent[b] = g
                b = g
                q = parent[g]
            if a == b:
                continue
            if p <= q:  # union by size: a is the root of the larger set
                parent[a] = p + q
                parent[b] = a
            else:
                parent[b] = p + q
                parent[a] = b
            links += 1
        self._parent = array("q", parent)
        self._n_links += links

    def _merge_components(
        self, slots: list[int], components: Callable[[Any, Any, int], tuple[int, Any]]
    ) -> None:
        """Union the slot pairs with SciPy's connected components (the optional accelerator).

        The edges are the pairs and the current forest's parent links; every set becomes a
        star below one root that carries the summed size (weights included).
        """
        import numpy as np

        n = len(self._items)
        parent = np.frombuffer(self._parent, dtype=np.int64).copy()
        ends = np.frombuffer(array("q", slots), dtype=np.int64)
        children = np.flatnonzero(parent >= 0)
        rows = np.concatenate((ends[0::2], children))
        cols = np.concatenate((ends[1::2], parent[children]))
        n_sets, labels = components(rows, cols, n)
        sizes = np.where(parent < 0, -parent, 0)
        total = np.bincount(labels, weights=sizes, minlength=n_sets).astype(np.int64)
        _, first = np.unique(labels, return_index=True)  # one root per set: its first slot
        merged = first[labels]
        merged[first] = -total
        self._parent = array("q", merged.tobytes())
        self._n_links = n - n_sets

    def _refresh_least(self) -> None:
        """Find the smallest member of every set again (after `union_pairs`)."""
        self._stale = False
        roots = self._roots()
        items: list[Any] = self._items
        least = self._least
        best: dict[int, int] = {}
        unordered: set[int] = set()
        for i, r in enumerate(roots):
            b = best.get(r)
            if b is None:
                best[r] = i
            elif r not in unordered:
                try:
                    if items[i] < items[b]:
                        best[r] = i
                except TypeError:
                    unordered.add(r)
        for r, i in best.items():
            least[r] = _UNORDERED if r in unordered else i

    def _union_many(self, objects: tuple[T, ...]) -> None:
        """Implement `union` for any number of arguments other than two."""
        if self._stale:
            self._refresh_least()
        index = self._index
        root = -1
        for x in objects:
            i = index.get(x)
            r = self._new(x) if i is None else self._root(i)
            if root < 0:
                root = r
            elif r != root:
                root = self._link(root, r)

    def to_sets(self) -> Iterator[set[T]]:
        """Iterate over the disjoint sets, as new `set` objects.

        The partition is the same as networkx's; sets come in the order of
        their first item in insertion order.

        Notes
        -----
        O(n alpha(n)): one pass over all items, grouping them by root.

        Examples
        --------
        >>> uf = UnionFind("xyz")
        >>> uf.union("z", "x")
        >>> sorted(sorted(s) for s in uf.to_sets())
        [['x', 'z'], ['y']]
        """
        if len(self._items) >= _ACCELERATE_FROM and _accelerator() is not None:
            return self._sets_numpy()
        return self._sets_pure()

    def _sets_pure(self) -> Iterator[set[T]]:
        """`to_sets` in pure Python: one pass finding each root and grouping by it.

        Paths are compressed on the way (every slot then points at its root).
        """
        parent = self._parent.tolist()
        groups: dict[int, set[T]] = {}
        get = groups.get
        for i, x in enumerate(self._items):
            r = parent[i]
            if r < 0:
                r = i
            else:
                q = parent[r]
                while q >= 0:
                    r = q
                    q = parent[r]
                parent[i] = r
            group = get(r)
            if group is None:
                groups[r] = {x}
            else:
                group.add(x)
        self._parent = array("q", parent)
        del parent
        yield from groups.values()

    def _sets_numpy(self) -> Iterator[set[T]]:
        """`to_sets` with NumPy (the accelerator): roots by pointer jumping, groups by sort."""
        import numpy as np

        if not self._items:
            return
        parent = np.frombuffer(self._parent, dtype=np.int64)
        slots = np.arange(len(parent), dtype=np.int64)
        roots = np.where(parent < 0, slots, parent)
        while True:  # pointer jumping: depth halves each round (union by size: O(log n))
            up = roots[roots]
            if np.array_equal(up, roots):
                break
            roots = up
        self._parent = array("q", np.where(parent < 0, parent, roots).tobytes())  # compressed
        order = np.argsort(roots, kind="stable")
        cuts = np.flatnonzero(np.diff(roots[order])) + 1
        starts = np.concatenate(([0], cuts))
        # sets in the order of their first item (the first of each stable run is the earliest)
        ranked = np.argsort(order[starts], kind="stable")
        ends = np.concatenate((cuts, [len(order)]))
        names = np.empty(len(order), dtype=object)
        names[:] = self._items
        names = names[order]
        for k in ranked.tolist():
            yield set(names[starts[k] : ends[k]].tolist())

    # ------------------------------------------------------------------
    # engine extensions (none of these adds items)
    # ------------------------------------------------------------------

    @property
    def n_sets(self) -> int:
        """Number of disjoint sets, maintained incrementally (O(1)).

        Examples
        --------
        >>> uf = UnionFind("abc")
        >>> uf.union("a", "b")
        >>> uf.n_sets
        2
        """
        return len(self._items) - self._n_links

    def add(self, x: T, weight: int = 1) -> None:
        """Add `x` as a singleton set if it is unknown; otherwise do nothing.

        Parameters
        ----------
        x : hashable
            The item to add.
        weight : int
            How many members `x` counts for in `size` and in union by size (at least 1):
            an item can stand for a group merged earlier, such as a stored person.

        Notes
        -----
        O(1) amortised.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf.add("a")
        >>> uf.add("a")
        >>> len(uf), uf.n_sets
        (1, 1)
        >>> uf.add("b", weight=5)
        >>> uf.union("a", "b")
        >>> uf.find("a"), uf.size("a")
        ('b', 6)
        """
        if weight < 1:
            raise ValueError(f"weight must be at least 1, not {weight}")
        if x not in self._index:
            self._parent[self._new(x)] = -weight

    def find(self, x: T) -> T:
        """Return the root item of the set containing `x`.

        Unlike ``uf[x]`` this never adds `x`.  The root is an arbitrary member
        that depends on the order of unions; use `name` for a stable name.

        Parameters
        ----------
        x : hashable
            A known item.

        Returns
        -------
        hashable
            The root item of the set of `x`.

        Raises
        ------
        KeyError
            If `x` is unknown.

        Notes
        -----
        O(alpha(n)) amortised.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf.union("a", "b")
        >>> uf.find("a") == uf.find("b")
        True
        >>> uf.find("z")
        Traceback (most recent call last):
            ...
        KeyError: 'z'
        """
        return self._items[self._root(self._slot(x))]

    def size(self, x: T) -> int:
        """Return the number of items in the set containing `x`.

        Parameters
        ----------
        x : hashable
            A known item.

        Returns
        -------
        int
            The size of the set of `x` (1 for a singleton).

        Raises
        ------
        KeyError
            If `x` is unknown.

        Notes
        -----
        O(alpha(n)) amortised.

        Examples
        --------
        >>> uf = UnionFind("c")
        >>> uf.union("a", "b")
        >>> uf.size("a"), uf.size("c")
        (2, 1)
        """
        return -self._parent[self._root(self._slot(x))]

    def members(self, x: T) -> set[T]:
        """Return the set of items in the same set as `x` (including `x`).

        Parameters
        ----------
        x : hashable
            A known item.

        Returns
        -------
        set
            A new set; modifying it does not affect the structure.

        Raises
        ------
        KeyError
            If `x` is unknown.

        Notes
        -----
        O(n alpha(n)): this scans **all** n items, whatever the size of the set of
        `x`.  Use `to_sets` or `components` to list many sets at once.

        Examples
        --------
        >>> uf = UnionFind("c")
        >>> uf.union("a", "b")
        >>> sorted(uf.members("b"))
        ['a', 'b']
        """
        root = self._root(self._slot(x))
        if self._parent[root] == -1:  # singleton
            return {self._items[root]}
        find = self._root
        items = self._items
        return {items[i] for i in range(len(items)) if find(i) == root}

    def connected(self, a: T, b: T) -> bool:
        """Return whether `a` and `b` are in the same set.

        Parameters
        ----------
        a, b : hashable
            Items, known or not.

        Returns
        -------
        bool
            ``False`` if either item is unknown or unhashable (nothing is
            added).

        Notes
        -----
        O(alpha(n)) amortised.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf.union("a", "b")
        >>> uf.connected("a", "b"), uf.connected("a", "z"), "z" in uf
        (True, False, False)
        """
        index = self._index
        try:
            i = index.get(a)
            j = index.get(b)
        except TypeError:  # unhashable
            return False
        if i is None or j is None:
            return False
        return i == j or self._root(i) == self._root(j)

    def name(self, x: T) -> T:
        """Return the deterministic name of the set of `x`: its smallest member.

        The name depends only on the membership of the set, never on the order
        in which the unions were made.

        Parameters
        ----------
        x : hashable
            A known item.

        Returns
        -------
        hashable
            ``min(members(x))`` by ``<`` (code point order for strings).

        Raises
        ------
        KeyError
            If `x` is unknown.
        TypeError
            If the members of the set cannot be ordered with ``<``.

        Notes
        -----
        O(alpha(n)) amortised: the minimum of each set is kept at its root and
        updated by every union.  Items must be totally ordered by ``<``; with a
        mere partial order (sets of sets, NaN) the result is unspecified.

        Examples
        --------
        >>> uf = UnionFind()
        >>> uf.union("m", "z")
        >>> uf.union("z", "b")
        >>> uf.name("m"), uf.find("m")
        ('b', 'm')
        """
        if self._stale:
            self._refresh_least()
        least = self._least[self._root(self._slot(x))]
        if least == _UNORDERED:
            raise TypeError(f"the members of the set of {x!r} cannot be ordered with '<'")
        return self._items[least]

    def components(self) -> Iterator[frozenset[T]]:
        """Iterate over the disjoint sets, as `frozenset` objects.

        Same partition and order as `to_sets`.

        Notes
        -----
        O(n alpha(n)).

        Examples
        --------
        >>> uf = UnionFind([1, 2, 3])
        >>> uf.union(3, 1)
        >>> sorted(sorted(c) for c in uf.components())
        [[1, 3], [2]]
        """
        for group in self.to_sets():
            yield frozenset(group)
