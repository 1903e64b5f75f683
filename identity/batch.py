"""Apply one batch of validated calls to the store, in the caller's transaction.

Everything a batch does is order-independent by construction: identity times are minima,
person ids are the smallest member, a duplicate keeps the smallest ``(t, name, ...)`` and
is counted, the partition is the connected components of the links. Work is aggregated
in Python first (one row per identity, link, event and property record of the batch) and
written with ``executemany``; a merge relabels the smaller person only (the write path's
union-find is `_union_by_weight`, over persons weighted by their sizes).
"""

from __future__ import annotations

import gc
import hashlib
import json
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, NamedTuple

from .calls import Call
from .records import Summary
from .store import PersonRow, QuarantineRow, Store

__all__ = [
    "BatchResult",
    "BatchState",
    "IdentityCache",
    "apply_batch",
    "collector_paused",
    "fingerprint",
]

_NEVER = 2**62  # "not a Customer ID" while aggregating (stored as NULL)
_second = itemgetter(1)
_third = itemgetter(2)
_event_td = itemgetter(5)  # of an EventRow
_record_td = itemgetter(6)  # of a PropertyRow
_reversed = itemgetter(1, 0)  # a link pair (a, b) as (b, a)


def fingerprint(*parts: object) -> bytes:
    """Return a 16-byte digest of `parts` (the dedupe key stored in a UNIQUE index).

    Examples
    --------
    >>> len(fingerprint("signed up", 5)), fingerprint("a", "b") == fingerprint("a", "b")
    (16, True)
    """
    return _digest("\x00".join(str(p) for p in parts))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (a batch read and applied).

    A batch allocates about ten container objects a call (the call, its parameters, rows,
    keys) that all live until it is written, and the collector would scan them again and
    again as they pile up: 15% of the CPU of ``identity ingest``. Reference counting frees
    them: a batch makes no reference cycles of its own, and whatever another thread makes
    meanwhile is collected once the collector runs again, after the block (it stays off if
    it was off before).

    Examples
    --------
    >>> with collector_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class IdentityCache:
    """What the write path knows of stored identities; valid for one generation.

    Row ids per tenant and identity, and per row id the stored ``first_seen`` and
    ``customer_since`` (so a call that cannot lower them costs no statement). Memory grows
    with the distinct identities seen (a dict entry and 16 bytes each, 24 when complete),
    never with the number of calls.
    """

    def __init__(self) -> None:
        self.ids: dict[str, dict[str, int]] = {}
        self.first = array("q")
        self.since = array("q")
        self.generation = -1
        #: True when every stored identity is in the cache (it was started on an empty
        #: database): a miss is then a new identity, with no look-up.
        self.complete = False
        #: While complete: per row id, the next member of its person, round in a circle
        #: (:meth:`members`), so that a merge relabels the absorbed person's rows by id,
        #: with no index of identities by person (a bulk load defers that index).
        self.next_member = array("q")
        #: While complete: per row id, its person; per person id, its size. What a bulk load
        #: merges by while the ``persons`` table waits for its end.
        self.person = array("q")
        self.size = array("q")

    def clear(self) -> None:
        """Forget everything (another process wrote to the database)."""
        self.ids.clear()
        self.first = array("q")
        self.since = array("q")
        self.next_member = array("q")
        self.person = array("q")
        self.size = array("q")
        self.complete = False

    def members(self, person: int) -> list[int]:
        """Return the row ids of a stored person's identities (the cache must be complete).

        A person's id is the row id of one of its identities (the first of the person that
        survived its merges), so the circle of its members starts there.

        Examples
        --------
        >>> cache = IdentityCache()
        >>> cache.complete = True
        >>> cache.update({}, {}, {3: 1}, 5, {1: 2})  # identities 1-4, person 3 merged into 1
        >>> cache.members(1), cache.members(2), cache.person[3], cache.size[1]
        ([1, 3], [2], 1, 2)
        """
        following = self.next_member
        out = [person]
        member = following[person]
        while member != person:
            out.append(member)
            member = following[member]
        return out

    def update(
        self,
        ids: dict[str, dict[str, int]],
        times: dict[int, tuple[int, int]],
        merged: dict[int, int] | None = None,
        top: int = 0,
        sizes: dict[int, int] | None = None,
    ) -> None:
        """Remember what a committed batch wrote.

        `merged` maps each absorbed person to its survivor, `top` is one past the largest
        row id stored, `sizes` holds the survivors' new sizes (for :meth:`members`,
        :attr:`person` and :attr:`size`, kept while the cache is complete).
        """
        if self.complete:
            following, person, size = self.next_member, self.person, self.size
            start = len(following)
            if start < top:  # a new identity is a person of its own, a circle of one
                following.extend(range(start, top))
                person.extend(range(start, top))
                size.extend(array("q", [1]) * (top - start))
            members = self.members
            for absorbed, root in (merged or {}).items():
                for member in members(absorbed):
                    person[member] = root
                # two circles into one
                following[absorbed], following[root] = following[root], following[absorbed]
            for root, n in (sizes or {}).items():
                size[root] = n
        for tenant, names in ids.items():
            self.ids.setdefault(tenant, {}).update(names)
        if times:
            end = max(times) + 1
            if len(self.first) < end:
                grow = max(end, 2 * len(self.first)) - len(self.first)
                self.first.extend(array("q", [0]) * grow)
                self.since.extend(array("q", [_NEVER]) * grow)
            first, since = self.first, self.since
            for row_id, (first_t, since_t) in times.items():
                first[row_id] = first_t
                since[row_id] = since_t


_quote = json.encoder.encode_basestring  # the C string encoder json.dumps uses


def _properties_json(properties: tuple[tuple[str, str, str], ...]) -> str:
    """Return an event's properties as a JSON object of display name to value."""
    if not properties:
        return "{}"
    pairs = [f"{_quote(name)}:{_quote(value)}" for _, name, value in properties]
    return "{" + ",".join(pairs) + "}"


_blake2b = hashlib.blake2b


def _digest(text: str) -> bytes:
    return _blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class BatchState(NamedTuple):
    """What a write batch reads first, in its transaction (:meth:`Store.batch_state`)."""

    #: The row id the next new identity gets.
    next_id: int
    #: The largest event, property record and link row ids before the batch: rows of these
    #: tables are never deleted, so the difference after the batch counts the new ones.
    events: int
    records: int
    links: int


class BatchResult(NamedTuple):
    """What :func:`apply_batch` did and what the identity cache learns once it commits."""

    summary: Summary
    #: ``{tenant: {identity: row id}}`` of every identity the batch named.
    ids: dict[str, dict[str, int]]
    #: ``{row id: (first_seen, customer_since)}`` written or read by the batch
    #: (``customer_since`` of a non-customer is a large sentinel).
    times: dict[int, tuple[int, int]]
    #: ``{absorbed person: surviving person}`` of the batch's merges.
    merged: dict[int, int]
    #: One past the largest identity row id after the batch.
    top: int
    #: ``{surviving person: its size}`` after the batch's merges.
    sizes: dict[int, int]


class _Resolved(NamedTuple):
    """Step 1: the identities of a batch, with their row ids."""

    #: ``{tenant: {identity: [earliest t, earliest Customer-ID t]}}``
    seen: dict[str, dict[str, list[int]]]
    ids: dict[str, dict[str, int]]
    #: identities created by the batch, ``{tenant: {identity: row id}}``
    created: dict[str, dict[str, int]]
    #: ``(first_seen, customer_since)`` of stored identities the cache did not know
    stored_times: dict[int, tuple[int, int]]
    first_new: int


def apply_batch(
    store: Store,
    calls: Sequence[Call],
    cache: IdentityCache,
    *,
    loose: bool = False,
    state: BatchState | None = None,
) -> BatchResult:
    """Apply `calls` inside the store's open transaction.

    Four steps, one function each: quarantine the refused calls; resolve the identities
    named (:func:`_resolve`); write the alias links and the merges they make
    (:func:`_merge`), then the identities (:func:`_write_identities`); write the events
    and property records (:func:`_write_events`).

    Parameters
    ----------
    store : Store
        With a transaction open.
    calls : sequence of Call
        Validated calls (quarantined ones included: they are stored as such).
    cache : IdentityCache
        Known row ids; not modified here.
    loose : bool
        Use the loose duplicate-event rule (property values ignored).
    state : BatchState, optional
        As read at the start of the transaction; read here when omitted.

    Returns
    -------
    BatchResult
        The summary, and what to add to the cache once the transaction is committed.
    """
    summary = Summary(calls=len(calls), batches=1)
    accepted = _quarantine(store, calls, summary)
    summary.accepted = len(accepted)
    if not accepted:
        return BatchResult(summary, {}, {}, {}, 0, {})
    if state is None:
        state = BatchState(store.next_identity_id(), *store.max_ids())
    if store.persons_deferred and not cache.complete:
        store.build_deferred_indexes()  # persons are read and written: fill them first
    # a bulk load whose writer knows every person: the persons table waits for its end, and
    # changes to stored identities are appended to identity_updates
    bulk = store.persons_deferred
    moved: dict[int, int] | None = {} if bulk and store.updates_deferred else None
    resolved = _resolve(store, accepted, cache, state.next_id)
    summary.new_identities = sum(len(c) for c in resolved.created.values())
    person_of, merged, sizes, n_links = _merge(
        store, accepted, resolved, summary, cache, bulk, moved
    )
    times = _write_identities(store, resolved, cache, person_of, bulk, moved)
    n_events, n_records = _write_events(store, accepted, resolved.ids, loose)
    after_events, after_records, after_links = store.max_ids()
    summary.duplicate_events = n_events - (after_events - state.events)
    summary.duplicate_properties = n_records - (after_records - state.records)
    summary.duplicate_aliases = n_links - (after_links - state.links)
    top = resolved.first_new + summary.new_identities
    return BatchResult(summary, resolved.ids, times, merged, top, sizes)


def _quarantine(store: Store, calls: Sequence[Call], summary: Summary) -> list[Call]:
    """Store the refused calls and return the accepted ones.

    The same raw call, reason and receive time is stored once, with a count.
    """
    quarantine: dict[bytes, QuarantineRow] = {}
    accepted: list[Call] = []
    for call in calls:
        if call.reason is None:
            accepted.append(call)
            continue
        summary.quarantined[call.reason] = summary.quarantined.get(call.reason, 0) + 1
        key = fingerprint(call.raw, call.reason, call.received)
        row = quarantine.get(key)
        if row is None:
            quarantine[key] = QuarantineRow(
                key, call.tenant, call.reason, call.raw, call.received, call.source, 1
            )
        else:
            quarantine[key] = row._replace(source=min(row.source, call.source), sent=row.sent + 1)
    if quarantine:
        store.upsert_quarantine(quarantine.values())
    return accepted


#: Stands for the tenant before the first call of a loop that caches per-tenant look-ups.
_NO_TENANT = object()


def _resolve(store: Store, accepted: list[Call], cache: IdentityCache, next_id: int) -> _Resolved:
    """Step 1: every identity the batch names, its earliest times, and its row id."""
    seen: dict[str, dict[str, list[int]]] = {}
    last_tenant: object = _NO_TENANT  # no call seen yet (None is a tenant of a call)
    names: dict[str, list[int]] = {}
    for call in accepted:
        if call.tenant != last_tenant:
            last_tenant = call.tenant
            names = seen.get(call.tenant or "") or seen.setdefault(call.tenant or "", {})
        who = call.identity or ""
        entry = names.get(who)
        customer = call.t if call.kind != "a" else _NEVER
        if entry is None:
            names[who] = [call.t, customer]
        else:
            if call.t < entry[0]:
                entry[0] = call.t
            if customer < entry[1]:
                entry[1] = customer
        if call.kind == "a":
            other = call.name or ""
            entry = names.get(other)
            if entry is None:
                names[other] = [call.t, _NEVER]
            elif call.t < entry[0]:
                entry[0] = call.t
    first_new = next_id
    complete = cache.complete or next_id == 1
    ids: dict[str, dict[str, int]] = {}
    created_ids: dict[str, dict[str, int]] = {}
    stored_times: dict[int, tuple[int, int]] = {}
    for tenant, names in seen.items():
        # dictionary work at C speed: comprehensions, and new row ids handed out by zip
        get = cache.ids.get(tenant, {}).get
        resolved = {name: row_id for name in names if (row_id := get(name)) is not None}
        if len(resolved) < len(names):
            missing = [name for name in names if name not in resolved]
            found = {} if complete else store.find_ids(tenant, missing)
            for name, (row_id, first_seen, since) in found.items():
                resolved[name] = row_id
                stored_times[row_id] = (first_seen, _NEVER if since is None else since)
            new = [name for name in missing if name not in found] if found else missing
            created = dict(zip(new, range(next_id, next_id + len(new)), strict=True))
            next_id += len(new)
            resolved.update(created)
            created_ids[tenant] = created
        ids[tenant] = resolved
    return _Resolved(seen, ids, created_ids, stored_times, first_new)


def _merge(
    store: Store,
    accepted: list[Call],
    resolved: _Resolved,
    summary: Summary,
    cache: IdentityCache,
    bulk: bool = False,
    moved: dict[int, int] | None = None,
) -> tuple[dict[int, int], dict[int, int], dict[int, int], int]:
    """Step 2: write the batch's alias links and the merges they make.

    The persons of the links' endpoints are merged by `_union_by_weight`, weighted by
    their stored sizes, so that union by size picks the larger person of each
    merge as the survivor: only the absorbed side is relabelled (by row id when the
    cache is complete and knows its members; into `moved`, ``{identity: new person}``,
    when it is given: the rows are then written by :func:`_write_identities`). In a `bulk`
    load the persons are the cache's, and no ``persons`` row is written. Returns the person
    of every endpoint
    identity created by the batch, ``{absorbed person: survivor}``, ``{survivor: size}``
    and the number of links sent.
    """
    # rows as lists [a, b, t, sent, source], updated in place (no tuple per copy)
    links: dict[tuple[int, int], list[Any]] = {}
    n_links = 0
    ids = resolved.ids
    last_tenant: object = _NO_TENANT  # no call seen yet (None is a tenant of a call)
    tenant_ids: dict[str, int] = {}
    for call in accepted:
        if call.kind != "a":
            continue
        who, other = call.identity or "", call.name or ""
        if who == other:
            continue
        n_links += 1
        if call.tenant != last_tenant:
            last_tenant = call.tenant
            tenant_ids = ids[call.tenant or ""]
        x, y = tenant_ids[who], tenant_ids[other]
        pair = (x, y) if x < y else (y, x)
        link = links.get(pair)
        if link is None:
            links[pair] = [pair[0], pair[1], call.t, 1, call.source]
        else:
            link[3] += 1
            if (call.t, call.source) < (link[2], link[4]):
                link[2] = call.t
                link[4] = call.source
    # persons of the link endpoints, weighted by their sizes; a new identity starts as a
    # person of its own
    endpoints = {x for pair in links for x in pair}
    first_new = resolved.first_new
    person_of: dict[int, int] = {}
    display: dict[int, str] = {}
    tenant_of: dict[int, str] = {}
    weight: dict[int, int] = {}
    existing = sorted(x for x in endpoints if x < first_new)
    if bulk:
        cached_person, cached_size = cache.person, cache.size
        for row_id in existing:
            person = person_of[row_id] = cached_person[row_id]
            weight[person] = cached_size[person]
    else:
        for row_id, (person, size, shown, tenant) in store.persons_of(existing).items():
            person_of[row_id] = person
            if person not in display:
                weight[person] = size
                display[person] = shown
                tenant_of[person] = tenant
    for tenant, created in resolved.created.items():
        for name, row_id in created.items():
            if row_id in endpoints:
                person_of[row_id] = row_id
                weight[row_id] = 1
                display[row_id] = name
                tenant_of[row_id] = tenant
    root_of = _union_by_weight([(person_of[x], person_of[y]) for x, y in links], weight)
    summary.merges = len(root_of)
    sizes = {root: weight[root] for root in set(root_of.values())}
    # only the absorbed side of a merge is relabelled; every write goes in key order:
    # B-tree pages are visited left to right, each once
    moves = sorted(((root, p) for p, root in root_of.items() if p < first_new), key=_second)
    if moves and moved is not None:
        members = cache.members
        for root, p in moves:
            moved.update(dict.fromkeys(members(p), root))
    elif moves and cache.complete:
        members = cache.members
        rows = [(root, member) for root, p in moves for member in members(p)]
        rows.sort(key=_second)
        store.relabel_members(rows)
    elif moves:
        store.relabel(moves)
    if not bulk:  # write persons
        roots: dict[int, str] = {}  # each person that absorbed others: its display id
        for person, root in root_of.items():
            shown = display[person]
            kept = roots.get(root, display[root])
            roots[root] = shown if shown < kept else kept
        if moves:
            store.delete_persons((p,) for _, p in moves)
        store.upsert_persons(
            PersonRow(root, tenant_of[root], roots[root], weight[root]) for root in sorted(roots)
        )
    # in the order of the store's unique index: newer identity first, or (a, b)
    order = sorted(links, key=_reversed) if store.links_by_b else sorted(links)
    store.upsert_links([links[pair] for pair in order])
    get_root = root_of.get
    new_endpoints = {x: get_root(x, x) for x in endpoints if x >= first_new}
    return new_endpoints, root_of, sizes, n_links


def _union_by_weight(pairs: list[tuple[int, int]], weight: dict[int, int]) -> dict[int, int]:
    """Merge the persons of every pair, union by weight; return ``{absorbed: survivor}``.

    `weight` holds every person's size and is updated for the survivors. Of two persons
    the heavier survives (the first of the pair on a tie), so that a merge relabels the
    smaller side only. The same partition as :class:`~identity.core.UnionFind` with
    ``add(weight=)``, over plain integers without its per-call overhead.

    Examples
    --------
    >>> weight = {1: 1, 2: 5, 3: 1, 4: 1}
    >>> _union_by_weight([(1, 2), (3, 1), (4, 4)], weight), weight[2]
    ({1: 2, 3: 2}, 7)
    """
    parent: dict[int, int] = {}
    up = parent.get
    for a, b in pairs:
        while (p := up(a)) is not None:
            a = p
        while (p := up(b)) is not None:
            b = p
        if a == b:
            continue
        wa, wb = weight[a], weight[b]
        if wa < wb:
            a, b = b, a
        parent[b] = a
        weight[a] = wa + wb
    for x, r in parent.items():  # every absorbed person straight to its survivor
        while (p := up(r)) is not None:
            r = p
        parent[x] = r
    return parent


def _write_identities(
    store: Store,
    resolved: _Resolved,
    cache: IdentityCache,
    person_of: dict[int, int],
    bulk: bool = False,
    moved: dict[int, int] | None = None,
) -> dict[int, tuple[int, int]]:
    """Step 3: insert the new identities and lower the times of stored ones.

    A new identity in no link is a person of its own (no ``persons`` row in a `bulk` load).
    With `moved` (the stored identities :func:`_merge` moved to another person), the
    whole new state of every stored identity that changed is appended to the store's
    ``identity_updates`` instead of written in place.
    """
    # plain tuples in IdentityRow / PersonRow order (no named tuple per new identity)
    identity_rows: list[tuple[int, str, str, int, int, int | None]] = []
    person_rows: list[tuple[int, str, str, int]] = []
    touches: list[tuple[int, int | None, int]] = []
    times: dict[int, tuple[int, int]] = {}
    stored_times = resolved.stored_times
    cached_first, cached_since = cache.first, cache.since
    for tenant, names in resolved.seen.items():
        created = resolved.created.get(tenant, {})
        tenant_ids = resolved.ids[tenant]
        if len(created) < len(names):  # stored identities: lower their times if need be
            for name, (first_t, since) in names.items():
                if name in created:
                    continue
                row_id = tenant_ids[name]
                old = stored_times.get(row_id)
                if old is None:
                    old = (cached_first[row_id], cached_since[row_id])
                if first_t < old[0] or since < old[1]:
                    first_t, since = min(first_t, old[0]), min(since, old[1])
                    touches.append((first_t, None if since == _NEVER else since, row_id))
                    times[row_id] = (first_t, since)
                elif row_id in stored_times:
                    times[row_id] = old
        get_person = person_of.get
        for name, new_id in created.items():
            first_t, since = names[name]
            times[new_id] = (first_t, since)
            person = get_person(new_id)
            if person is None:  # in no link: a person of its own
                person = new_id
                person_rows.append((new_id, tenant, name, 1))
            identity_rows.append(
                (new_id, tenant, name, person, first_t, None if since == _NEVER else since)
            )
    if not bulk:
        person_rows.sort()
        store.upsert_persons(person_rows)
    identity_rows.sort()
    store.insert_identities(identity_rows)
    if moved is not None:
        if moved or touches:
            store.append_identity_updates(_updates(cache, moved, touches, times))
    elif touches:
        touches.sort(key=_third)
        store.touch_identities(touches)
    return times


def _updates(
    cache: IdentityCache,
    moved: dict[int, int],
    touches: list[tuple[int, int | None, int]],
    times: dict[int, tuple[int, int]],
) -> list[tuple[int, int, int, int | None]]:
    """Return ``(id, person, first_seen, customer_since)`` of the stored identities changed.

    The state after the batch: a moved identity's new person and its times (lowered by the
    batch or as cached); a touched one's new times and its person (unchanged, or it would
    have moved).
    """
    first, since, person = cache.first, cache.since, cache.person
    rows: list[tuple[int, int, int, int | None]] = []
    get_times = times.get
    for row_id, root in moved.items():
        known = get_times(row_id)
        first_t, since_t = (first[row_id], since[row_id]) if known is None else known
        rows.append((row_id, root, first_t, None if since_t == _NEVER else since_t))
    rows.extend(
        (row_id, person[row_id], first_t, since_t)
        for first_t, since_t, row_id in touches
        if row_id not in moved
    )
    return rows


def _write_events(
    store: Store, accepted: list[Call], ids: dict[str, dict[str, int]], loose: bool
) -> tuple[int, int]:
    """Step 4: the events and property records, duplicates folded; return how many were sent.

    A duplicate keeps the smallest ``(t, name, properties)`` of its copies, whichever came
    first.
    """
    # rows as lists (EventRow / PropertyRow order), updated in place: a duplicate costs no
    # new row object
    events: dict[tuple[int, bytes], list[Any]] = {}
    records: dict[tuple[int, bytes], list[Any]] = {}
    n_events = n_records = 0
    blake2b = _blake2b
    # an event's properties as shown and as keyed: property sets repeat across calls
    texts: dict[tuple[tuple[str, str, str], ...], tuple[str, str]] = {}
    last_tenant: object = _NO_TENANT  # no call seen yet (None is a tenant of a call)
    tenant_ids: dict[str, int] = {}
    for call in accepted:
        kind = call.kind
        if kind == "a":
            continue
        if call.tenant != last_tenant:
            last_tenant = call.tenant
            tenant_ids = ids[call.tenant or ""]
        row_id = tenant_ids[call.identity or ""]
        t, td, properties = call.t, call.td, call.properties
        if kind == "e":
            n_events += 1
            name = call.name or ""
            name_key = name.casefold()
            if not properties:
                shown = "{}"
                text = f"{name_key}\x00{td}"
            else:
                known = texts.get(properties)
                if known is None:
                    values = "\x00".join([f"{k}\x01{v}" for k, _, v in properties])
                    known = texts[properties] = (_properties_json(properties), values)
                shown, values = known
                text = f"{name_key}\x00{td}" if loose else f"{name_key}\x00{td}\x00{values}"
            digest = blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            key = (row_id, digest)
            event = events.get(key)
            if event is None:
                events[key] = [row_id, digest, name, name_key, t, td, shown, 1]
            else:
                event[7] += 1
                if (t, name, shown) < (event[4], event[2], event[6]):
                    event[2], event[4], event[6] = name, t, shown
        for prop_key, prop_name, value in properties:
            n_records += 1
            text = f"{prop_key}\x00{value}\x00{td}"
            digest = blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            key = (row_id, digest)
            record = records.get(key)
            if record is None:
                records[key] = [row_id, digest, prop_key, prop_name, value, t, td, 1]
            else:
                record[7] += 1
                if (t, prop_name) < (record[5], record[3]):
                    record[3], record[5] = prop_name, t
    # in the order of the store's unique index: (td, identity, key) or (identity, key)
    if events:
        rows = [events[key] for key in sorted(events)]
        if store.by_time:
            rows.sort(key=_event_td)  # stable: (identity, key) within a td
        store.upsert_events(rows)
    if records:
        rows = [records[key] for key in sorted(records)]
        if store.by_time:
            rows.sort(key=_record_td)
        store.upsert_properties(rows)
    return n_events, n_records
