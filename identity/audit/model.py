"""The audit report model: frozen values, no I/O, one ``as_dict`` that is the JSON document.

Every engine (:mod:`identity.audit.engines`) fills an :class:`Audit`; every renderer
(:mod:`identity.audit.text`, :mod:`identity.audit.html`) reads one. Two engines that read the
same input must produce equal :class:`Audit` values (``==`` on the dataclasses, and so the same
JSON): lists are sorted by a documented key, examples are chosen by a documented rule, and
nothing depends on the order rows were read in.

The JSON document's fields are documented in the README ("The audit JSON"); ``SCHEMA`` is its
version, raised whenever a field changes meaning or disappears (adding a field does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EXAMPLES",
    "KINDS",
    "RETRY_WINDOW",
    "SCHEMA",
    "TOP",
    "Audit",
    "Bucket",
    "Drawing",
    "Junk",
    "KindCount",
    "Largest",
    "Link",
    "Merge",
    "Reason",
    "Retry",
    "Tenant",
    "size_bins",
]

#: Version of the JSON document.
SCHEMA = 1
#: Examples kept per quarantine reason, junk list, retry list.
EXAMPLES = 3
#: Rows kept in the "largest people" and "riskiest merges" lists.
TOP = 10
#: Two copies of an event this close (seconds) under different ``_t`` are a likely retry.
RETRY_WINDOW = 300
#: What the calls held, one row each in :attr:`Audit.kinds`.
Kind = Literal["event", "property", "alias"]
KINDS: tuple[Kind, ...] = ("event", "property", "alias")
#: Calls over time are counted in buckets of this span, chosen from the data's span.
Span = Literal["day", "week", "month"]


def _link(link: Link) -> dict[str, Any]:
    return {"a": link.a, "b": link.b, "t": link.t, "sent": link.sent, "source": link.source}


@dataclass(frozen=True, slots=True)
class KindCount:
    """Accepted records of one kind: how many were received, stored, and exact duplicates.

    An ``/e`` call is one event record; an ``/s`` call is one property record per property it
    sets; an ``/a`` call is one alias record. ``received == stored + duplicates``.
    """

    kind: Kind
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        """Exact duplicates (SPEC §8): received but not stored again."""
        return self.received - self.stored

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "kind": self.kind,
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
        }


@dataclass(frozen=True, slots=True)
class Reason:
    """Quarantined calls of one reason; ``examples`` are the first raw calls by text."""

    reason: str
    calls: int
    examples: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"reason": self.reason, "calls": self.calls, "examples": list(self.examples)}


@dataclass(frozen=True, slots=True)
class Retry:
    """A likely client retry: the same event sent again soon under a different ``_t``.

    Same identity, event name (case-insensitive) and properties, at ``t`` within
    :data:`RETRY_WINDOW` seconds after the copy at ``previous``.
    """

    tenant: str
    identity: str
    event: str
    previous: int
    t: int

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tenant": self.tenant,
            "identity": self.identity,
            "event": self.event,
            "previous": self.previous,
            "t": self.t,
        }


@dataclass(frozen=True, slots=True)
class Largest:
    """One of the largest people."""

    tenant: str
    person: str
    identities: int
    customer_ids: int
    events: int

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tenant": self.tenant,
            "person": self.person,
            "identities": self.identities,
            "customer_ids": self.customer_ids,
            "events": self.events,
        }


@dataclass(frozen=True, slots=True)
class Link:
    """One stored alias link between identities ``a < b``."""

    a: str
    b: str
    t: int
    sent: int
    #: Where it was first sent (None: not recorded).
    source: str | None


@dataclass(frozen=True, slots=True)
class Drawing:
    """A person's graph, small enough to draw: identities and links."""

    #: ``(identity, is a Customer ID)``, sorted.
    nodes: tuple[tuple[str, bool], ...]
    #: ``(a, b)`` with ``a < b``, sorted.
    edges: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "nodes": [{"identity": n, "customer_id": c} for n, c in self.nodes],
            "edges": [list(e) for e in self.edges],
        }


@dataclass(frozen=True, slots=True)
class Merge:
    """A risky merge: a bridge link whose removal splits a person into two sizeable parts.

    ``sizes`` and ``customers`` are the two parts' identities and Customer IDs, the side of
    ``link.a`` first. ``chain`` is the explain chain (SPEC §10) between the two sides'
    representatives ``ends`` (each side's smallest Customer ID, else its smallest identity),
    ``joined_at`` when they became one person. ``drawing`` is the person's graph when it has at
    most ``DRAW_LIMIT`` identities (engines' choice of limit is :data:`DRAW_LIMIT`).
    """

    tenant: str
    person: str
    size: int
    link: Link
    sizes: tuple[int, int]
    customers: tuple[int, int]
    ends: tuple[str, str]
    joined_at: int
    chain: tuple[Link, ...]
    drawing: Drawing | None

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tenant": self.tenant,
            "person": self.person,
            "identities": self.size,
            "link": _link(self.link),
            "sizes": list(self.sizes),
            "customer_ids": list(self.customers),
            "ends": list(self.ends),
            "joined_at": self.joined_at,
            "chain": [_link(x) for x in self.chain],
            "graph": None if self.drawing is None else self.drawing.as_dict(),
        }


#: A person's graph is drawn (and carried in the JSON) up to this many identities.
DRAW_LIMIT = 150


@dataclass(frozen=True, slots=True)
class Junk:
    """A stored identity that the block list matches (its events were accepted, SPEC §8)."""

    tenant: str
    identity: str
    person: str
    events: int

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tenant": self.tenant,
            "identity": self.identity,
            "person": self.person,
            "events": self.events,
        }


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant's totals."""

    tenant: str
    identities: int
    people: int
    events: int
    quarantined: int

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tenant": self.tenant,
            "identities": self.identities,
            "people": self.people,
            "events": self.events,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class Bucket:
    """Calls in one time bucket starting at ``start`` (UTC s).

    Accepted records count by their ``_t``, quarantined calls by their receive time.
    """

    start: int
    event: int = 0
    property: int = 0
    alias: int = 0
    quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "start": self.start,
            "event": self.event,
            "property": self.property,
            "alias": self.alias,
            "quarantined": self.quarantined,
        }


def size_bins(sizes: tuple[tuple[int, int], ...]) -> list[tuple[str, int, int]]:
    """Group ``(size, people)`` in powers of two for display: ``(label, people, identities)``.

    Examples
    --------
    >>> size_bins(((1, 5), (2, 3), (3, 1), (4, 1), (9, 2)))
    [('1', 5, 5), ('2', 3, 6), ('3-4', 2, 7), ('9-16', 2, 18)]
    """
    bins: dict[int, list[int]] = {}
    for size, people in sizes:
        low = 1 if size <= 1 else (1 << (size - 1).bit_length() - 1) + 1
        into = bins.setdefault(low, [0, 0])
        into[0] += people
        into[1] += people * size
    out = []
    for low, (people, identities) in sorted(bins.items()):
        high = 1 if low == 1 else 2 * (low - 1)
        out.append((str(low) if low == high else f"{low}-{high}", people, identities))
    return out


@dataclass(frozen=True, slots=True)
class Audit:
    """What a set of tracking calls holds (SPEC §10): the whole report, for one or all tenants.

    Attributes
    ----------
    tenant : str or None
        The tenant audited, or None for all.
    as_of : int or None
        Only calls with ``t <= as_of`` (quarantined: received by then). A stored record counts
        with all its copies (``received``): a link sent again after `as_of` counts twice.
    sources : tuple of (str, int)
        Inputs read and their calls, sorted by name.
    kinds : tuple of KindCount
        Accepted records by kind, in :data:`KINDS` order.
    quarantine : tuple of Reason
        Refused calls by reason, most first (then by reason).
    retries, retry_examples
        Likely client retries (:class:`Retry`): how many, the first by (tenant, identity, t).
    identities, people : int
        Stored identities and people.
    sizes : tuple of (int, int)
        ``(identities, people)``: how many people have each size, by size.
    largest : tuple of Largest
        The :data:`TOP` largest people, by size descending then (tenant, person).
    bridges, hubs : int
        Risky links (bridges with two sizeable parts) and hub identities (``hub_links`` or
        more links).
    riskiest : tuple of Merge
        The :data:`TOP` riskiest merges: most even split first, then by (tenant, person,
        link.a, link.b).
    junk : int
        Stored identities the block list matches; ``junk_examples`` the most active.
    blocked_aliases : int
        Alias calls quarantined as ``blocked_identity``.
    never_customer : int
        Identities that never were the ``_p`` of an accepted ``/e`` or ``/s`` (seen only in
        aliases).
    tenants : tuple of Tenant
        Per tenant, by name.
    span : str
        The bucket of ``timeline``: day, week (from Monday) or month.
    timeline : tuple of Bucket
        Calls over time, by bucket start; empty buckets are left out.
    """

    tenant: str | None
    as_of: int | None
    sources: tuple[tuple[str, int], ...]
    kinds: tuple[KindCount, ...]
    quarantine: tuple[Reason, ...]
    retries: int
    retry_examples: tuple[Retry, ...]
    identities: int
    people: int
    sizes: tuple[tuple[int, int], ...]
    largest: tuple[Largest, ...]
    bridges: int
    hubs: int
    riskiest: tuple[Merge, ...]
    junk: int
    junk_examples: tuple[Junk, ...]
    blocked_aliases: int
    never_customer: int
    tenants: tuple[Tenant, ...]
    span: Span
    timeline: tuple[Bucket, ...] = field(default=())

    @property
    def accepted(self) -> int:
        """Accepted records received, duplicates included."""
        return sum(k.received for k in self.kinds)

    @property
    def quarantined(self) -> int:
        """Quarantined calls received."""
        return sum(r.calls for r in self.quarantine)

    @property
    def duplicates(self) -> int:
        """Exact duplicate records of every kind."""
        return sum(k.duplicates for k in self.kinds)

    @property
    def largest_size(self) -> int:
        """Identities of the largest person (0 when there are none)."""
        return self.sizes[-1][0] if self.sizes else 0

    def summary(self) -> dict[str, int]:
        """Return the headline numbers (the top of every rendering).

        ``calls`` are the calls read from the inputs (0 for a database fed by the beacon or
        the library, which records no inputs); ``records`` the accepted records (an ``/s``
        call is one per property) and quarantined calls.
        """
        return {
            "calls": sum(n for _, n in self.sources),
            "records": self.accepted + self.quarantined,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "identities": self.identities,
            "people": self.people,
            "largest_person": self.largest_size,
            "risky_links": self.bridges,
            "junk_identities": self.junk,
            "tenants": len(self.tenants),
        }

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON document (``identity audit --json``), with its ``schema`` version."""
        return {
            "schema": SCHEMA,
            "tenant": self.tenant,
            "as_of": self.as_of,
            "summary": self.summary(),
            "sources": [{"source": s, "calls": n} for s, n in self.sources],
            "kinds": [k.as_dict() for k in self.kinds],
            "quarantine": [r.as_dict() for r in self.quarantine],
            "retries": {
                "window_s": RETRY_WINDOW,
                "events": self.retries,
                "examples": [r.as_dict() for r in self.retry_examples],
            },
            "people": {
                "identities": self.identities,
                "people": self.people,
                "sizes": [{"identities": s, "people": n} for s, n in self.sizes],
                "largest": [p.as_dict() for p in self.largest],
            },
            "risky": {
                "bridges": self.bridges,
                "hubs": self.hubs,
                "riskiest": [m.as_dict() for m in self.riskiest],
            },
            "junk": {
                "identities": self.junk,
                "examples": [j.as_dict() for j in self.junk_examples],
                "blocked_aliases": self.blocked_aliases,
            },
            "never_customer": self.never_customer,
            "tenants": [t.as_dict() for t in self.tenants],
            "timeline": {"span": self.span, "buckets": [b.as_dict() for b in self.timeline]},
        }
