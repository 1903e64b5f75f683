"""The in-memory audit engine: a SQLite database (identity's own) aggregated with SQL.

:func:`audit_database` reads a database that identity wrote; :func:`audit_files` ingests files
into a temporary database through identity's own readers (the same validation, quarantine and
deduplication as ``identity ingest``) and audits that, so the audit of files equals the audit of
the database built from them by construction.

Everything that can be counted is counted in SQL; Python holds one row per identity only where
a graph question needs it (bridges, which are found per person, not with networkx, because a
whole tenant's networkx graph costs ~80 µs an identity). The riskiest merges' explain chains and
drawings come from :mod:`identity.inspection`, for those people only.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ...core import UnionFind
from ..bridges import Split, bridges_of, evenest
from ..model import (
    DRAW_LIMIT,
    EXAMPLES,
    KINDS,
    RETRY_WINDOW,
    TOP,
    Audit,
    Bucket,
    Drawing,
    Junk,
    KindCount,
    Largest,
    Link,
    Merge,
    Reason,
    Retry,
    Span,
    Tenant,
)

if TYPE_CHECKING:
    import networkx as nx

    from ...engine import Engine

__all__ = ["audit_database", "audit_files", "bucket_start", "span_of"]

_DAY = 86_400
#: Hub identities have at least this many linked identities (as ``identity risky``).
HUB_LINKS = 10
#: A bridge is risky when both parts have a Customer ID or at least this many identities.
MIN_PART = 2


def span_of(first: int, last: int) -> Span:
    """Choose the timeline's bucket from the span of times it covers.

    Examples
    --------
    >>> span_of(0, 120 * 86_400), span_of(0, 121 * 86_400), span_of(0, 800 * 86_400)
    ('day', 'week', 'month')
    """
    days = (last - first) / _DAY
    return "day" if days <= 120 else "week" if days <= 730 else "month"


def bucket_start(day: int, span: Span) -> int:
    """Return the start (UTC s) of the `span` bucket holding `day` (days since 1970-01-01).

    Weeks start on Monday; months on the 1st.

    Examples
    --------
    >>> bucket_start(0, "day"), bucket_start(0, "week"), bucket_start(40, "month")
    (0, -259200, 2678400)
    """
    if span == "day":
        return day * _DAY
    if span == "week":
        return (day - (day + 3) % 7) * _DAY  # 1970-01-01 was a Thursday
    moment = datetime.fromtimestamp(day * _DAY, tz=timezone.utc)
    return int(datetime(moment.year, moment.month, 1, tzinfo=timezone.utc).timestamp())


class _Query:
    """The audit's SQL over one connection: a tenant filter, an ``as_of`` bound, temp tables."""

    def __init__(self, conn: sqlite3.Connection, tenant: str | None, as_of: int | None) -> None:
        self.conn = conn
        self.tenant = tenant
        self.as_of = as_of
        self.bound = (1 << 63) - 1 if as_of is None else as_of

    def rows(self, sql: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
        return self.conn.execute(sql, (self.tenant, self.bound, *params)).fetchall()

    def stream(self, sql: str, *params: object) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Yield the rows one at a time (for results as long as the events or links)."""
        cursor = self.conn.execute(sql, (self.tenant, self.bound, *params))
        while batch := cursor.fetchmany(4096):
            yield from batch

    def one(self, sql: str, *params: object) -> tuple:  # type: ignore[type-arg]
        return tuple(self.conn.execute(sql, (self.tenant, self.bound, *params)).fetchone())


#: ``?1`` is the tenant (NULL: all), ``?2`` the as-of bound; ``i`` is the identity's row.
_IN = "(?1 IS NULL OR i.tenant = ?1)"


def _drop(conn: sqlite3.Connection) -> None:
    for name in ("audit_member", "audit_person"):
        kind = conn.execute(
            "SELECT type FROM temp.sqlite_master WHERE name = ?", (name,)
        ).fetchone()
        if kind is not None:
            conn.execute(f"DROP {kind[0].upper()} temp.{name}")


def _members(q: _Query) -> None:
    """Make ``audit_member`` and ``audit_person``: the partition as of the bound.

    ``audit_member(identity, person)`` maps identities to person rows, ``audit_person(id,
    tenant, person, size)`` holds the tenant's people. Without `as_of` they are views of the
    stored partition; with it, temp tables of the partition the links up to then make.
    """
    conn = q.conn
    _drop(conn)
    if q.as_of is None:  # the stored partition, as views: nothing is copied
        quoted = "" if q.tenant is None else q.tenant.replace("'", "''")
        where = "" if q.tenant is None else f" WHERE tenant = '{quoted}'"
        conn.execute(
            "CREATE TEMP VIEW audit_member AS SELECT id AS identity, person FROM main.identities"
        )
        conn.execute(
            "CREATE TEMP VIEW audit_person AS SELECT id, tenant, person, size FROM main.persons"
            + where
        )
        return
    conn.execute("CREATE TEMP TABLE audit_member (identity INTEGER PRIMARY KEY, person INTEGER)")
    conn.execute(
        "CREATE TEMP TABLE audit_person "
        "(id INTEGER PRIMARY KEY, tenant TEXT, person TEXT, size INTEGER)"
    )
    # replay the links up to the bound: the partition a database holding only those calls
    # would store (SPEC §9 as_of)
    found: UnionFind[int] = UnionFind()
    ids = [
        r[0]
        for r in q.rows(
            f"SELECT i.id FROM identities i WHERE {_IN} AND i.first_seen <= ?2 ORDER BY i.id"
        )
    ]
    for x in ids:
        found.add(x)
    for a, b in q.stream(
        f"SELECT l.a, l.b FROM links l JOIN identities i ON i.id = l.a WHERE {_IN} AND l.t <= ?2"
    ):
        found.union(a, b)
    conn.executemany("INSERT INTO audit_member VALUES (?, ?)", ((x, found.find(x)) for x in ids))
    conn.execute(
        "INSERT INTO audit_person SELECT m.person, min(i.tenant), min(i.identity), count(*) "
        "FROM audit_member m JOIN identities i ON i.id = m.identity GROUP BY m.person"
    )
    conn.execute("CREATE INDEX temp.audit_member_person ON audit_member (person)")


_QUARANTINE = "FROM quarantine i WHERE (?1 IS NULL OR i.tenant = ?1) AND i.received <= ?2"


def _retries(q: _Query) -> tuple[int, tuple[Retry, ...]]:
    # only the retries leave SQL: the window runs over every event, Python sees the few
    sql = f"""
        SELECT * FROM (
            SELECT i.tenant, i.identity, e.name, e.td, lag(e.td) OVER (
                PARTITION BY e.identity, e.name_key, e.properties ORDER BY e.td) AS previous
            FROM events e JOIN identities i ON i.id = e.identity WHERE {_IN} AND e.t <= ?2
        ) WHERE td - previous <= ?3
    """
    count = 0
    first: list[Retry] = []
    for tenant, identity, name, td, previous in q.stream(sql, RETRY_WINDOW):
        count += 1
        first.append(Retry(tenant, identity, name, previous, td))
        if len(first) > 4 * EXAMPLES:
            first.sort(key=lambda r: (r.tenant, r.identity, r.t))
            del first[EXAMPLES:]
    first.sort(key=lambda r: (r.tenant, r.identity, r.t))
    return count, tuple(first[:EXAMPLES])


class _Counts:
    """Identities (all, never a Customer ID) and people (by size) per tenant, one scan each."""

    def __init__(self, q: _Query) -> None:
        self.identities: dict[str, int] = {}
        self.never = 0
        for tenant, n, never in q.rows(
            f"SELECT i.tenant, count(*), count(*) FILTER (WHERE i.customer_since IS NULL OR "
            f"i.customer_since > ?2) FROM identities i WHERE {_IN} AND i.first_seen <= ?2 "
            "GROUP BY i.tenant"
        ):
            self.identities[tenant] = int(n)
            self.never += int(never)
        self.people: dict[str, int] = defaultdict(int)
        sizes: dict[int, int] = defaultdict(int)
        for tenant, size, n in q.rows(
            "SELECT tenant, size, count(*) FROM audit_person WHERE ?1 IS ?1 AND ?2 IS ?2 "
            "GROUP BY tenant, size"
        ):
            self.people[tenant] += int(n)
            sizes[int(size)] += int(n)
        self.sizes = tuple(sorted(sizes.items()))


def _largest(q: _Query) -> tuple[Largest, ...]:
    largest = []
    for row_id, tenant, person, size in q.rows(
        "SELECT id, tenant, person, size FROM audit_person WHERE ?1 IS ?1 AND ?2 IS ?2 "
        "ORDER BY size DESC, tenant, person LIMIT ?3",
        TOP,
    ):
        customers, events = q.one(
            "SELECT count(*) FILTER (WHERE i.customer_since <= ?2), "
            "(SELECT count(*) FROM events e JOIN audit_member n ON n.identity = e.identity "
            " WHERE n.person = ?3 AND e.t <= ?2) "
            "FROM audit_member m JOIN identities i ON i.id = m.identity "
            "WHERE m.person = ?3 AND ?1 IS ?1",
            row_id,
        )
        largest.append(Largest(tenant, person, int(size), int(customers), int(events)))
    return tuple(largest)


def _linked(q: _Query) -> Iterator[tuple[int, list[tuple[int, int]], dict[int, bool]]]:
    """Yield each person with at least one link: its row id, links and members' customer flags."""
    links: dict[int, list[tuple[int, int]]] = defaultdict(list)
    customer: dict[int, bool] = {}
    for person, a, b, customer_a, customer_b in q.stream(
        f"SELECT m.person, l.a, l.b, coalesce(i.customer_since <= ?2, 0), "
        f"coalesce(j.customer_since <= ?2, 0) FROM links l JOIN identities i ON i.id = l.a "
        f"JOIN identities j ON j.id = l.b JOIN audit_member m ON m.identity = l.a "
        f"WHERE {_IN} AND l.t <= ?2"
    ):
        links[person].append((a, b))
        customer[a] = bool(customer_a)
        customer[b] = bool(customer_b)
    for person, edges in links.items():
        yield person, edges, customer


def _risks(q: _Query) -> tuple[int, int, list[tuple[int, Split]]]:
    """Count risky bridges and hubs; return the riskiest splits (person row, split)."""
    bridges = 0
    best: list[tuple[int, Split]] = []
    degree: dict[int, int] = defaultdict(int)

    for person, edges, customer in _linked(q):
        for a, b in edges:
            if a != b:
                degree[a] += 1
                degree[b] += 1
        for split in bridges_of(edges, customer):
            if min(split.customers) > 0 or min(split.sizes) >= MIN_PART:
                bridges += 1
                best.append((person, split))
        if len(best) > 8 * TOP:
            best = evenest(best, TOP)
    best = evenest(best, TOP)
    hubs = sum(1 for d in degree.values() if d >= HUB_LINKS)
    return bridges, hubs, best


def ends_of(graph: nx.Graph, a: str, b: str) -> tuple[str, str]:
    """Return each side's representative once link a-b is cut.

    That is its smallest Customer ID, else its smallest identity.
    """
    import networkx as nx

    cut = nx.restricted_view(graph, [], [(a, b)])
    ends = []
    for side in (a, b):
        part = nx.node_connected_component(cut, side)
        known = [n for n in part if graph.nodes[n].get("customer")]
        ends.append(min(known or part))
    return ends[0], ends[1]


def _merges(q: _Query, engine: Engine, best: list[tuple[int, Split]]) -> tuple[Merge, ...]:
    """Return the riskiest merges, with names, link details, explain chains and drawings."""
    if not best:
        return ()
    rows = {x for _, s in best for x in (s.a, s.b)}
    names = dict(
        q.conn.execute(
            f"SELECT id, identity FROM identities WHERE id IN ({','.join(map(str, rows))})"
        ).fetchall()
    )
    persons = {
        row: (tenant, person, size)
        for row, tenant, person, size in q.conn.execute(
            "SELECT id, tenant, person, size FROM audit_person "
            f"WHERE id IN ({','.join(str(p) for p, _ in best)})"
        )
    }
    found = []
    for row, split in best:
        tenant, person, size = persons[row]
        if names[split.a] > names[split.b]:  # the model's link runs from the smaller name
            split = split.flipped()
        found.append((tenant, person, int(size), names[split.a], names[split.b], split))
    found.sort(key=lambda f: (-min(f[5].sizes), -min(f[5].customers), f[0], f[1], f[3], f[4]))
    return tuple(
        merge_of(engine, tenant, person, size, split, (a, b), q.as_of)
        for tenant, person, size, a, b, split in found[:TOP]
    )


def merge_of(
    engine: Engine,
    tenant: str,
    person: str,
    size: int,
    split: Split,
    link: tuple[str, str],
    as_of: int | None,
) -> Merge:
    """Describe one risky merge: its link, explain chain and drawing, from `engine`.

    `split` is the bridge (row ids) whose names are `link`, the smaller first. Every engine
    calls this for the merges it ranks riskiest, on an engine holding at least those people.
    """
    from ...inspection import explain, person_graph

    a, b = link
    graph = person_graph(engine, tenant, person, as_of=as_of)
    data = graph.edges[a, b]
    ends = ends_of(graph, a, b)
    why = explain(engine, tenant, ends[0], ends[1], as_of=as_of)
    drawing = None
    if graph.number_of_nodes() <= DRAW_LIMIT:
        drawing = Drawing(
            tuple(sorted((n, bool(d.get("customer"))) for n, d in graph.nodes(data=True))),
            tuple(sorted((min(x, y), max(x, y)) for x, y in graph.edges)),
        )
    return Merge(
        tenant=tenant,
        person=person,
        size=size,
        link=Link(a, b, int(data["t"]), int(data["sent"]), data["source"]),
        sizes=split.sizes,
        customers=split.customers,
        ends=ends,
        joined_at=int(why.joined_at or 0),
        chain=tuple(Link(x.start, x.end, x.t, x.sent, x.source) for x in why.chain),
        drawing=drawing,
    )


def _junk(q: _Query, is_blocked: Callable[[str], bool]) -> tuple[int, tuple[Junk, ...]]:
    q.conn.create_function("audit_blocked", 1, lambda s: int(is_blocked(s)), deterministic=True)
    junk = q.rows(
        f"SELECT i.id, i.tenant, i.identity, p.person FROM identities i "
        f"JOIN audit_member m ON m.identity = i.id JOIN audit_person p ON p.id = m.person "
        f"WHERE {_IN} AND i.first_seen <= ?2 AND audit_blocked(i.identity)"
    )
    examples = []
    for row, tenant, identity, person in junk:
        events = q.one(
            "SELECT count(*) FROM events WHERE identity = ?3 AND t <= ?2 AND ?1 IS ?1", row
        )[0]
        examples.append(Junk(tenant, identity, person, int(events)))
    examples.sort(key=lambda j: (-j.events, j.tenant, j.identity))
    return len(junk), tuple(examples[:EXAMPLES])


class _Scan:
    """One pass over each table, grouped by tenant and day: kinds, tenants and the timeline."""

    def __init__(self, q: _Query) -> None:
        self.received: dict[str, int] = defaultdict(int)
        self.stored: dict[str, int] = defaultdict(int)
        self.days: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.events: dict[str, int] = defaultdict(int)
        self.quarantined: dict[str, int] = defaultdict(int)
        tables = [("event", "events x", "x.identity", "x.t"),
                  ("property", "properties x", "x.identity", "x.t"),
                  ("alias", "links x", "x.a", "x.t")]  # fmt: skip
        for kind, table, identity, t in tables:
            for tenant, day, stored, received in q.rows(
                f"SELECT i.tenant, {t} / {_DAY}, count(*), sum(x.sent) FROM {table} "
                f"JOIN identities i ON i.id = {identity} WHERE {_IN} AND {t} <= ?2 GROUP BY 1, 2"
            ):
                self.stored[kind] += stored
                self.received[kind] += received
                self.days[int(day)][kind] += received
                if kind == "event":
                    self.events[tenant] += stored
        self.reasons: dict[str, int] = defaultdict(int)
        for tenant, reason, day, calls in q.rows(
            f"SELECT i.tenant, i.reason, i.received / {_DAY}, sum(i.sent) {_QUARANTINE} "
            "GROUP BY 1, 2, 3"
        ):
            self.reasons[reason] += calls
            self.days[int(day)]["quarantined"] += calls
            if tenant is not None:
                self.quarantined[tenant] += calls

    def kinds(self) -> tuple[KindCount, ...]:
        return tuple(KindCount(k, self.received[k], self.stored[k]) for k in KINDS)

    def quarantine(self, q: _Query) -> tuple[Reason, ...]:
        reasons = []
        for reason, calls in self.reasons.items():
            examples = q.rows(
                f"SELECT DISTINCT i.raw {_QUARANTINE} AND i.reason = ?3 ORDER BY i.raw LIMIT ?4",
                reason,
                EXAMPLES,
            )
            reasons.append(Reason(reason, calls, tuple(r[0] for r in examples)))
        reasons.sort(key=lambda r: (-r.calls, r.reason))
        return tuple(reasons)

    def tenants(self, counts: _Counts) -> tuple[Tenant, ...]:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for tenant, n in counts.identities.items():
            totals[tenant][0] = n
        for tenant, n in counts.people.items():
            totals[tenant][1] = n
        for tenant, n in self.events.items():
            totals[tenant][2] = n
        for tenant, n in self.quarantined.items():
            totals[tenant][3] = n
        return tuple(Tenant(t, *v) for t, v in sorted(totals.items()))

    def timeline(self) -> tuple[Span, tuple[Bucket, ...]]:
        if not self.days:
            return "day", ()
        span = span_of(min(self.days) * _DAY, max(self.days) * _DAY)
        buckets: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for day, counts in self.days.items():
            into = buckets[bucket_start(day, span)]
            for kind, n in counts.items():
                into[kind] += n
        return span, tuple(Bucket(start, **counts) for start, counts in sorted(buckets.items()))


def audit_database(engine: Engine, tenant: str | None = None, as_of: int | None = None) -> Audit:
    """Audit what `engine`'s database holds (only read: the report is built in temp tables).

    Parameters
    ----------
    engine : Engine
        The database.
    tenant : str, optional
        Only this tenant (default: all).
    as_of : int, optional
        Only calls with ``t <= as_of`` (quarantined calls: received by then).

    Returns
    -------
    Audit

    Examples
    --------
    >>> from identity import Engine
    >>> engine = Engine()
    >>> _ = engine.alias("K", "anon-1", "ann@x.io", t=100)
    >>> _ = engine.record("K", "ann@x.io", "Signed up", t=100)
    >>> report = audit_database(engine)
    >>> report.people, report.identities, [k.received for k in report.kinds]
    (1, 2, [1, 0, 1])
    """
    if engine.store.deferred:  # a bulk load just ended: its raw queries need the persons
        engine.store.build_deferred_indexes()
    q = _Query(engine.store.conn, tenant, as_of)
    # sorts and groupings over events spill to temp files, not memory: memory follows the
    # identities the audit holds, not the calls (the store keeps temp data in memory)
    temp_store = q.conn.execute("PRAGMA temp_store").fetchone()[0]
    q.conn.execute("PRAGMA temp_store=FILE")
    # one read transaction: every query sees the same snapshot, even while a writer commits
    snapshot = not q.conn.in_transaction
    if snapshot:
        q.conn.execute("BEGIN")
    _members(q)
    try:
        counts = _Counts(q)
        bridges, hubs, best = _risks(q)
        retries, retry_examples = _retries(q)
        junk, junk_examples = _junk(q, engine.rules.is_blocked)
        scan = _Scan(q)
        span, timeline = scan.timeline()
        sources = q.conn.execute("SELECT source, calls FROM inputs ORDER BY source").fetchall()
        return Audit(
            tenant=tenant,
            as_of=as_of,
            sources=tuple((s, int(n)) for s, n in sources),
            kinds=scan.kinds(),
            quarantine=scan.quarantine(q),
            retries=retries,
            retry_examples=retry_examples,
            identities=sum(counts.identities.values()),
            people=sum(counts.people.values()),
            sizes=counts.sizes,
            largest=_largest(q),
            bridges=bridges,
            hubs=hubs,
            riskiest=_merges(q, engine, best),
            junk=junk,
            junk_examples=junk_examples,
            blocked_aliases=scan.reasons.get("blocked_identity", 0),
            never_customer=counts.never,
            tenants=scan.tenants(counts),
            span=span,
            timeline=timeline,
        )
    finally:
        _drop(q.conn)
        if snapshot:
            q.conn.execute("ROLLBACK")
        q.conn.execute(f"PRAGMA temp_store={int(temp_store)}")


@contextmanager
def built(
    paths: Sequence[str],
    *,
    db: str | None = None,
    ingest: Callable[[Engine, Iterable[str]], None],
) -> Iterator[Engine]:
    """Yield an engine over `paths` ingested into `db` (default: a temporary file, removed)."""
    from ...engine import Engine

    with tempfile.TemporaryDirectory(prefix="identity-audit-") as tmp:
        path = db or os.path.join(tmp, "audit.db")
        with Engine(path, create=True, durable=False) as engine:
            ingest(engine, paths)
            yield engine


def audit_files(
    paths: Sequence[str],
    *,
    tenant: str | None = None,
    as_of: int | None = None,
    ingest: Callable[[Engine, Iterable[str]], None],
    db: str | None = None,
) -> Audit:
    """Audit files: ingest them into `db` (default: a temporary database), then audit it.

    `ingest` reads the files into the engine (the CLI passes its own loop, with progress).
    """
    with built(paths, db=db, ingest=ingest) as engine:
        return audit_database(engine, tenant, as_of)
