"""Bridges of one person's link graph, with the sizes of the two parts each would leave.

A person's graph is small but there are millions of people: this is an iterative Tarjan
low-link pass over integer ids (no networkx graph per person), O(V + E). It is checked against
networkx's ``bridges`` in the tests. Every engine can use it on the people it pulls back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Split", "bridges_of", "evenest"]


@dataclass(frozen=True, slots=True)
class Split:
    """A bridge ``a - b`` and the parts its removal leaves: the side of ``a`` first."""

    a: int
    b: int
    #: Identities of each part.
    sizes: tuple[int, int]
    #: Customer IDs of each part.
    customers: tuple[int, int]

    def flipped(self) -> Split:
        """Return the same bridge seen from ``b``."""
        return Split(self.b, self.a, self.sizes[::-1], self.customers[::-1])


def bridges_of(edges: Sequence[tuple[int, int]], customer: Mapping[int, bool]) -> Iterator[Split]:
    """Yield every bridge of the graph of `edges` (one connected person), with its parts.

    Parameters
    ----------
    edges : sequence of (int, int)
        The person's links; self-loops are ignored and a pair linked twice (either way)
        is one link, as in a simple graph.
    customer : mapping of int to bool
        Whether an identity is a Customer ID (missing: not).

    Examples
    --------
    A triangle 1-2-3 with a tail 3-4-5, where 1 and 5 are Customer IDs:

    >>> splits = bridges_of([(1, 2), (2, 3), (3, 1), (3, 4), (4, 5)], {1: True, 5: True})
    >>> sorted((s.a, s.b, s.sizes, s.customers) for s in splits)
    [(3, 4, (3, 2), (1, 1)), (4, 5, (4, 1), (1, 1))]
    """
    if len(edges) == 1 and edges[0][0] != edges[0][1]:  # most people: one link, no search
        a, b = edges[0]
        yield Split(a, b, (1, 1), (int(bool(customer.get(a))), int(bool(customer.get(b)))))
        return
    adjacent: dict[int, list[tuple[int, int]]] = {}
    seen: set[tuple[int, int]] = set()
    for index, (a, b) in enumerate(edges):
        pair = (a, b) if a < b else (b, a)
        if a != b and pair not in seen:
            seen.add(pair)
            adjacent.setdefault(a, []).append((b, index))
            adjacent.setdefault(b, []).append((a, index))
    if not adjacent:
        return
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    size: dict[int, int] = {}
    customers: dict[int, int] = {}
    found: list[tuple[int, int]] = []  # (edge index, child endpoint)
    for root in adjacent:
        if root in order:
            continue
        start = len(order)
        order[root] = low[root] = start
        size[root], customers[root] = 1, int(bool(customer.get(root)))
        stack = [(root, -1, iter(adjacent[root]))]
        while stack:
            node, via, neighbours = stack[-1]
            for other, index in neighbours:
                if index == via:
                    continue
                if other in order:
                    if order[other] < low[node]:
                        low[node] = order[other]
                    continue
                order[other] = low[other] = len(order)
                size[other], customers[other] = 1, int(bool(customer.get(other)))
                stack.append((other, index, iter(adjacent[other])))
                break
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    if low[node] < low[parent]:
                        low[parent] = low[node]
                    size[parent] += size[node]
                    customers[parent] += customers[node]
                    if low[node] > order[parent]:
                        found.append((via, node))
        total, total_customers = size[root], customers[root]
        for index, child in found:
            inside, inside_customers = size[child], customers[child]
            outside, outside_customers = total - inside, total_customers - inside_customers
            a, b = edges[index]
            if a == child:
                yield Split(a, b, (inside, outside), (inside_customers, outside_customers))
            else:
                yield Split(a, b, (outside, inside), (outside_customers, inside_customers))
        found.clear()


def _rank(item: tuple[T, Split]) -> tuple[int, int]:
    return (-min(item[1].sizes), -min(item[1].customers))


def evenest(splits: list[tuple[T, Split]], top: int) -> list[tuple[T, Split]]:
    """Keep the `top` most even splits and every one tied with the last of them.

    The ties are kept because names, which the caller may not have yet, break them.

    Examples
    --------
    >>> even, uneven = Split(1, 2, (2, 2), (1, 1)), Split(3, 4, (1, 3), (1, 1))
    >>> [p for p, _ in evenest([("x", uneven), ("y", even), ("z", even)], 1)]
    ['y', 'z']
    """
    if len(splits) <= top:
        return splits
    splits.sort(key=_rank)
    last = _rank(splits[top - 1])
    end = top
    while end < len(splits) and _rank(splits[end]) == last:
        end += 1
    return splits[:end]
