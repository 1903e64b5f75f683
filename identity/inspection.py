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

import networkx as nx

from .engine import Engine

__all__ = ["person_graph"]


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
