"""The report of an out-of-core engine, put together the same way whatever runs the queries.

The DuckDB and Spark engines answer the same questions in their own query languages; this
module asks them in one order and builds the :class:`~identity.audit.model.Audit` from the
answers, so that the two cannot drift apart in how a report is assembled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..bridges import Split
from ..model import Audit, Bucket, Junk, KindCount, Largest, Merge, Reason, Retry, Span, Tenant
from .memory import bucket_start, span_of

__all__ = ["Queries", "Scanned", "report", "timeline"]

_DAY = 86_400

Q = TypeVar("Q")

#: Calls by kind, quarantined calls by reason, stored events and quarantined calls by
#: tenant, and calls by day (days since 1970) and kind.
Scanned = tuple[
    tuple[KindCount, ...], dict[str, int], dict[str, int], dict[str, int], dict[int, dict[str, int]]
]


@dataclass(frozen=True)
class Queries(Generic[Q]):
    """An engine's answers to the report's questions, each asked of its query object `Q`."""

    #: Identities by tenant, identities never a Customer ID, people by tenant, sizes.
    counts: Callable[[Q], tuple[dict[str, int], int, dict[str, int], tuple[tuple[int, int], ...]]]
    #: Risky bridges, hubs, and the riskiest splits as (person row, split).
    risks: Callable[[Q], tuple[int, int, list[tuple[int, Split]]]]
    retries: Callable[[Q], tuple[int, tuple[Retry, ...]]]
    junk: Callable[[Q], tuple[int, tuple[Junk, ...]]]
    scan: Callable[[Q], Scanned]
    largest: Callable[[Q], tuple[Largest, ...]]
    #: The riskiest merges, described (the splits of ``risks``, and ``as_of``).
    merges: Callable[[Q, list[tuple[int, Split]], int | None], tuple[Merge, ...]]
    #: Quarantine reasons with their examples (the counts by reason of ``scan``).
    quarantine: Callable[[Q, dict[str, int]], tuple[Reason, ...]]


def timeline(days: dict[int, dict[str, int]]) -> tuple[Span, tuple[Bucket, ...]]:
    """Return the span and buckets of calls over time from calls by day and kind.

    Examples
    --------
    >>> timeline({0: {"event": 2}, 1: {"event": 1, "alias": 4}})
    ('day', (Bucket(start=0, event=2, property=0, alias=0, quarantined=0), \
Bucket(start=86400, event=1, property=0, alias=4, quarantined=0)))
    """
    if not days:
        return "day", ()
    span = span_of(min(days) * _DAY, max(days) * _DAY)
    buckets: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, counts in days.items():
        into = buckets[bucket_start(day, span)]
        for kind, n in counts.items():
            into[kind] += n
    return span, tuple(Bucket(start, **counts) for start, counts in sorted(buckets.items()))


def report(
    queries: Queries[Q],
    q: Q,
    *,
    tenant: str | None,
    as_of: int | None,
    read: Iterable[tuple[str, int]],
    say: Callable[[str], None],
) -> Audit:
    """Ask `queries` of `q` and build the audit; `read` is (input name or "-", calls) each."""
    identities, never, people, sizes = queries.counts(q)
    bridges, hubs, best = queries.risks(q)
    say(f"risky links: {bridges:,} bridges, {hubs:,} hubs")
    retries, retry_examples = queries.retries(q)
    junk, junk_examples = queries.junk(q)
    kinds, reasons, events, quarantined, days = queries.scan(q)
    span, buckets = timeline(days)
    largest = queries.largest(q)
    riskiest = queries.merges(q, best, as_of)
    say("report: done")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for column, counts in enumerate((identities, people, events, quarantined)):
        for name, n in counts.items():
            totals[name][column] = n
    sources: dict[str, int] = defaultdict(int)
    for name, n in read:
        if name != "-":  # stdin read in part is not an input the database would remember
            sources[name] += n
    return Audit(
        tenant=tenant,
        as_of=as_of,
        sources=tuple(sorted(sources.items())),
        kinds=kinds,
        quarantine=queries.quarantine(q, reasons),
        retries=retries,
        retry_examples=retry_examples,
        identities=sum(identities.values()),
        people=sum(people.values()),
        sizes=sizes,
        largest=largest,
        bridges=bridges,
        hubs=hubs,
        riskiest=riskiest,
        junk=junk,
        junk_examples=junk_examples,
        blocked_aliases=reasons.get("blocked_identity", 0),
        never_customer=never,
        tenants=tuple(Tenant(t, *v) for t, v in sorted(totals.items())),
        span=span,
        timeline=buckets,
    )
