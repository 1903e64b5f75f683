"""The engine: apply tracking calls, resolve people, answer questions about them.

Examples
--------
>>> engine = Engine()
>>> _ = engine.record("K", "anon-7f", "Viewed Pricing", received=100)
>>> _ = engine.alias("K", "anon-7f", "bob@example.com", received=101)
>>> _ = engine.set("K", "bob@example.com", {"Plan": "pro"}, received=102)
>>> person = engine.person("K", "anon-7f")
>>> person.id, person.identities, person.customer_ids
('anon-7f', ('anon-7f', 'bob@example.com'), ('anon-7f', 'bob@example.com'))
>>> engine.properties("K", "anon-7f")
{'Plan': 'pro'}
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, Literal, get_args

from .batch import BatchState, IdentityCache, apply_batch, collector_paused
from .calls import (
    DEFAULT_RULES,
    MAX_TIME,
    MIN_TIME,
    Call,
    Rules,
    from_mapping,
    from_params,
    parse_query,
    rejected,
    validate,
)
from .core import UnionFind
from .errors import ConfigurationError, InconsistentStoreError, StoreError, UnknownIdentityError
from .records import Event, Outcome, Person, PropertyRecord, Quarantined, Summary
from .store import Store

__all__ = ["DEDUPE_MODES", "DEFAULT_BATCH_SIZE", "DedupeMode", "Engine"]

#: ``exact``: a duplicate event has the same properties too (KM's current rule);
#: ``loose``: property values are ignored (KM's older rule).
DedupeMode = Literal["exact", "loose"]
DEDUPE_MODES: tuple[DedupeMode, ...] = get_args(DedupeMode)

CallLike = Call | Mapping[str, Any] | str

_log = logging.getLogger("identity.engine")

#: A first batch of at least this many calls into an empty file database is a bulk load:
#: the store defers its read indexes until the load is over (:meth:`Store.defer_indexes`).
#: Smaller batches (the beacon's, one call at a time) keep every index from the start.
BULK_FROM = 1000
#: Calls per transaction of a bulk ingest (:meth:`Engine.ingest`, ``identity ingest``): each
#: commit writes every page its batch touched, so bigger batches write the randomly touched
#: index pages fewer times (1M calls: 15% less CPU than 10,000, and 40% of the system
#: time), for memory that grows with the batch, not with the calls.
DEFAULT_BATCH_SIZE = 100_000


def _props(values: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not values:
        return []
    return [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()]


def _time(t: int | None) -> list[tuple[str, str]]:
    return [] if t is None else [("_t", str(int(t))), ("_d", "1")]


class Engine:
    """Resolve Kissmetrics-style tracking calls into people, kept in one SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        The database file, or ``":memory:"`` (the default).
    rules : Rules
        Validation rules: tenant allow-list, junk-identity block list, value length.
    dedupe : {"exact", "loose"}
        The duplicate-event rule, fixed when the database is created.
    create : bool
        Create the database when missing (else a missing file is a ``StoreError``).
    durable : bool
        Make every commit survive power loss (``synchronous=FULL``), not only a killed
        process.
    readonly : bool or None
        Open the file read-only (queries work, writes raise ``ReadOnlyDatabaseError``);
        None: read-only only when the file or its folder is not writable.
    busy_timeout : float or None
        Seconds to wait for another writer's lock before ``DatabaseLockedError`` (None:
        ``IDENTITY_BUSY_TIMEOUT`` or 10 s).
    cache_size : int, str or None
        Most bytes of SQLite page cache, such as ``"1GiB"`` (None: ``IDENTITY_CACHE_SIZE``
        or 256 MiB). Big ingests run faster with a cache that holds the indexes.

    Notes
    -----
    Writes go through :meth:`ingest` (one transaction per batch); :meth:`record`,
    :meth:`set`, :meth:`alias` and :meth:`apply` are one-call batches. Queries never create
    state. One process should write to a file at a time; a second writer is detected and
    the engine's identity cache is dropped, so results stay right.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        rules: Rules = DEFAULT_RULES,
        dedupe: DedupeMode = "exact",
        create: bool = True,
        durable: bool = True,
        readonly: bool | None = None,
        busy_timeout: float | None = None,
        cache_size: int | str | None = None,
    ) -> None:
        if dedupe not in DEDUPE_MODES:
            raise ConfigurationError(f"dedupe must be one of {DEDUPE_MODES}, not {dedupe!r}")
        self.rules = rules
        self.store = Store(
            path,
            create=create,
            durable=durable,
            settings={"dedupe": dedupe},
            readonly=readonly,
            busy_timeout=busy_timeout,
            cache_size=cache_size,
        )
        self.path = self.store.path
        self.dedupe = dedupe
        self._cache = IdentityCache()

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------

    def record(
        self,
        tenant: str,
        identity: str,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        t: int | None = None,
        received: int | None = None,
    ) -> Outcome:
        """Record that `identity` did `event` (``/e``), with optional properties.

        `t` is the event time (like ``_t`` with ``_d=1``); by default the receive time,
        which defaults to now.

        Examples
        --------
        >>> engine = Engine()
        >>> engine.record("K", "bob", "Signed Up", {"gender": "male"}, t=1262304000)
        Outcome(status='applied', reason=None)
        >>> engine.record("K", "bob", "signed up", {"gender": "male"}, t=1262304000)
        Outcome(status='duplicate', reason=None)
        >>> engine.record("K", "", "Signed Up").reason
        'missing_person'
        """
        params = [("_k", tenant), ("_p", identity), ("_n", event), *_time(t), *_props(properties)]
        return self.apply(self._call("e", params, received))

    def set(
        self,
        tenant: str,
        identity: str,
        properties: Mapping[str, Any],
        *,
        t: int | None = None,
        received: int | None = None,
    ) -> Outcome:
        """Set properties on `identity` (``/s``).

        Examples
        --------
        >>> engine = Engine()
        >>> engine.set("K", "bob", {"Plan": "free"}, t=1).status
        'applied'
        >>> engine.properties("K", "bob")
        {'Plan': 'free'}
        """
        params = [("_k", tenant), ("_p", identity), *_time(t), *_props(properties)]
        return self.apply(self._call("s", params, received))

    def alias(
        self,
        tenant: str,
        identity: str,
        other: str,
        *,
        t: int | None = None,
        received: int | None = None,
    ) -> Outcome:
        """Join `identity` and `other` into one person (``/a``); symmetric and irreversible.

        Examples
        --------
        >>> engine = Engine()
        >>> engine.alias("K", "User 12345", "bob@bob.com").status
        'applied'
        >>> engine.same_person("K", "bob@bob.com", "User 12345")
        True
        >>> engine.alias("K", "bob@bob.com", "undefined").reason
        'blocked_identity'
        """
        params = [("_k", tenant), ("_p", identity), ("_n", other), *_time(t)]
        return self.apply(self._call("a", params, received))

    def _call(self, kind: str, params: list[tuple[str, str]], received: int | None) -> Call:
        return from_params(kind, params, received=received, source="library", rules=self.rules)

    def parse(self, item: CallLike, *, received: int | None = None, source: str = "") -> Call:
        """Turn a :class:`Call`, a mapping or a URL / query string into a validated Call.

        The engine's rules (allow-list, block list, value length) apply.
        """
        if isinstance(item, Call):
            return validate(item, self.rules)
        if isinstance(item, str):
            return parse_query(item, received=received, source=source, rules=self.rules)
        return from_mapping(item, received=received, source=source, rules=self.rules)

    def apply(self, call: CallLike) -> Outcome:
        """Apply one call in its own transaction and say what happened to it.

        Examples
        --------
        >>> engine = Engine()
        >>> engine.apply("/a?_k=K&_p=a&_n=b")
        Outcome(status='applied', reason=None)
        >>> engine.apply({"_path": "e", "_k": "K", "_p": "a"})
        Outcome(status='quarantined', reason='missing_event_name')
        """
        summary = self.ingest([call], batch_size=1)
        if summary.quarantined:
            return Outcome("quarantined", next(iter(summary.quarantined)))
        duplicate = (
            summary.duplicate_events + summary.duplicate_properties + summary.duplicate_aliases
        )
        changed = summary.new_identities or summary.merges or not duplicate
        return Outcome("applied" if changed else "duplicate")

    def ingest(
        self,
        calls: Iterable[CallLike],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        received: int | None = None,
        source: str = "",
    ) -> Summary:
        """Apply calls in batches, one transaction per batch.

        Parameters
        ----------
        calls : iterable of Call, mapping or str
            Streamed: memory does not grow with their number.
        batch_size : int
            Calls per transaction. Once :meth:`ingest` moves past a batch, that batch is
            committed.
        received : int, optional
            Receive time for calls given as mappings or strings (default: now).
        source : str
            Provenance recorded with quarantined calls and links.

        Returns
        -------
        Summary
            Counts over all batches.

        Examples
        --------
        >>> engine = Engine()
        >>> lines = ["/e?_k=K&_p=a&_n=Paid", "/a?_k=K&_p=a&_n=b", "/s?_k=&_p=a"]
        >>> print(engine.ingest(lines, received=5).line())
        3 calls: 2 accepted, 0 duplicate events, 0 duplicate property sets, 0 duplicate aliases, 1 quarantined (missing_key=1); 2 new identities, 1 new people, 1 merges
        """  # noqa: E501
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {batch_size}")
        total = Summary()
        iterator = iter(calls)
        while True:
            with collector_paused():  # a batch makes no garbage cycles: nothing to scan
                batch = [
                    self.parse(item, received=received, source=source)
                    for item in islice(iterator, batch_size)
                ]
                if not batch:
                    return total
                total.add(self.apply_batch(batch))
                del batch

    def apply_batch(
        self, batch: list[Call], *, after: Callable[[Store], None] | None = None
    ) -> Summary:
        """Apply already-parsed calls as one transaction.

        The calls must be validated with this engine's rules, as :meth:`parse` does.
        `after`, when given, is called with the store inside the transaction once the batch
        is written: what it writes (e.g. how far an input file was read) commits or rolls
        back with the batch.

        One bad call never costs the others: when the batch fails on something other than
        the database itself, it is applied again call by call in one transaction, and a call
        that still fails is quarantined as ``rejected_by_store`` while the rest commits.

        Raises
        ------
        StoreError
            The database could not do its work (locked, read-only, full, damaged): nothing
            of the batch was committed.

        Examples
        --------
        >>> engine = Engine()
        >>> calls = [parse_query(q, received=1) for q in ("/a?_k=K&_p=a&_n=b", "/s?_k=K&_p=c")]
        >>> engine.apply_batch(calls).accepted
        2
        """
        try:
            with collector_paused():
                return self._apply_batch(batch, after)
        except StoreError:
            raise
        except Exception:  # a value that validation let through and the store refused
            return self._apply_one_by_one(batch, after)

    def _apply_batch(self, batch: list[Call], after: Callable[[Store], None] | None) -> Summary:
        store = self.store
        with store.transaction():
            generation, *state = store.batch_state()
            if generation != self._cache.generation:
                self._cache.clear()
                self._cache.complete = state[0] == 1
            if state[0] == 1 and len(batch) >= BULK_FROM:
                # a bulk load into an empty database: read indexes are built after it
                store.defer_indexes()
            summary, ids, times, merged, top, sizes = apply_batch(
                store,
                batch,
                self._cache,
                loose=self.dedupe == "loose",
                state=BatchState(*state),
            )
            if after is not None:
                after(store)
            store.set_meta("generation", str(generation + 1))
        self._cache.generation = generation + 1
        self._cache.update(ids, times, merged, top, sizes)
        return summary

    def _apply_one_by_one(
        self, batch: list[Call], after: Callable[[Store], None] | None
    ) -> Summary:
        """Apply `batch` call by call in one transaction, quarantining the calls that fail."""
        store, cache = self.store, self._cache
        total = Summary()
        if store.deferred:  # call by call, over the indexes and the persons table
            store.build_deferred_indexes()
        cache.clear()  # the identities each call creates are added as it commits
        cache.generation = -1
        try:
            with store.transaction():
                generation = store.batch_state()[0]
                for call in batch:
                    summary = self._apply_in_savepoint(call)
                    if summary is None:
                        summary = self._quarantine_refused(call)
                    total.add(summary)
                if after is not None:
                    after(store)
                store.set_meta("generation", str(generation + 1))
        finally:
            cache.clear()
        total.batches = 1
        return total

    def _quarantine_refused(self, call: Call) -> Summary:
        """Quarantine a call the store refused, as ``rejected_by_store``."""
        received = min(max(call.received, MIN_TIME), MAX_TIME)
        refused = rejected(
            call.raw, "rejected_by_store", received=received, source=call.source, tenant=call.tenant
        )
        summary = self._apply_in_savepoint(refused)
        if summary is None:  # its texts cannot be stored as they are: escape them
            refused = rejected(
                _escaped(call.raw),
                "rejected_by_store",
                received=received,
                source=_escaped(call.source),
            )
            summary = self._apply_in_savepoint(refused)
        if summary is None:  # pragma: no cover - an escaped row always fits
            raise RuntimeError(f"cannot quarantine {call.raw[:200]!r}")
        return summary

    def _apply_in_savepoint(self, call: Call) -> Summary | None:
        """Apply one call in a savepoint; None when it failed (its writes undone)."""
        store = self.store
        try:
            with store.savepoint():
                _, *state = store.batch_state()
                summary = apply_batch(
                    store,
                    [call],
                    IdentityCache(),
                    loose=self.dedupe == "loose",
                    state=BatchState(*state),
                ).summary
        except StoreError:
            raise
        except Exception as exc:
            _log.warning("identity: the store refused %r: %r", call.raw[:200], exc)
            return None
        return summary

    # -- queries: people --------------------------------------------------------------

    def _row(self, tenant: str, identity: str) -> tuple[int, int, str]:
        row = self.store.identity(tenant, identity)
        if row is None:
            raise UnknownIdentityError(tenant, identity)
        return row

    def _members(
        self, tenant: str, identity: str, as_of: int | None
    ) -> tuple[str, list[tuple[int, str, int, int | None]]]:
        row_id, person, display = self._row(tenant, identity)
        as_of = _bounded(as_of)
        if as_of is None:
            return display, self.store.members(person)
        ids, frontier = {row_id}, [row_id]
        while frontier:
            reached: set[int] = set()
            for a, b, _ in self.store.neighbours(frontier, as_of):
                reached.update((a, b))
            frontier = sorted(reached - ids)
            ids.update(frontier)
        members = [m for m in self.store.identities_by_id(sorted(ids)) if m[2] <= as_of]
        if not any(m[0] == row_id for m in members):
            raise UnknownIdentityError(tenant, identity)
        return min(m[1] for m in members), members

    def member_rows(
        self, tenant: str, identity: str, *, as_of: int | None = None
    ) -> list[tuple[int, str, int, int | None]]:
        """Return ``(row id, identity, first_seen, customer_since)`` of the person's identities.

        The rows :mod:`identity.inspection` builds a person's graph from; with `as_of`, the
        person as of that time.

        Raises
        ------
        UnknownIdentityError
            No accepted call named `identity` (by `as_of`).
        """
        return self._members(tenant, identity, as_of)[1]

    def person(self, tenant: str, identity: str, *, as_of: int | None = None) -> Person:
        """Return the person `identity` belongs to.

        Parameters
        ----------
        tenant, identity : str
            Which identity.
        as_of : int, optional
            Use only calls with event time ``t <= as_of``.

        Raises
        ------
        UnknownIdentityError
            No accepted call named `identity` (by `as_of`).

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.alias("K", "b", "a", t=10)
        >>> _ = engine.record("K", "b", "Paid", t=20)
        >>> engine.person("K", "b")
        Person(tenant='K', id='a', identities=('a', 'b'), customer_ids=('b',), properties=(), events=1)
        >>> engine.person("K", "b", as_of=15).events
        0
        """  # noqa: E501
        as_of = _bounded(as_of)
        display, members = self._members(tenant, identity, as_of)
        ids = [m[0] for m in members]
        records = self.store.property_records(ids)
        events = self.store.events_of(ids)
        if as_of is not None:
            records = [r for r in records if r[4] <= as_of]
            events = [e for e in events if e[2] <= as_of]
        return _make_person(
            tenant,
            display,
            [(m[1], m[3]) for m in members],
            [(r[1], r[2], r[3], r[4]) for r in records],
            len(events),
            as_of,
        )

    def person_of(self, tenant: str, identity: str) -> str:
        """Return the id of `identity`'s person (its smallest identity).

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.alias("K", "zed", "amy")
        >>> engine.person_of("K", "zed")
        'amy'
        """
        return self._row(tenant, identity)[2]

    def identities(self, tenant: str, identity: str) -> list[str]:
        """Return every identity of `identity`'s person, sorted."""
        return list(self.person(tenant, identity).identities)

    def customer_ids(self, tenant: str, identity: str, *, as_of: int | None = None) -> list[str]:
        """Return the Customer IDs of `identity`'s person, sorted (SPEC §6)."""
        return list(self.person(tenant, identity, as_of=as_of).customer_ids)

    def same_person(self, tenant: str, a: str, b: str) -> bool:
        """Tell whether `a` and `b` are one person (False when either is unknown).

        Examples
        --------
        >>> Engine().same_person("K", "a", "a")
        False
        """
        row_a, row_b = self.store.identity(tenant, a), self.store.identity(tenant, b)
        return row_a is not None and row_b is not None and row_a[1] == row_b[1]

    def people(self, tenant: str, *, as_of: int | None = None) -> Iterator[Person]:
        """Yield every person of `tenant`, by id, also those with no Customer ID yet.

        Notes
        -----
        Streams three ordered queries and merges them, so memory stays bounded by the
        largest person. With `as_of`, the partition is recomputed from the links with
        ``t <= as_of`` (memory grows with the tenant's identities).

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.ingest(["/a?_k=K&_p=b&_n=a", "/s?_k=K&_p=c&x=1"], received=1)
        >>> [(p.id, p.identities) for p in engine.people("K")]
        [('a', ('a', 'b')), ('c', ('c',))]
        """
        as_of = _bounded(as_of)
        if as_of is not None:
            yield from self._people_as_of(tenant, as_of)
            return
        store = self.store
        records = _grouped(store.tenant_properties(tenant))
        counts = dict(store.tenant_event_counts(tenant))
        pending_records: tuple[str, list[tuple[Any, ...]]] | None = next(records, None)
        current: str | None = None
        members: list[tuple[str, int | None]] = []
        for display, _, name, customer in store.tenant_members(tenant):
            if display != current:
                if current is not None:
                    own, pending_records = _take(current, pending_records, records)
                    yield _make_person(tenant, current, members, own, counts.get(current, 0))
                current, members = display, []
            members.append((name, customer))
        if current is not None:
            own, pending_records = _take(current, pending_records, records)
            yield _make_person(tenant, current, members, own, counts.get(current, 0))

    def _people_as_of(self, tenant: str, as_of: int) -> Iterator[Person]:
        rows = self.store.tenant_identities(tenant, as_of)
        uf: UnionFind[int] = UnionFind(r[0] for r in rows)
        for a, b in self.store.tenant_links(tenant, as_of):
            uf.union(a, b)
        by_id = {r[0]: r for r in rows}
        ids = sorted(by_id)
        records: dict[int, list[tuple[str, str, str, int]]] = defaultdict(list)
        for row_id, key, name, value, t, _ in self.store.property_records(ids):
            if t <= as_of:
                records[row_id].append((key, name, value, t))
        events: dict[int, int] = defaultdict(int)
        for row_id, _, t, _, _ in self.store.events_of(ids):
            if t <= as_of:
                events[row_id] += 1
        people = []
        for group in uf.to_sets():
            members = [by_id[i] for i in group]
            people.append(
                _make_person(
                    tenant,
                    min(m[1] for m in members),
                    [(m[1], m[3]) for m in members],
                    [r for i in group for r in records.get(i, ())],
                    sum(events.get(i, 0) for i in group),
                    as_of,
                )
            )
        people.sort(key=lambda p: p.id)
        yield from people

    def tenants(self) -> list[str]:
        """Return every tenant that has at least one identity, sorted."""
        return self.store.tenants()

    # -- queries: properties and events -----------------------------------------------

    def _records(self, tenant: str, identity: str, as_of: int | None) -> list[PropertyRecord]:
        as_of = _bounded(as_of)
        _, members = self._members(tenant, identity, as_of)
        names = {m[0]: m[1] for m in members}
        out = [
            PropertyRecord(names[row_id], name, value, t, sent)
            for row_id, _, name, value, t, sent in self.store.property_records(list(names))
            if as_of is None or t <= as_of
        ]
        out.sort(key=lambda r: (r.t, r.name.casefold(), r.value, r.identity, r.name))
        return out

    def property_history(
        self, tenant: str, identity: str, name: str | None = None, *, as_of: int | None = None
    ) -> list[PropertyRecord]:
        """Return every accepted property set of the person, by time (SPEC §9).

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.set("K", "bob", {"Plan": "free"}, t=1)
        >>> _ = engine.set("K", "bob", {"plan": "pro"}, t=2)
        >>> [(r.name, r.value, r.t) for r in engine.property_history("K", "bob", "PLAN")]
        [('Plan', 'free', 1), ('plan', 'pro', 2)]
        """
        records = self._records(tenant, identity, as_of)
        if name is None:
            return records
        key = name.replace(",", " ").replace(":", " ").casefold()
        return [r for r in records if r.name.casefold() == key]

    def properties(self, tenant: str, identity: str, *, as_of: int | None = None) -> dict[str, str]:
        """Return the person's current value of each property.

        The current value of a name is the record with the greatest ``(t, value)`` over all
        the person's identities: ties break on the value, never on arrival.
        """
        return dict(self.person(tenant, identity, as_of=as_of).properties)

    def first_properties(
        self, tenant: str, identity: str, *, as_of: int | None = None
    ) -> dict[str, str]:
        """Return the person's first value of each property (smallest ``(t, value)``).

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.set("K", "a", {"plan": "b"}, t=1)
        >>> _ = engine.set("K", "a", {"plan": "a"}, t=1)
        >>> engine.first_properties("K", "a"), engine.properties("K", "a")
        ({'plan': 'a'}, {'plan': 'b'})
        """
        first: dict[str, PropertyRecord] = {}
        for record in self._records(tenant, identity, as_of):
            key = record.name.casefold()
            if key not in first:
                first[key] = record
        return {r.name: r.value for r in sorted(first.values(), key=lambda r: r.name)}

    def events(self, tenant: str, identity: str, *, as_of: int | None = None) -> list[Event]:
        """Return the person's deduplicated events, by time.

        Examples
        --------
        >>> engine = Engine()
        >>> for _ in range(3):
        ...     _ = engine.record("K", "bob", "Paid", {"amount": "5"}, t=7)
        >>> engine.events("K", "bob")
        [Event(identity='bob', name='Paid', t=7, properties=(('amount', '5'),), sent=3)]
        """
        as_of = _bounded(as_of)
        _, members = self._members(tenant, identity, as_of)
        names = {m[0]: m[1] for m in members}
        out = [
            Event(names[row_id], name, t, tuple(json.loads(props).items()), sent)
            for row_id, name, t, props, sent in self.store.events_of(list(names))
            if as_of is None or t <= as_of
        ]
        out.sort(key=lambda e: (e.t, e.name.casefold(), e.identity, e.name, e.properties))
        return out

    # -- queries: quarantine, counts, consistency ------------------------------------

    def quarantine(
        self, tenant: str | None = None, *, reason: str | None = None
    ) -> Iterator[Quarantined]:
        """Yield quarantined calls, by receive time, optionally for one tenant or reason.

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.apply("/e?_k=K&_p=bob")
        >>> [q.reason for q in engine.quarantine()]
        ['missing_event_name']
        """
        for row in self.store.quarantine(tenant, reason):
            yield Quarantined(*row)

    def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Return counts of identities, people, Customer IDs, links, events and more.

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.alias("K", "a", "b")
        >>> engine.counts("K")["people"]
        1
        """
        return self.store.counts(tenant)

    def check(self) -> dict[str, int]:
        """Recompute the partition from the stored alias links and compare with the people.

        The check runs its own union-find (an integer array over row ids, smaller root wins),
        deliberately independent of :class:`~identity.core.UnionFind`, which the write path
        uses: a bug in the core cannot hide itself from the check. It is the only other one.

        Returns
        -------
        dict
            What was checked: identities, links, people.

        Raises
        ------
        InconsistentStoreError
            With every disagreement found.

        Examples
        --------
        >>> engine = Engine()
        >>> _ = engine.alias("K", "a", "b")
        >>> engine.check()
        {'identities': 2, 'links': 1, 'people': 1}
        """
        store = self.store
        problems = store.quick_check()
        problems += store.inconsistencies()
        size = store.next_identity_id()
        parent = array("q", range(size))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        links = 0
        for a, b in store.all_links():
            links += 1
            if 0 < a < size and 0 < b < size:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        # every stored person must be exactly one component of the links
        root_of_person: dict[int, int] = {}
        person_of_root: dict[int, int] = {}
        identities = 0
        for row_id, name, person in store.identity_persons():
            identities += 1
            root = find(row_id)
            if root_of_person.setdefault(person, root) != root:
                problems.append(f"person of {name!r} is not connected by its alias links")
            elif person_of_root.setdefault(root, person) != person:
                problems.append(f"{name!r} is linked to another person but not stored with it")
            if len(problems) > 50:
                break
        if problems:
            raise InconsistentStoreError(self.path, problems)
        return {"identities": identities, "links": links, "people": len(root_of_person)}


def _escaped(text: str) -> str:
    """Return `text` with whatever UTF-8 cannot hold (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _bounded(as_of: int | None) -> int | None:
    """Clamp an ``as_of`` time to SQLite's integers: the answer is the same, never an overflow.

    Examples
    --------
    >>> _bounded(10**30) == 2**63 - 1, _bounded(None), _bounded(5)
    (True, None, 5)
    """
    if as_of is None:
        return None
    return max(min(int(as_of), 2**63 - 1), -(2**63))


def _grouped(
    rows: Iterator[tuple[Any, ...]],
) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    current: str | None = None
    group: list[tuple[Any, ...]] = []
    for row in rows:
        if row[0] != current:
            if current is not None:
                yield current, group
            current, group = row[0], []
        group.append(row[1:])
    if current is not None:
        yield current, group


def _take(
    display: str,
    pending: tuple[str, list[tuple[Any, ...]]] | None,
    rest: Iterator[tuple[str, list[tuple[Any, ...]]]],
) -> tuple[list[tuple[Any, ...]], tuple[str, list[tuple[Any, ...]]] | None]:
    """Merge-join step: the rows of `display` from an iterator grouped by display id."""
    while pending is not None and pending[0] < display:
        pending = next(rest, None)
    if pending is not None and pending[0] == display:
        return pending[1], next(rest, None)
    return [], pending


def _make_person(
    tenant: str,
    display: str,
    members: list[tuple[str, int | None]],
    records: Iterable[tuple[Any, ...]],
    events: int,
    as_of: int | None = None,
) -> Person:
    """Build a Person from members and property records.

    Members are ``(identity, customer_since)``, records ``(name_key, name, value, t)``.
    """
    current: dict[str, tuple[int, str, str]] = {}
    for key, name, value, t in records:
        best = current.get(key)
        if best is None or (t, value, name) > best:
            current[key] = (t, value, name)
    properties = tuple(sorted((name, value) for _, value, name in current.values()))
    customer_ids = tuple(
        sorted(
            name
            for name, since in members
            if since is not None and (as_of is None or since <= as_of)
        )
    )
    return Person(
        tenant=tenant,
        id=display,
        identities=tuple(sorted(name for name, _ in members)),
        customer_ids=customer_ids,
        properties=properties,
        events=events,
    )
