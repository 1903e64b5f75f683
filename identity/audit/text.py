"""The audit as text for a terminal: the headline numbers, then one table per question."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TypeVar

from ..output import Column, Options, render
from .model import (
    RETRY_WINDOW,
    Audit,
    Bucket,
    Junk,
    KindCount,
    Largest,
    Merge,
    Reason,
    Tenant,
    size_bins,
)

__all__ = ["headline", "lines", "when"]

T = TypeVar("T")
#: Rows of the timeline shown on a terminal (the JSON and HTML have them all).
TIMELINE_ROWS = 40


def when(t: int, span: str = "second") -> str:
    """Return a UTC time as text: ``2023-11-14`` for a day/week/month bucket, else to the second.

    Examples
    --------
    >>> when(1_700_000_000), when(1_699_920_000, "day"), when(1_698_796_800, "month")
    ('2023-11-14 22:13:20', '2023-11-14', '2023-11')
    """
    moment = datetime.fromtimestamp(t, tz=timezone.utc)
    if span == "month":
        return moment.strftime("%Y-%m")
    if span in ("day", "week"):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def headline(audit: Audit) -> str:
    """Return the headline numbers in one line.

    Examples
    --------
    >>> from identity import Engine
    >>> from identity.audit.engines.memory import audit_database
    >>> engine = Engine()
    >>> _ = engine.alias("K", "a", "b", t=1)
    >>> headline(audit_database(engine))  # doctest: +NORMALIZE_WHITESPACE
    '1 record (1 accepted, 0 quarantined, 0 exact duplicates, 0 likely retries); 2 identities
     in 1 person, the largest 2; 0 risky links; 0 junk identities; 1 tenant'
    """
    s = audit.summary()
    calls = f"{_count(s['calls'], 'call')} read; " if s["calls"] else ""
    return calls + (
        f"{_count(s['records'], 'record')} ({s['accepted']:,} accepted, "
        f"{s['quarantined']:,} quarantined, {_count(s['duplicates'], 'exact duplicate')}, "
        f"{_count(s['retries'], 'likely retry', 'likely retries')}); "
        f"{_count(s['identities'], 'identity', 'identities')} in "
        f"{_count(s['people'], 'person', 'people')}, the largest {s['largest_person']:,}; "
        f"{_count(s['risky_links'], 'risky link')}; "
        f"{_count(s['junk_identities'], 'junk identity', 'junk identities')}; "
        f"{_count(s['tenants'], 'tenant')}"
    )


def _table(title: str, rows: Sequence[T], columns: list[Column[T]]) -> Iterator[str]:
    yield ""
    yield title
    if not rows:
        yield "  (none)"
        return
    yield from render(rows, columns, lambda row: {}, Options())


def _kinds() -> list[Column[KindCount]]:
    return [
        Column("kind", lambda k: k.kind),
        Column("received", lambda k: k.received),
        Column("stored", lambda k: k.stored),
        Column("exact duplicates", lambda k: k.duplicates),
    ]


def lines(audit: Audit) -> Iterator[str]:
    """Yield the audit as text, one line a string.

    Examples
    --------
    >>> from identity import Engine
    >>> from identity.audit.engines.memory import audit_database
    >>> engine = Engine()
    >>> _ = engine.record("K", "undefined", "Viewed", t=1)
    >>> text = list(lines(audit_database(engine)))
    >>> [line for line in text if line.startswith("undefined")]
    ['undefined   K         undefined         1']
    """
    scope = "all tenants" if audit.tenant is None else f"tenant {audit.tenant}"
    as_of = "" if audit.as_of is None else f", as of {when(audit.as_of)} UTC"
    inputs = f"{len(audit.sources)} inputs, " if audit.sources else ""
    yield f"Audit of {inputs}{scope}{as_of}"
    yield headline(audit)
    yield from _table(
        "Records by kind (an /e call is an event; /e and /s set a property record per property)",
        audit.kinds,
        _kinds(),
    )
    reasons: list[Column[Reason]] = [
        Column("reason", lambda r: r.reason),
        Column("calls", lambda r: r.calls),
        Column("example", lambda r: _short(r.examples[0]) if r.examples else ""),
    ]
    yield from _table("Quarantined calls by reason", audit.quarantine, reasons)
    yield ""
    yield (
        f"Likely client retries (same identity, event and properties within {RETRY_WINDOW} s "
        f"under another _t): {audit.retries:,}"
    )
    for retry in audit.retry_examples:
        yield (
            f"  {retry.tenant} {retry.identity} {retry.event!r} at {when(retry.t)} "
            f"after {when(retry.previous)}"
        )
    sizes: list[Column[tuple[str, int, int]]] = [
        Column("identities", lambda s: s[0]),
        Column("people", lambda s: s[1]),
        Column("their identities", lambda s: s[2]),
    ]
    yield from _table("People by size", size_bins(audit.sizes), sizes)
    largest: list[Column[Largest]] = [
        Column("tenant", lambda p: p.tenant),
        Column("person", lambda p: p.person),
        Column("identities", lambda p: p.identities),
        Column("customer ids", lambda p: p.customer_ids),
        Column("events", lambda p: p.events),
    ]
    yield from _table("Largest people", audit.largest, largest)
    merges: list[Column[Merge]] = [
        Column("tenant", lambda m: m.tenant),
        Column("person", lambda m: m.person),
        Column("link", lambda m: f"{m.link.a} - {m.link.b}"),
        Column("parts", lambda m: f"{m.sizes[0]} + {m.sizes[1]}"),
        Column("customer ids", lambda m: f"{m.customers[0]} + {m.customers[1]}"),
        Column("linked at", lambda m: when(m.link.t)),
        Column("source", lambda m: m.link.source),
    ]
    yield from _table(
        f"Riskiest merges ({audit.bridges:,} risky links, {audit.hubs:,} hub identities)",
        audit.riskiest,
        merges,
    )
    junk: list[Column[Junk]] = [
        Column("identity", lambda j: j.identity),
        Column("tenant", lambda j: j.tenant),
        Column("person", lambda j: j.person),
        Column("events", lambda j: j.events),
    ]
    yield from _table(
        f"Junk identities ({audit.junk:,} stored; {audit.blocked_aliases:,} aliases to junk "
        "quarantined)",
        audit.junk_examples,
        junk,
    )
    yield ""
    yield (
        f"Identities that never became Customer IDs (seen only in aliases): "
        f"{audit.never_customer:,} of {audit.identities:,}"
    )
    tenants: list[Column[Tenant]] = [
        Column("tenant", lambda t: t.tenant),
        Column("identities", lambda t: t.identities),
        Column("people", lambda t: t.people),
        Column("events", lambda t: t.events),
        Column("quarantined", lambda t: t.quarantined),
    ]
    yield from _table("Tenants", audit.tenants, tenants)
    span = audit.span
    buckets: list[Column[Bucket]] = [
        Column(span, lambda b: when(b.start, span)),
        Column("events", lambda b: b.event),
        Column("properties", lambda b: b.property),
        Column("aliases", lambda b: b.alias),
        Column("quarantined", lambda b: b.quarantined),
    ]
    shown = audit.timeline[-TIMELINE_ROWS:]
    more = len(audit.timeline) - len(shown)
    title = f"Calls over time (by {span}, UTC" + (f"; the last {len(shown)}" if more else "")
    yield from _table(title + ")", shown, buckets)


def _short(text: str, width: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[: width - 1] + "…"
