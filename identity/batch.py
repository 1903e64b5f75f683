"""Apply one batch of validated calls to the store, in the caller's transaction.

Everything a batch does is order-independent by construction: identity times are minima,
person ids are the smallest member, a duplicate keeps the smallest ``(t, name, ...)`` and
is counted, the partition is the connected components of the links. Work is aggregated
in Python first (one row per identity, link, event and property record of the batch) and
written with ``executemany``; a merge relabels the smaller person only.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Sequence
from typing import Any

from .calls import Call
from .records import Summary
from .store import Store

__all__ = ["IdentityCache", "apply_batch", "fingerprint"]

_NEVER = 2**62  # "not a Customer ID" while aggregating (stored as NULL)


def fingerprint(*parts: object) -> bytes:
    """Return a 16-byte digest of `parts` (the dedupe key stored in a UNIQUE index).

    Examples
    --------
    >>> len(fingerprint("signed up", 5)), fingerprint("a", "b") == fingerprint("a", "b")
    (16, True)
    """
    return _digest("\x00".join(str(p) for p in parts))


class IdentityCache:
    """What the write path knows of stored identities; valid for one generation.

    Row ids per tenant and identity, and per row id the stored ``first_seen`` and
    ``customer_since`` (so a call that cannot lower them costs no statement). Memory grows
    with the distinct identities seen (a dict entry and 16 bytes each), never with the
    number of calls.
    """

    def __init__(self) -> None:
        self.ids: dict[str, dict[str, int]] = {}
        self.first = array("q")
        self.since = array("q")
        self.generation = -1
        #: True when every stored identity is in the cache (it was started on an empty
        #: database): a miss is then a new identity, with no look-up.
        self.complete = False

    def clear(self) -> None:
        """Forget everything (another process wrote to the database)."""
        self.ids.clear()
        self.first = array("q")
        self.since = array("q")
        self.complete = False

    def update(
        self, ids: dict[str, dict[str, int]], times: dict[int, tuple[int, int]]
    ) -> None:
        """Remember what a committed batch wrote."""
        for tenant, names in ids.items():
            self.ids.setdefault(tenant, {}).update(names)
        if times:
            top = max(times) + 1
            if len(self.first) < top:
                grow = max(top, 2 * len(self.first)) - len(self.first)
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


def apply_batch(
    store: Store,
    calls: Sequence[Call],
    cache: IdentityCache,
    *,
    loose: bool = False,
    state: tuple[int, int, int, int] | None = None,
) -> tuple[Summary, dict[str, dict[str, int]], dict[int, tuple[int, int]]]:
    """Apply `calls` inside the store's open transaction.

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
    state : tuple, optional
        ``(next identity id, largest event, property record and link ids)`` as read at
        the start of the transaction (:meth:`Store.batch_state`); read here when omitted.

    Returns
    -------
    summary : Summary
        What the batch did.
    ids : dict
        ``{tenant: {identity: row id}}`` of every identity the batch named, to add to the
        cache once the transaction is committed.
    times : dict
        ``{row id: (first_seen, customer_since)}`` written or read by the batch, for the
        cache too (``customer_since`` of a non-customer is a large sentinel).
    """
    summary = Summary(calls=len(calls), batches=1)
    quarantine: dict[bytes, list[object]] = {}
    accepted: list[Call] = []
    for call in calls:
        if call.reason is None:
            accepted.append(call)
            continue
        summary.quarantined[call.reason] = summary.quarantined.get(call.reason, 0) + 1
        qkey = fingerprint(call.raw, call.reason, call.received)
        row = quarantine.get(qkey)
        if row is None:
            quarantine[qkey] = [
                qkey,
                call.tenant,
                call.reason,
                call.raw,
                call.received,
                call.source,
                1,
            ]
        else:
            row[5] = min(str(row[5]), call.source)
            row[6] = int(str(row[6])) + 1
    summary.accepted = len(accepted)
    if quarantine:
        store.upsert_quarantine(tuple(r) for r in quarantine.values())
    if not accepted:
        return summary, {}, {}

    # 1. identities named by the batch, with their earliest times
    seen: dict[str, dict[str, list[int]]] = {}
    last_tenant: str | None = None
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

    if state is None:
        state = (store.next_identity_id(), *store.max_ids())
    next_id, before_events, before_records, before_links = state
    first_new = next_id
    complete = cache.complete or next_id == 1
    ids: dict[str, dict[str, int]] = {}
    new_ids: dict[str, dict[str, int]] = {}
    stored_times: dict[int, tuple[int, int]] = {}
    for tenant, names in seen.items():
        known = cache.ids.get(tenant, {})
        resolved = {name: known[name] for name in names if name in known}
        missing = [name for name in names if name not in resolved]
        if missing:
            found = {} if complete else store.find_ids(tenant, missing)
            created = new_ids.setdefault(tenant, {})
            for name in missing:
                if name in found:
                    row_id, first_seen, since = found[name]
                    resolved[name] = row_id
                    stored_times[row_id] = (first_seen, _NEVER if since is None else since)
                else:
                    resolved[name] = created[name] = next_id
                    next_id += 1
        ids[tenant] = resolved
    summary.new_identities = next_id - first_new

    # 2. alias links of the batch, then the merges they make
    links: dict[tuple[int, int], list[Any]] = {}
    n_links = 0
    for call in accepted:
        if call.kind != "a" or call.identity == call.name:
            continue
        n_links += 1
        tenant_ids = ids[call.tenant or ""]
        x, y = tenant_ids[call.identity or ""], tenant_ids[call.name or ""]
        pair = (x, y) if x < y else (y, x)
        link = links.get(pair)
        if link is None:
            links[pair] = [call.t, 1, call.source]
        else:
            if (call.t, call.source) < (int(link[0]), str(link[2])):
                link[0], link[2] = call.t, call.source
            link[1] = int(link[1]) + 1
    # persons of the link endpoints; a new identity starts as its own person
    endpoints = {x for pair in links for x in pair}
    person_of: dict[int, int] = {}
    parent: dict[int, int] = {}
    size: dict[int, int] = {}
    display: dict[int, str] = {}
    tenant_of: dict[int, str] = {}
    existing = sorted(x for x in endpoints if x < first_new)
    for row_id, (person, person_size, shown, tenant) in store.persons_of(existing).items():
        person_of[row_id] = person
        size[person] = person_size
        display[person] = shown
        tenant_of[person] = tenant
    for tenant, created in new_ids.items():
        for name, row_id in created.items():
            if row_id in endpoints:
                person_of[row_id] = row_id
                size[row_id] = 1
                display[row_id] = name
                tenant_of[row_id] = tenant

    def find(x: int) -> int:
        root = x
        while root in parent:
            root = parent[root]
        while x != root:
            parent[x], x = root, parent[x]
        return root

    merged_into: list[int] = []
    for x, y in links:
        rx, ry = find(person_of[x]), find(person_of[y])
        if rx == ry:
            continue
        if size[rx] < size[ry] or (size[rx] == size[ry] and rx > ry):
            rx, ry = ry, rx
        parent[ry] = rx
        size[rx] += size[ry]
        if display[ry] < display[rx]:
            display[rx] = display[ry]
        merged_into.append(ry)
    summary.merges = len(merged_into)

    # 3. write persons and identities: only the absorbed side of a merge is relabelled
    moves = [(find(p), p) for p in merged_into if p < first_new]
    if moves:
        store.relabel(moves)
        store.delete_persons((p,) for _, p in moves)
    person_rows = [
        (root, tenant_of[root], display[root], size[root])
        for root in {find(p) for p in merged_into}
    ]
    identity_rows: list[tuple[int, str, str, int, int, int | None]] = []
    touches: list[tuple[int, int | None, int]] = []
    times: dict[int, tuple[int, int]] = {}
    cached_first, cached_since = cache.first, cache.since
    for tenant, names in seen.items():
        created = new_ids.get(tenant, {})
        tenant_ids = ids[tenant]
        for name, (first_t, since) in names.items():
            if name not in created:
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
                continue
            customer_t = None if since == _NEVER else since
            new_id = created[name]
            times[new_id] = (first_t, since)
            if new_id in endpoints:
                identity_rows.append((new_id, tenant, name, find(new_id), first_t, customer_t))
            else:
                identity_rows.append((new_id, tenant, name, new_id, first_t, customer_t))
                person_rows.append((new_id, tenant, name, 1))
    store.upsert_persons(person_rows)
    store.insert_identities(identity_rows)
    if touches:
        store.touch_identities(touches)

    # 4. events and property records
    events: dict[tuple[int, bytes], list[Any]] = {}
    records: dict[tuple[int, bytes], list[Any]] = {}
    n_events = n_records = 0
    for call in accepted:
        if call.kind == "a":
            continue
        row_id = ids[call.tenant or ""][call.identity or ""]
        if call.kind == "e":
            n_events += 1
            properties = call.properties
            shown = _properties_json(properties)
            name = call.name or ""
            name_key = name.casefold()
            if loose or not properties:
                digest = _digest(f"{name_key}\x00{call.td}")
            else:
                values = "\x00".join([f"{k}\x01{v}" for k, _, v in properties])
                digest = _digest(f"{name_key}\x00{call.td}\x00{values}")
            key = (row_id, digest)
            event = events.get(key)
            if event is None:
                events[key] = [row_id, digest, name, name_key, call.t, call.td, shown, 1]
            else:
                if (call.t, name, shown) < (event[4], event[2], event[6]):
                    event[2], event[4], event[6] = name, call.t, shown
                event[7] = int(str(event[7])) + 1
        td = call.td
        for prop_key, prop_name, value in call.properties:
            n_records += 1
            digest = _digest(f"{prop_key}\x00{value}\x00{td}")
            key = (row_id, digest)
            record = records.get(key)
            if record is None:
                records[key] = [row_id, digest, prop_key, prop_name, value, call.t, td, 1]
            else:
                if (call.t, prop_name) < (record[5], record[3]):
                    record[3], record[5] = prop_name, call.t
                record[7] = int(str(record[7])) + 1
    if links:
        store.upsert_links((a, b, link[0], link[1], link[2]) for (a, b), link in links.items())
    if events:
        store.upsert_events(tuple(e) for e in events.values())
    if records:
        store.upsert_properties(tuple(r) for r in records.values())
    after_events, after_records, after_links = store.max_ids()
    summary.duplicate_events = n_events - (after_events - before_events)
    summary.duplicate_properties = n_records - (after_records - before_records)
    summary.duplicate_aliases = n_links - (after_links - before_links)
    return summary, ids, times

