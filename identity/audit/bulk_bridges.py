"""Bridges of a whole link graph at once, in NumPy and SciPy: millions of people, no Python loop.

:func:`identity.audit.bridges.bridges_of` answers for one person in Python, which costs
about 6 µs a link; an audit of 10⁸ links cannot afford it. This module finds every bridge
of the whole graph (every person at once) with array operations:

1. one depth-first search (SciPy's, compiled) from a virtual root joined to one identity of
   each person gives a spanning forest whose subtrees are contiguous runs of the search
   order (a preorder);
2. each identity's depth comes from pointer jumping (log₂ of the depth in vector steps);
3. level by level, deepest first, each subtree's size, Customer IDs and the lowest and
   highest preorder its non-tree links reach are summed into its parent;
4. the tree link above `v` is a bridge when no non-tree link leaves `v`'s subtree: the
   lowest and highest preorder its links reach both lie inside ``[pre(v), pre(v) + size(v))``.

Step 3 is one vector step per level of the deepest tree, so a chain of 50,000 links costs
50,000 small steps (about a second); everything else is linear in the links. The answers
equal :func:`~identity.audit.bridges.bridges_of` link for link (tested against it and
networkx). Memory is about 60 bytes a link, in NumPy arrays of 32-bit integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Bridges", "bulk_bridges"]


@dataclass(frozen=True)
class Bridges:
    """The bridges among `links` (positions into the input arrays) and both parts of each.

    The side of the link's ``a`` comes first, as in :class:`~identity.audit.bridges.Split`.
    """

    #: Positions of the links that are bridges.
    links: NDArray[np.int64]
    size_a: NDArray[np.int64]
    size_b: NDArray[np.int64]
    customers_a: NDArray[np.int64]
    customers_b: NDArray[np.int64]


def bulk_bridges(
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    customer: NDArray[np.bool_],
    person: NDArray[np.int64] | None = None,
) -> Bridges:
    """Find every bridge of the simple graph of links ``a[i] - b[i]``, with its two parts.

    Parameters
    ----------
    a, b : ndarray of int64
        The links' ends: identities numbered ``0 .. len(customer) - 1``; no self-loops and
        no pair twice (either way), as the store keeps links.
    customer : ndarray of bool
        Whether each identity is a Customer ID.
    person : ndarray of int64, optional
        Each link's person (any label that is equal for the links of one connected person
        and different otherwise), when the caller knows it already; otherwise it is found
        (SciPy's connected components).

    Returns
    -------
    Bridges

    Examples
    --------
    A triangle 1-2-3 with a tail 3-4-5, where 1 and 5 are Customer IDs:

    >>> import numpy as np
    >>> a, b = np.array([1, 2, 3, 3, 4]), np.array([2, 3, 1, 4, 5])
    >>> found = bulk_bridges(a, b, np.array([0, 1, 0, 0, 0, 1], dtype=bool))
    >>> [(int(a[i]), int(b[i])) for i in found.links]
    [(3, 4), (4, 5)]
    >>> found.size_a.tolist(), found.size_b.tolist(), found.customers_b.tolist()
    ([3, 4], [2, 1], [1, 1])
    """
    import numpy as np
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
    from scipy.sparse.csgraph import (  # type: ignore[import-untyped]
        connected_components,
        depth_first_order,
    )

    n = len(customer)
    # identities, positions and sizes all fit 32 bits below 2^31 identities: half the memory
    ix: Any = np.int32 if max(n, len(a)) < (1 << 31) - 1 else np.int64
    a = np.asarray(a, dtype=ix)
    b = np.asarray(b, dtype=ix)
    empty = np.zeros(0, dtype=np.int64)
    if len(a) == 0:
        return Bridges(empty, empty, empty, empty, empty)
    if person is None:
        ones = np.ones(2 * len(a), dtype=np.int8)
        graph = csr_matrix((ones, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
        person = connected_components(graph, directed=False)[1][a]
        del graph, ones
    _, first, link_person = np.unique(person, return_index=True, return_inverse=True)
    heads = a[first]  # one identity of each person
    del first, person
    root = n  # the virtual root, joined to every head
    rows = np.concatenate([a, b, np.full(len(heads), root, dtype=ix)])
    cols = np.concatenate([b, a, heads])
    tree_graph = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1))
    del rows, cols
    order, pred = depth_first_order(tree_graph, root, directed=True, return_predecessors=True)
    del tree_graph
    order = order.astype(ix, copy=False)
    pred = pred.astype(ix, copy=False)
    pre = np.full(n + 1, -1, dtype=ix)
    pre[order] = np.arange(len(order), dtype=ix)
    parent = np.where(pred < 0, root, pred).astype(ix, copy=False)  # unreached: the root

    # depth by pointer jumping: after k steps, up[v] is v's 2^k-th ancestor (or the root)
    depth = np.zeros(n + 1, dtype=ix)
    depth[order[1:]] = 1
    up = parent.copy()
    while True:
        moving = up != root
        if not moving.any():
            break
        depth[moving] += depth[up[moving]]
        up[moving] = up[up[moving]]

    tree = (pred[b] == a) | (pred[a] == b)
    far_a, far_b = a[~tree], b[~tree]  # the links outside the spanning forest
    low = pre.copy()
    high = pre.copy()
    np.minimum.at(low, far_a, pre[far_b])
    np.minimum.at(low, far_b, pre[far_a])
    np.maximum.at(high, far_a, pre[far_b])
    np.maximum.at(high, far_b, pre[far_a])
    del far_a, far_b
    size = np.ones(n + 1, dtype=ix)
    customers = np.zeros(n + 1, dtype=ix)
    customers[:n] = customer

    nodes = order[1:]
    levels = depth[nodes]
    by_level = nodes[np.argsort(-levels, kind="stable")]
    counts = np.bincount(levels)[::-1]
    start = 0
    for count in counts:  # deepest first; a level's parents are all one level up
        if not count:
            continue
        level = by_level[start : start + count]
        start += count
        up_ = parent[level]
        np.add.at(size, up_, size[level])
        np.add.at(customers, up_, customers[level])
        np.minimum.at(low, up_, low[level])
        np.maximum.at(high, up_, high[level])
    del by_level, levels, depth, up

    child = np.where(pred[b] == a, b, a)
    inside = tree & (low[child] >= pre[child]) & (high[child] < pre[child] + size[child])
    links = np.flatnonzero(inside).astype(np.int64)
    child = child[links]
    head = heads[link_person[links]]  # a head's subtree is its whole person
    size_in, customers_in = size[child], customers[child]
    size_out = size[head] - size_in
    customers_out = customers[head] - customers_in
    a_inside = a[links] == child

    def side(first: NDArray[Any], second: NDArray[Any]) -> NDArray[np.int64]:
        return np.where(a_inside, first, second).astype(np.int64)

    return Bridges(
        links,
        side(size_in, size_out),
        side(size_out, size_in),
        side(customers_in, customers_out),
        side(customers_out, customers_in),
    )
