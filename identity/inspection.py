"""Inspection: people as graphs of identities and links; the only module that imports networkx.

This is where the questions about merges are answered — why two identities are one person,
which links are risky, what would split — on :mod:`networkx` graphs built from the store.
Nothing here writes to the database.

Examples
--------
>>> from identity import Engine
>>> engine = Engine()
>>> _ = engine.alias("K", "anon-1", "bob@x.org", t=10)
>>> _ = engine.alias("K", "anon-1", "bob@x.org", t=12)
>>> _ = engine.record("K", "bob@x.org", "Paid", t=11)
>>> graph = person_graph(engine, "K", "anon-1")
>>> sorted(graph.nodes(data="customer"))
[('anon-1', False), ('bob@x.org', True)]
>>> graph.edges["anon-1", "bob@x.org"]["t"], graph.edges["anon-1", "bob@x.org"]["sent"]
(10, 2)
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import networkx as nx

from .core import UnionFind
from .engine import Engine
from .errors import ConfigurationError, UnknownIdentityError

__all__ = [
    "GRAPH_FORMATS",
    "Bridge",
    "Changes",
    "Explanation",
    "Link",
    "Merge",
    "Risks",
    "Split",
    "diff",
    "explain",
    "person_graph",
    "risky",
    "tenant_graph",
    "what_if",
    "write_graph",
]


@dataclass(frozen=True, slots=True)
class Link:
    """One alias link of an explanation, walked from `start` to `end`."""

    start: str
    end: str
    #: When the link was first sent.
    t: int
    #: How many times it was sent.
    sent: int
    #: Where it was first sent (``access.log:1234``, ``beacon``, ``library``).
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form (``from``, ``to``, ``t``, ``sent``, ``source``)."""
        return {
            "from": self.start,
            "to": self.end,
            "t": self.t,
            "sent": self.sent,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why two identities are one person, or that they are not.

    Attributes
    ----------
    tenant, a, b : str
        The question.
    same_person : bool
        Whether `a` and `b` are one person (by `as_of`).
    person : str or None
        Their person's id when they are one.
    joined_at : int or None
        When they became one person: the time of the latest link of `chain`.
    chain : tuple of Link
        The links that joined them earliest, walked from `a` to `b` (empty when `a` is `b`).
    a_since, b_since : int or None
        When each identity was first named by an accepted call (None: unknown).
    as_of : int or None
        The time the answer is for (None: now).
    """

    tenant: str
    a: str
    b: str
    same_person: bool
    person: str | None
    joined_at: int | None
    chain: tuple[Link, ...]
    a_since: int | None
    b_since: int | None
    as_of: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of ``identity explain --json``."""
        return {
            "tenant": self.tenant,
            "a": self.a,
            "b": self.b,
            "same_person": self.same_person,
            "person": self.person,
            "joined_at": self.joined_at,
            "chain": [link.as_dict() for link in self.chain],
            "a_since": self.a_since,
            "b_since": self.b_since,
            "as_of": self.as_of,
        }

    def sentence(self) -> str:
        """Say the answer in one sentence.

        Examples
        --------
        >>> Explanation("K", "x", "y", False, None, None, (), None, 5).sentence()
        "'x' is not known in tenant 'K'; 'y' is known since 5."
        """
        when = "" if self.as_of is None else f" as of {self.as_of}"
        if self.same_person:
            if not self.chain:
                return f"{self.a!r} is {self.b!r}: person {self.person!r}{when}."
            links = f"{len(self.chain)} link{'s' * (len(self.chain) != 1)}"
            return (
                f"{self.a!r} and {self.b!r} are one person ({self.person!r}) since "
                f"{self.joined_at}{when}, joined by {links}:"
            )
        parts = []
        for name, since in ((self.a, self.a_since), (self.b, self.b_since)):
            known = "is not known" if since is None else f"is known since {since}"
            parts.append(f"{name!r} {known}")
        if self.a_since is not None and self.b_since is not None:
            return f"{self.a!r} and {self.b!r} are not the same person{when}."
        return f"{parts[0]} in tenant {self.tenant!r}; {parts[1]}{when}."


def person_graph(engine: Engine, tenant: str, identity: str, as_of: int | None = None) -> nx.Graph:
    """Return the graph of the person `identity` belongs to.

    Parameters
    ----------
    engine : Engine
        The database.
    tenant, identity : str
        Which person.
    as_of : int, optional
        The person as of that time: only identities, links, events and property records with
        ``t <= as_of``.

    Returns
    -------
    networkx.Graph
        Nodes are identities, with ``customer`` (a Customer ID, by `as_of`), ``first_seen``,
        ``events`` and ``properties`` (how many events and property records it holds); edges
        are alias links, with ``t`` (when first sent), ``sent`` (how many times; all of them,
        also with `as_of`) and ``source`` (where it was first sent, e.g. ``access.log:1234``).
        The graph's ``person`` attribute is the person's id and ``tenant`` its tenant.

    Raises
    ------
    UnknownIdentityError
        No accepted call named `identity` (by `as_of`).

    Notes
    -----
    Three indexed queries per 500 identities; memory O(identities + links) of the person.
    """
    members = engine.member_rows(tenant, identity, as_of=as_of)
    ids = sorted(m[0] for m in members)
    names = {m[0]: m[1] for m in members}
    activity = engine.store.activity(ids, as_of)
    graph = nx.Graph(tenant=tenant, person=min(names.values()))
    for row_id, name, first_seen, since in sorted(members, key=lambda m: m[1]):
        events, properties = activity.get(row_id, (0, 0))
        graph.add_node(
            name,
            customer=since is not None and (as_of is None or since <= as_of),
            first_seen=first_seen,
            events=events,
            properties=properties,
        )
    links = engine.store.links_of(ids, as_of)
    for link in sorted(links, key=lambda k: (names[k.a], names.get(k.b, ""))):
        if link.b in names:
            graph.add_edge(
                names[link.a], names[link.b], t=link.t, sent=link.sent, source=link.source
            )
    return graph


def _known(engine: Engine, tenant: str, identity: str, as_of: int | None) -> nx.Graph | None:
    try:
        return person_graph(engine, tenant, identity, as_of)
    except UnknownIdentityError:
        return None


def explain(engine: Engine, tenant: str, a: str, b: str, as_of: int | None = None) -> Explanation:
    """Explain why `a` and `b` are one person: the chain of links that joined them earliest.

    The chain chosen is the one whose latest link is as early as possible (the time they
    became one person); among those, the one with the fewest links; among those, the first
    in code point order of the identities walked. Identities of different people, or unknown
    ones, get an answer that says so, with since when each is known.

    Parameters
    ----------
    engine : Engine
        The database.
    tenant, a, b : str
        The question.
    as_of : int, optional
        Answer as of that time (links and identities with ``t <= as_of``).

    Returns
    -------
    Explanation

    Notes
    -----
    O(L log L) for the L links of the person: links in time order into a union-find until
    `a` and `b` meet (the earliest joining time), then a breadth-first search over the links
    no later than that.

    Examples
    --------
    >>> from identity import Engine
    >>> engine = Engine()
    >>> _ = engine.alias("K", "a", "c", t=1)
    >>> _ = engine.alias("K", "c", "b", t=9)   # the short way, but late
    >>> _ = engine.alias("K", "a", "x", t=2)
    >>> _ = engine.alias("K", "x", "b", t=3)   # the long way, earlier
    >>> answer = explain(engine, "K", "a", "b")
    >>> answer.joined_at, [(link.start, link.end, link.t) for link in answer.chain]
    (3, [('a', 'x', 2), ('x', 'b', 3)])
    """
    graph = _known(engine, tenant, a, as_of)
    a_since = None if graph is None else int(graph.nodes[a]["first_seen"])
    if graph is None or b not in graph:
        other = _known(engine, tenant, b, as_of)
        b_seen = None if other is None else int(other.nodes[b]["first_seen"])
        return Explanation(tenant, a, b, False, None, None, (), a_since, b_seen, as_of)
    b_since = int(graph.nodes[b]["first_seen"])
    person = str(graph.graph["person"])
    if a == b:
        return Explanation(tenant, a, b, True, person, a_since, (), a_since, b_since, as_of)
    edges = sorted(graph.edges(data="t"), key=lambda e: (e[2], min(e[0], e[1]), max(e[0], e[1])))
    joined = UnionFind([a, b])
    joined_at = 0
    for x, y, t in edges:
        joined.union(x, y)
        if joined.connected(a, b):
            joined_at = int(t)
            break
    early = {n: sorted(v for v in graph[n] if graph[n][v]["t"] <= joined_at) for n in graph}
    previous: dict[str, str] = {a: a}
    queue = deque([a])
    while queue and b not in previous:
        node = queue.popleft()
        for nxt in early[node]:
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    path = [b]
    while path[-1] != a:
        path.append(previous[path[-1]])
    path.reverse()
    chain = tuple(
        Link(x, y, int(graph[x][y]["t"]), int(graph[x][y]["sent"]), graph[x][y]["source"])
        for x, y in pairwise(path)
    )
    return Explanation(tenant, a, b, True, person, joined_at, chain, a_since, b_since, as_of)


# -- the whole tenant: risky links and what-if ---------------------------------------------------


def tenant_graph(engine: Engine, tenant: str, as_of: int | None = None) -> nx.Graph:
    """Return every identity of `tenant` and every link between them, as one graph.

    Nodes and edges carry the attributes of :func:`person_graph` but for the activity
    counts (``customer``, ``first_seen``; ``t``, ``sent``, ``source``). Its connected
    components are the tenant's people.

    Notes
    -----
    Two streamed queries; memory O(identities + links) of the tenant.
    """
    limit = _BOUND if as_of is None else as_of
    names: dict[int, str] = {}
    graph = nx.Graph(tenant=tenant)
    for row_id, name, first_seen, since in engine.store.tenant_identities(tenant, limit):
        names[row_id] = name
        customer = since is not None and since <= limit
        graph.add_node(name, customer=customer, first_seen=first_seen)
    for link in engine.store.tenant_link_rows(tenant, as_of):
        if link.a in names and link.b in names:
            graph.add_edge(
                names[link.a], names[link.b], t=link.t, sent=link.sent, source=link.source
            )
    return graph


_BOUND = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Bridge:
    """A link whose removal splits a person into two sizeable parts."""

    person: str
    link: Link
    #: Identities on the side of ``link.start`` and on the side of ``link.end``.
    sizes: tuple[int, int]
    #: Customer IDs on each side.
    customers: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "person": self.person,
            **self.link.as_dict(),
            "sizes": list(self.sizes),
            "customers": list(self.customers),
        }


@dataclass(frozen=True, slots=True)
class Risks:
    """What looks wrong in a tenant's people, riskiest first in each list.

    Attributes
    ----------
    bridges : tuple of Bridge
        Links that alone hold two sizeable parts together (both parts with a Customer ID,
        or both with at least `min_part` identities); the most even split first.
    hubs : tuple of (identity, person, links)
        Identities with at least `hub_links` links.
    large : tuple of (person, identities)
        People with at least `large_person` identities.
    junk : tuple of (identity, person)
        Identities that match the junk rules (SPEC §8): events and property sets on them are
        accepted, aliases to them were refused.
    blocked_aliases : int
        Aliases quarantined as ``blocked_identity`` in the tenant.
    """

    tenant: str
    bridges: tuple[Bridge, ...]
    hubs: tuple[tuple[str, str, int], ...]
    large: tuple[tuple[str, int], ...]
    junk: tuple[tuple[str, str], ...]
    blocked_aliases: int

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of ``identity risky --json``."""
        return {
            "tenant": self.tenant,
            "bridges": [b.as_dict() for b in self.bridges],
            "hubs": [{"identity": i, "person": p, "links": n} for i, p, n in self.hubs],
            "large": [{"person": p, "identities": n} for p, n in self.large],
            "junk": [{"identity": i, "person": p} for i, p in self.junk],
            "blocked_aliases": self.blocked_aliases,
        }


def _bridge_splits(
    graph: nx.Graph, bridges: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[tuple[int, int], tuple[int, int]]]:
    """Return, per bridge ``(x, y)``, the identities and Customer IDs on the side of x and of y.

    Without its bridges the graph falls into blocks (2-edge-connected parts); the blocks and
    bridges of a person form a tree, and the side of a bridge is a subtree of it: one
    post-order pass over each tree gives every side, O(V + E) in all.
    """
    cut = nx.Graph(graph)
    cut.remove_edges_from(bridges)
    block_of: dict[str, int] = {}
    weight: list[tuple[int, int]] = []
    for number, block in enumerate(nx.connected_components(cut)):
        for node in block:
            block_of[node] = number
        weight.append((len(block), sum(1 for n in block if graph.nodes[n]["customer"])))
    tree: dict[int, list[tuple[int, tuple[str, str]]]] = {}
    for x, y in bridges:
        tree.setdefault(block_of[x], []).append((block_of[y], (x, y)))
        tree.setdefault(block_of[y], []).append((block_of[x], (x, y)))
    below: dict[int, tuple[int, int]] = {}  # identities and Customer IDs of a subtree
    parent_bridge: dict[int, tuple[str, str]] = {}
    totals: dict[int, tuple[int, int]] = {}
    for root in sorted(tree):
        if root in below or root in parent_bridge:
            continue
        order, stack, parent = [], [root], {root: -1}
        while stack:  # iterative depth-first order; children are summed in reverse
            block = stack.pop()
            order.append(block)
            for child, bridge in tree[block]:
                if child not in parent:
                    parent[child] = block
                    parent_bridge[child] = bridge
                    stack.append(child)
        for block in reversed(order):
            size, customers = weight[block]
            for child, _ in tree[block]:
                if parent.get(child) == block:
                    size, customers = size + below[child][0], customers + below[child][1]
            below[block] = (size, customers)
        for block in order:
            totals[block] = below[root]
    splits = {}
    for child, (x, y) in parent_bridge.items():
        size, customers = below[child]
        total_size, total_customers = totals[child]
        other = (total_size - size, total_customers - customers)
        if block_of[x] == child:
            splits[(x, y)] = ((size, other[0]), (customers, other[1]))
        else:
            splits[(x, y)] = ((other[0], size), (other[1], customers))
    return splits


def risky(
    engine: Engine,
    tenant: str,
    *,
    min_part: int = 2,
    hub_links: int = 10,
    large_person: int = 100,
    as_of: int | None = None,
) -> Risks:
    """Find the risky links and identities of `tenant` (SPEC §10).

    Parameters
    ----------
    engine : Engine
        The database (read only).
    tenant : str
        Whose people.
    min_part : int
        A bridge is risky when both parts have a Customer ID or at least this many identities.
    hub_links, large_person : int
        Thresholds for hub identities and large people.
    as_of : int, optional
        As of that time.

    Returns
    -------
    Risks

    Notes
    -----
    O(V + E) over the tenant: bridges by networkx's chain decomposition, the two sides of
    every bridge by one pass over the tree of blocks and bridges.

    Examples
    --------
    >>> from identity import Engine
    >>> engine = Engine()
    >>> for x, y in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")]:
    ...     _ = engine.alias("K", x, y, t=1)
    >>> for x in "ae":
    ...     _ = engine.record("K", x, "Paid", t=2)
    >>> [(b.link.start, b.link.end, b.sizes) for b in risky(engine, "K").bridges]
    [('c', 'd', (3, 2)), ('d', 'e', (4, 1))]
    """
    graph = tenant_graph(engine, tenant, as_of)
    person_of: dict[str, str] = {}
    components: dict[str, set[str]] = {}
    for component in nx.connected_components(graph):
        person = min(component)
        components[person] = component
        for name in component:
            person_of[name] = person
    bridges = []
    found = [(min(x, y), max(x, y)) for x, y in nx.bridges(graph)]
    for (x, y), (sizes, customers) in sorted(_bridge_splits(graph, found).items()):
        person = person_of[x]
        if min(customers) > 0 or min(sizes) >= min_part:
            data = graph.edges[x, y]
            link = Link(x, y, int(data["t"]), int(data["sent"]), data["source"])
            bridges.append(Bridge(person, link, sizes, (customers[0], customers[1])))
    bridges.sort(key=lambda b: (-min(b.sizes), -min(b.customers), b.person, b.link.start))
    hubs = sorted(
        ((n, person_of[n], d) for n, d in graph.degree() if d >= hub_links),
        key=lambda h: (-h[2], h[0]),
    )
    large = sorted(
        ((p, len(c)) for p, c in components.items() if len(c) >= large_person),
        key=lambda item: (-item[1], item[0]),
    )
    junk = sorted((n, person_of[n]) for n in graph if engine.rules.is_blocked(n))
    blocked = sum(q.sent for q in engine.quarantine(tenant, reason="blocked_identity"))
    return Risks(tenant, tuple(bridges), tuple(hubs), tuple(large), tuple(junk), blocked)


@dataclass(frozen=True, slots=True)
class Split:
    """A person that a what-if would split: into which parts (their ids and sizes)."""

    person: str
    size: int
    #: ``(part id, identities)``, largest first; a dropped identity is in no part.
    parts: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "person": self.person,
            "size": self.size,
            "parts": [{"person": p, "identities": n} for p, n in self.parts],
        }


def what_if(
    engine: Engine,
    tenant: str,
    *,
    drop_identities: Sequence[str] = (),
    drop_links: Sequence[tuple[str, str]] = (),
    drop_junk: bool = False,
    as_of: int | None = None,
) -> tuple[Split, ...]:
    """List the people that would split if identities or links were dropped (SPEC §10).

    Computed on copies in memory of the people touched: the database is only read.

    Parameters
    ----------
    engine : Engine
        The database.
    tenant : str
        Whose people.
    drop_identities : sequence of str
        Identities to drop, with their links.
    drop_links : sequence of (str, str)
        Links to drop (either order).
    drop_junk : bool
        Also drop every identity that matches the junk rules.
    as_of : int, optional
        As of that time.

    Returns
    -------
    tuple of Split
        Largest person first.

    Examples
    --------
    >>> from identity import Engine
    >>> engine = Engine()
    >>> for x, y in [("a", "hub"), ("b", "hub"), ("c", "hub")]:
    ...     _ = engine.alias("K", x, y, t=1)
    >>> [s.parts for s in what_if(engine, "K", drop_identities=["hub"])]
    [(('a', 1), ('b', 1), ('c', 1))]
    """
    candidates = {*drop_identities, *(n for pair in drop_links for n in pair)}
    junk: set[str] = set()
    if drop_junk:
        limit = _BOUND if as_of is None else as_of
        names = (row[1] for row in engine.store.tenant_identities(tenant, limit))
        junk = {n for n in names if engine.rules.is_blocked(n)}
    splits = []
    seen: set[str] = set()
    for name in sorted(candidates | junk):
        if name in seen:
            continue
        try:  # only the people touched are loaded, never the whole tenant
            graph = person_graph(engine, tenant, name, as_of)
        except UnknownIdentityError:
            continue
        component = set(graph)
        seen |= component
        dropped = component & ({*drop_identities} | junk)
        sub = graph.subgraph(component - dropped).copy()
        sub.remove_edges_from([(x, y) for x, y in drop_links if sub.has_edge(x, y)])
        parts = [(min(c), len(c)) for c in nx.connected_components(sub)]
        if len(parts) > 1:  # a person that only loses members is not split
            parts.sort(key=lambda p: (-p[1], p[0]))
            splits.append(Split(min(component), len(component), tuple(parts)))
    splits.sort(key=lambda s: (-s.size, s.person))
    return tuple(splits)


def _dot_id(name: str) -> str:
    """Return an identity as a quoted DOT id (pydot would read ``a:1`` as node ``a``, port 1)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: What :func:`write_graph` writes: GraphML (Gephi, Cytoscape, yEd), GEXF (Gephi),
#: node-link JSON (d3, networkx), DOT (Graphviz; needs pydot, the ``dot`` extra).
GRAPH_FORMATS = ("graphml", "gexf", "json", "dot")


def write_graph(graph: nx.Graph, path: str, fmt: str) -> None:
    """Write a person's graph to `path` in `fmt` (one of :data:`GRAPH_FORMATS`), via networkx.

    Raises
    ------
    ConfigurationError
        An unknown format, or ``dot`` without pydot installed.
    """
    if fmt == "graphml":
        nx.write_graphml(graph, path)
    elif fmt == "gexf":
        nx.write_gexf(graph, path)
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as stream:
            data = nx.node_link_data(graph, source="from", target="to", edges="links")
            json.dump(data, stream, ensure_ascii=False)
            stream.write("\n")
    elif fmt == "dot":
        quoted = nx.relabel_nodes(graph, {n: _dot_id(n) for n in graph})  # "a:1" is no port
        try:
            nx.nx_pydot.write_dot(quoted, path)
        except ImportError:
            raise ConfigurationError(
                "--format dot needs pydot: pip install 'identity[dot]'"
            ) from None
    else:
        raise ConfigurationError(f"unknown graph format {fmt!r}; known: {', '.join(GRAPH_FORMATS)}")


# -- what changed ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Merge:
    """Two people that became one: through which link, and who they were just before."""

    t: int
    link: Link
    #: The two people just before, as ``(person id, identities)``, larger first.
    people: tuple[tuple[str, int], tuple[str, int]]
    #: The person they became (its id by then).
    person: str

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "t": self.t,
            **self.link.as_dict(),
            "people": [{"person": p, "identities": n} for p, n in self.people],
            "person": self.person,
        }


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a tenant between two times (``start < t <= end``)."""

    tenant: str
    start: int
    end: int
    #: The merges, in time order.
    merges: tuple[Merge, ...]
    #: People at `end` none of whose identities was known at `start`: ``(id, identities)``.
    appeared: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of ``identity diff --json``."""
        return {
            "tenant": self.tenant,
            "from": self.start,
            "to": self.end,
            "merges": [m.as_dict() for m in self.merges],
            "appeared": [{"person": p, "identities": n} for p, n in self.appeared],
        }


def diff(engine: Engine, tenant: str, start: int, end: int) -> Changes:
    """List the merges between two times, and the people that appeared (no snapshots needed).

    The links in time order are replayed over the partition at `start` (links with
    ``t <= start``); every link with ``start < t <= end`` that joins two people is a merge.
    Links of the same time are replayed in code point order of their identities.

    Examples
    --------
    >>> from identity import Engine
    >>> engine = Engine()
    >>> _ = engine.alias("K", "a", "b", t=1)
    >>> _ = engine.alias("K", "c", "d", t=2)
    >>> _ = engine.alias("K", "b", "c", t=5)
    >>> _ = engine.alias("K", "e", "f", t=6)
    >>> [(m.t, m.people, m.person) for m in diff(engine, "K", 1, 9).merges]
    [(2, (('c', 1), ('d', 1)), 'c'), (5, (('a', 2), ('c', 2)), 'a'), (6, (('e', 1), ('f', 1)), 'e')]
    >>> diff(engine, "K", 1, 9).appeared
    (('e', 2),)
    """
    graph = tenant_graph(engine, tenant, end)
    people = UnionFind(n for n, first in graph.nodes(data="first_seen") if first <= start)
    links = sorted((int(d["t"]), min(x, y), max(x, y), d) for x, y, d in graph.edges(data=True))
    merges = []
    for t, x, y, data in links:
        for node in (x, y):
            people.add(node)
        if t <= start or people.connected(x, y):
            people.union(x, y)
            continue
        before = sorted(
            ((people.name(x), people.size(x)), (people.name(y), people.size(y))),
            key=lambda p: (-p[1], p[0]),
        )
        people.union(x, y)
        link = Link(x, y, t, int(data["sent"]), data["source"])
        merges.append(Merge(t, link, (before[0], before[1]), people.name(x)))
    for node in graph:
        people.add(node)
    appeared = sorted(
        (min(c), len(c))
        for c in people.components()
        if all(graph.nodes[n]["first_seen"] > start for n in c)
    )
    return Changes(tenant, start, end, tuple(merges), tuple(appeared))
