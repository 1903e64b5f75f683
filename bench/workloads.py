"""Seeded, streamed workloads of Kissmetrics-style tracking calls.

Every shape is a function ``shape(n_calls, seed=0, tenants=1)`` returning an iterator of exactly
`n_calls` calls. A call is a ``dict`` of string parameters plus a ``"_path"`` key, ``"e"``
(record an event), ``"s"`` (set properties) or ``"a"`` (alias), in the order a client would put
them on the wire::

    {"_path": "e", "_k": "tenant-1", "_p": "AbC9xYz", "_n": "Signed Up", "plan": "pro",
     "_t": "1700000000", "_d": "1"}

``/a`` calls carry the two identities in ``_p`` and ``_n`` (SPEC §1). Every call has a numeric
``_t`` counted from `EPOCH`, increasing-ish: a few percent are floats (``"1700000000.25"``) and
some carry ``_d=1``, about half of those back-dated by up to a day (server-side imports).

Streams are lazy: nothing builds the whole list, and the state kept is bounded whatever
`n_calls` is -- a pool of the people currently active (each a small generator), a few shared
devices per tenant, a bounded queue of pending client retries. Identities that a shape must
recompute (members of a giant cluster, links of a long chain) are derived from a per-person salt
and an index instead of being stored.

A shape is deterministic for its seed (and Python's `random` algorithms): the same arguments
give the same calls, on any machine and in any process.

Writers turn calls into lines: `to_url` (a beacon query string) and `to_km` (a line of a
Kissmetrics export / JSON import file); `write` streams a whole workload to a file.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import heapq
import inspect
import io
import itertools
import json
import math
import os
import random
import re
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Protocol, TypeAlias
from urllib.parse import quote_plus

Call: TypeAlias = dict[str, str]
"""One tracking call: string parameters plus ``"_path"`` (``"e"``, ``"s"`` or ``"a"``)."""

#: What a person generator yields: path, ``_p``, ``_n`` (or None) and properties (or None).
Step: TypeAlias = tuple[str, str, str | None, dict[str, str] | None]

#: First timestamp of every workload (2023-11-14 22:13:20 UTC).
EPOCH = 1_700_000_000

#: Keys that are not properties.
RESERVED = frozenset({"_path", "_k", "_p", "_n", "_t", "_d"})

#: Junk identities real clients send; the first five are the common ones.
JUNK_IDS: tuple[str, ...] = (
    "undefined",
    "null",
    "None",
    "0",
    "",
    "Undefined",
    "NULL",
    "[object Object]",
    "-1",
    "00000000-0000-0000-0000-000000000000",
    "anonymous",
)
_JUNK_WEIGHTS = tuple(itertools.accumulate((30, 20, 15, 10, 10, 3, 3, 3, 2, 2, 2)))

ANON_EVENTS: tuple[str, ...] = (
    "Viewed Homepage",
    "Viewed Pricing",
    "Viewed Blog Post",
    "Viewed Product",
    "Ad Campaign Hit",
    "Searched",
    "Clicked CTA",
    "Watched Video",
)
USER_EVENTS: tuple[str, ...] = (
    "Logged In",
    "Viewed Dashboard",
    "Added to Cart",
    "Purchased",
    "Billed",
    "Upgraded",
    "Invited Teammate",
    "Exported Report",
    "Changed Settings",
    "Canceled",
)
#: Names that exercise normalisation (SPEC §5): case variants, commas and colons.
ODD_EVENTS: tuple[str, ...] = (
    "signed up",
    "SIGNED UP",
    "Checkout: Step 1",
    "Viewed Page, Pricing",
    "Viewed Product: Müsli 500g",
)
PLANS: tuple[str, ...] = ("free", "starter", "pro", "team", "enterprise")
REFERRERS: tuple[str, ...] = (
    "direct",
    "https://www.google.com/search?q=identity+resolution&hl=en",
    "https://news.ycombinator.com/",
    "https://t.co/AbC9xYz?amp=1",
    "https://www.bing.com/search?q=km%20alias",
)
PROPERTIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("plan", PLANS),
    ("Campaign Name", ("Spring Sale", "Black Friday 2023", "brand/launch", "100% off", "A&B")),
    ("city", ("London", "München", "São Paulo", "Zürich", "東京", "New York")),
    ("Billing Amount", ("9.99", "49", "199.00", "1000", "0.5")),
    ("gender", ("male", "female", "unspecified")),
    ("utm_source", ("google", "newsletter", "twitter", "partner+site")),
    ("Browser", ("Chrome", "Firefox", "Safari", "Edge")),
    ("seats", ("1", "5", "25", "100")),
)
_FIRST = ("bob", "alice", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_LAST = ("smith", "jones", "garcia", "müller", "kim", "nguyen", "o'brien", "rossi", "khan")
_DOMAINS = ("example.com", "gmail.com", "yahoo.co.uk", "corp.example.org", "mail.de")


class Shape(Protocol):
    """The signature every workload shape has."""

    def __call__(self, n_calls: int, seed: int = ..., tenants: int = ...) -> Iterator[Call]: ...


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _rng(shape: str, seed: int) -> random.Random:
    """Return the random source of one shape and seed (str seeds hash stably with SHA-512)."""
    return random.Random(f"identity-bench:{shape}:{seed}")


def _check(n_calls: int, tenants: int) -> None:
    if n_calls < 0:
        raise ValueError(f"n_calls must be >= 0, not {n_calls}")
    if tenants < 1:
        raise ValueError(f"tenants must be >= 1, not {tenants}")


def tenant_names(tenants: int) -> list[str]:
    """Return the API keys of `tenants` tenants: ``tenant-1``, ``tenant-2``...

    Parameters
    ----------
    tenants : int
        How many tenants.

    Returns
    -------
    list of str
        The keys, in order.
    """
    return [f"tenant-{i}" for i in range(1, tenants + 1)]


def _tenant_picker(rng: random.Random, tenants: int) -> Callable[[], str]:
    """Return a function choosing a tenant; tenant ``i`` gets weight ``1/i`` (a few big ones)."""
    names = tenant_names(tenants)
    if tenants == 1:
        only = names[0]
        return lambda: only
    cum = list(itertools.accumulate(1.0 / i for i in range(1, tenants + 1)))
    choices = rng.choices
    return lambda: choices(names, cum_weights=cum)[0]


class _Clock:
    """Timestamps: a global clock that advances 0-4 s a call, with floats and ``_d=1`` calls."""

    __slots__ = ("_backdate", "_p_d", "_p_float", "_rnd", "_step", "now")

    def __init__(
        self,
        rng: random.Random,
        *,
        p_d: float = 0.1,
        p_float: float = 0.03,
        max_step: int = 4,
        backdate: int = 86_400,
    ) -> None:
        self._rnd = rng.random
        self._p_d = p_d
        self._p_float = p_float
        self._step = max_step + 1
        self._backdate = backdate
        self.now = EPOCH

    def stamp(self) -> tuple[str, bool]:
        """Advance the clock and return ``(_t, whether the call carries _d=1)``."""
        rnd = self._rnd
        self.now += int(rnd() * self._step)
        t = self.now
        dated = rnd() < self._p_d
        if dated and rnd() < 0.5:
            t -= int(rnd() * self._backdate)
        if rnd() < self._p_float:
            frac = str(int(rnd() * 1000)).rjust(3, "0").rstrip("0") or "0"
            return f"{t}.{frac}", dated
        return str(t), dated


def _stamp(tenant: str, step: Step, clock: _Clock) -> Call:
    """Turn a person's step into a call of `tenant`, stamped by `clock`."""
    path, p, n, props = step
    call = {"_path": path, "_k": tenant, "_p": p}
    if n is not None:
        call["_n"] = n
    if props:
        call.update(props)
    t, dated = clock.stamp()
    call["_t"] = t
    if dated:
        call["_d"] = "1"
    return call


def _derived_id(salt: bytes, index: int) -> str:
    """Return a base64 identity that is a pure function of `salt` and `index` (never stored)."""
    digest = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=18, salt=salt).digest()
    return base64.b64encode(digest).decode("ascii")


class _Ids:
    """Fresh identities: anonymous base64 IDs, e-mail addresses and user ids, all unique."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._serial = itertools.count(1)

    def anon(self) -> str:
        """Return a JS-library-style anonymous ID: 28 chars of mixed-case base64 (``+/=``)."""
        return base64.b64encode(self._rng.getrandbits(160).to_bytes(20, "big")).decode("ascii")

    def salt(self) -> bytes:
        """Return a salt for `_derived_id`."""
        return self._rng.getrandbits(128).to_bytes(16, "big")

    def email(self) -> str:
        """Return a unique e-mail address, sometimes capitalised or with a ``+tag``."""
        rng = self._rng
        local = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{next(self._serial)}"
        r = rng.random()
        if r < 0.08:
            local += "+km"
        elif r < 0.16:
            local = local.capitalize()
        return f"{local}@{rng.choice(_DOMAINS)}"

    def user_id(self) -> str:
        """Return a unique user id: ``User 12345``, ``user_12345`` or a plain number."""
        n = next(self._serial)
        r = self._rng.random()
        if r < 0.4:
            return f"User {n}"
        if r < 0.7:
            return f"user_{n}"
        return str(100_000 + n)

    def named(self, p_email: float = 0.6) -> str:
        """Return an e-mail address (probability `p_email`) or a user id."""
        return self.email() if self._rng.random() < p_email else self.user_id()


class _Ctx:
    """State shared by the people of one stream (bounded: a few devices per tenant)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        p_odd: float = 0.0,
        cluster_cap: int = 1000,
        chain_max: int = 1000,
    ) -> None:
        self.rng = rng
        self.ids = _Ids(rng)
        self.p_odd = p_odd
        self.cluster_cap = cluster_cap
        self.chain_max = chain_max
        self._devices: dict[str, tuple[list[str], list[float]]] = {}

    def event(self, names: Sequence[str]) -> str:
        """Return an event name from `names`, or now and then an oddly written one."""
        rng = self.rng
        if self.p_odd and rng.random() < self.p_odd:
            return rng.choice(ODD_EVENTS)
        return rng.choice(names)

    def props(self, k_max: int, k_min: int = 0) -> dict[str, str] | None:
        """Return between `k_min` and `k_max` random properties (None for none)."""
        rng = self.rng
        k = k_min + int(rng.random() * (k_max - k_min + 1))
        if k == 0:
            return None
        return {name: rng.choice(values) for name, values in rng.sample(PROPERTIES, k)}

    def shared_device(self, tenant: str) -> str:
        """Return one of the few shared devices of `tenant` (the first ones most used)."""
        if tenant not in self._devices:
            count = self.rng.randint(3, 6)
            devices = [self.ids.anon() for _ in range(count)]
            self._devices[tenant] = (devices, list(itertools.accumulate(range(count, 0, -1))))
        devices, cum = self._devices[tenant]
        return self.rng.choices(devices, cum_weights=cum)[0]

    def junk(self) -> str:
        """Return a junk identity, weighted towards the common ones."""
        return self.rng.choices(JUNK_IDS, cum_weights=_JUNK_WEIGHTS)[0]


def _n(rng: random.Random, mean: float) -> int:
    """Return a random count >= 0 with the given mean (exponential, truncated)."""
    return int(rng.expovariate(1.0 / mean))


def _alias(rng: random.Random, a: str, b: str) -> Step:
    """Return an alias of `a` and `b`, the arguments swapped one time in four (order is moot)."""
    return ("a", b, a, None) if rng.random() < 0.25 else ("a", a, b, None)


# ---------------------------------------------------------------------------------------------
# People: each a generator of steps, interleaved by `_interleave`
# ---------------------------------------------------------------------------------------------

PersonFn: TypeAlias = Callable[[_Ctx, str], Iterator[Step]]


def _anonymous_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """Browse anonymously, then (60%) sign up: the JS library aliases anon -> named ID."""
    rng = ctx.rng
    anon = ctx.ids.anon()
    yield ("e", anon, "Visited Site", {"referrer": rng.choice(REFERRERS)})
    for _ in range(_n(rng, 2.5)):
        yield ("e", anon, ctx.event(ANON_EVENTS), ctx.props(1))
    if rng.random() < 0.4:
        return  # never signs up
    named = ctx.ids.named()
    yield ("a", anon, named, None)  # identify(): _p = the anonymous ID, _n = the named one
    yield ("e", named, "Signed Up", {"plan": rng.choice(PLANS)})
    if rng.random() < 0.6:
        yield ("s", named, None, ctx.props(2, 1))
    for _ in range(_n(rng, 3.0)):
        yield ("e", named, ctx.event(USER_EVENTS), ctx.props(1))
        if rng.random() < 0.1:
            yield ("a", anon, named, None)  # identify() again on a later page: same alias


def _multi_device_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """One user id, 2-8 anonymous devices (laptop, phone...) each aliased to it."""
    rng = ctx.rng
    uid = ctx.ids.named(p_email=0.3)
    for _ in range(min(8, 2 + _n(rng, 1.5))):
        device = ctx.ids.anon()
        for _ in range(1 + _n(rng, 1.5)):
            yield ("e", device, ctx.event(ANON_EVENTS), ctx.props(1))
        yield _alias(rng, device, uid)
        yield ("e", uid, "Logged In", None)
        for _ in range(_n(rng, 1.5)):
            yield ("e", uid, ctx.event(USER_EVENTS), ctx.props(1))
        if rng.random() < 0.3:
            yield ("s", uid, None, ctx.props(2, 1))


def _email_change_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """Identified by e-mail; changes it once (70%) or twice: alias old -> new."""
    rng = ctx.rng
    email = ctx.ids.email()
    if rng.random() < 0.5:
        anon = ctx.ids.anon()
        for _ in range(1 + _n(rng, 1.5)):
            yield ("e", anon, ctx.event(ANON_EVENTS), None)
        yield ("a", anon, email, None)
    yield ("e", email, "Signed Up", {"plan": rng.choice(PLANS)})
    yield ("s", email, None, {"email": email})
    for _ in range(_n(rng, 2.0)):
        yield ("e", email, ctx.event(USER_EVENTS), ctx.props(1))
    for _ in range(1 if rng.random() < 0.7 else 2):
        new = ctx.ids.email()
        yield ("a", email, new, None)
        yield ("s", new, None, {"email": new})
        if rng.random() < 0.3:
            yield ("e", email, ctx.event(USER_EVENTS), None)  # a stale session, old address
        for _ in range(1 + _n(rng, 2.0)):
            yield ("e", new, ctx.event(USER_EVENTS), ctx.props(1))
        email = new


def _shared_device_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """Signs in on one of a few shared devices (kiosk, family tablet): giant merged clusters."""
    rng = ctx.rng
    named = ctx.ids.named()
    device = ctx.shared_device(tenant) if rng.random() < 0.8 else ctx.ids.anon()
    for _ in range(1 + _n(rng, 1.5)):
        yield ("e", device, ctx.event(ANON_EVENTS), ctx.props(1))
    yield ("a", device, named, None)
    yield ("e", named, "Logged In", None)
    for _ in range(_n(rng, 2.0)):
        yield ("e", named, ctx.event(USER_EVENTS), ctx.props(1))
    if rng.random() < 0.2:
        yield ("s", named, None, ctx.props(2, 1))


def _power_law_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """A cluster of Pareto-distributed size (alpha 1.2): a root id plus derived members."""
    rng = ctx.rng
    size = min(ctx.cluster_cap, int(rng.paretovariate(1.2)))
    root = ctx.ids.named()
    salt = ctx.ids.salt()

    def member(i: int) -> str:
        return root if i == 0 else _derived_id(salt, i)

    yield ("e", root, "Signed Up", {"plan": rng.choice(PLANS)})
    for i in range(1, size):
        m = member(i)
        if rng.random() < 0.6:
            yield ("e", m, ctx.event(ANON_EVENTS), ctx.props(1))
        # Half star (devices of the root), half random tree (links between any two members).
        yield _alias(rng, m, member(0 if rng.random() < 0.5 else int(rng.random() * i)))
        if rng.random() < 0.2:
            yield ("e", root, ctx.event(USER_EVENTS), ctx.props(1))


def _chain_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """A long alias chain m0-m1-m2-... of derived identities, with a few events along it."""
    rng = ctx.rng
    salt = ctx.ids.salt()
    length = rng.randint(min(100, ctx.chain_max), ctx.chain_max)
    prev = _derived_id(salt, 0)
    yield ("e", prev, ctx.event(ANON_EVENTS), None)
    for i in range(1, length):
        cur = _derived_id(salt, i)
        yield _alias(rng, prev, cur)
        if rng.random() < 0.15:
            yield ("e", cur, ctx.event(USER_EVENTS), ctx.props(1))
        prev = cur


def _junk_person(ctx: _Ctx, tenant: str) -> Iterator[Step]:
    """A client that sends junk identities (``undefined``, ``null``, ``""``...) and aliases them."""
    rng = ctx.rng
    junk = ctx.junk()
    r = rng.random()
    if r < 0.3:
        # identify(undefined) in the JS library: alias anon -> junk, then track the junk ID.
        anon = ctx.ids.anon()
        yield ("e", anon, ctx.event(ANON_EVENTS), None)
        yield ("a", anon, junk, None)
        for _ in range(1 + _n(rng, 2.0)):
            yield ("e", junk, ctx.event(USER_EVENTS), ctx.props(1))
    elif r < 0.55:
        # A server-side integration with a missing user: events and properties on the junk ID.
        for _ in range(1 + _n(rng, 2.0)):
            yield ("e", junk, ctx.event(USER_EVENTS), ctx.props(1))
        if rng.random() < 0.5:
            yield ("s", junk, None, ctx.props(2, 1))
    elif r < 0.8:
        # A backend aliasing a real ID to whatever it had: alias(None, bob@...).
        named = ctx.ids.named()
        yield _alias(rng, junk, named)
        for _ in range(1 + _n(rng, 1.5)):
            yield ("e", named, ctx.event(USER_EVENTS), ctx.props(1))
    else:
        # A normal person whose named ID later gets aliased to junk (a logout bug).
        named = ctx.ids.named()
        yield ("e", named, ctx.event(USER_EVENTS), None)
        yield _alias(rng, named, junk)
        yield ("e", junk, "Logged Out", None)


def _interleave(
    ctx: _Ctx,
    pick_tenant: Callable[[], str],
    people: Sequence[tuple[PersonFn, float]],
    clock: _Clock,
    *,
    pool_size: int,
    p_new: float = 0.5,
) -> Iterator[Call]:
    """Yield calls forever, interleaving a bounded pool of active people.

    Each call comes from a random member of the pool; a person leaves the pool when it has no
    more steps, and a new one (of a type drawn from `people` by weight) joins while the pool is
    not full. Memory is bounded by `pool_size` people.
    """
    rng = ctx.rng
    rnd = rng.random
    kinds = [fn for fn, _ in people]
    cum = list(itertools.accumulate(w for _, w in people))
    pool: list[tuple[str, Iterator[Step]]] = []
    while True:
        if len(pool) < pool_size and (not pool or rnd() < p_new):
            tenant = pick_tenant()
            kind = kinds[0] if len(kinds) == 1 else rng.choices(kinds, cum_weights=cum)[0]
            pool.append((tenant, kind(ctx, tenant)))
        i = int(rnd() * len(pool))
        tenant, person = pool[i]
        step = next(person, None)
        if step is None:  # this person is done: replace it by the last one
            pool[i] = pool[-1]
            pool.pop()
            continue
        yield _stamp(tenant, step, clock)


def _with_retries(
    calls: Iterator[Call],
    rng: random.Random,
    *,
    rate: float,
    max_copies: int = 3,
    max_delay: int = 40,
    p_same_second: float = 0.0,
) -> Iterator[Call]:
    """Re-send a fraction `rate` of the calls 1-`max_copies` more times, up to `max_delay` later.

    A copy is the exact same call (same ``_t``, same ``_d`` or none), as the JS library sends
    when it retries; with probability `p_same_second` a copy instead has another fraction of the
    same second (still a duplicate for SPEC §8, which compares ``td`` to the second). Pending
    copies are bounded by about ``rate * max_copies * max_delay``.
    """
    rnd = rng.random
    pending: list[tuple[int, int, Call]] = []  # (due index, serial, call): a heap
    serial = itertools.count()
    index = 0
    for call in calls:
        while pending and pending[0][0] <= index:
            yield heapq.heappop(pending)[2]
            index += 1
        yield call
        index += 1
        if rnd() < rate:
            for _ in range(1 + int(rnd() * max_copies)):
                copy = dict(call)
                if p_same_second and rnd() < p_same_second:
                    whole = copy["_t"].partition(".")[0]
                    copy["_t"] = f"{whole}.{1 + int(rnd() * 999)}"
                due = index + int(rnd() * max_delay)
                heapq.heappush(pending, (due, next(serial), copy))


def _people_shape(
    name: str,
    n_calls: int,
    seed: int,
    tenants: int,
    people: Sequence[tuple[PersonFn, float]],
    *,
    pool_size: int = 256,
    p_new: float = 0.5,
    p_d: float = 0.1,
    retry_rate: float = 0.0,
    p_same_second: float = 0.0,
    p_odd: float = 0.0,
    cluster_cap: int = 1000,
    chain_max: int = 1000,
) -> Iterator[Call]:
    """Assemble a shape from people, a clock and optional retries; yield `n_calls` calls."""
    _check(n_calls, tenants)
    rng = _rng(name, seed)
    ctx = _Ctx(rng, p_odd=p_odd, cluster_cap=cluster_cap, chain_max=chain_max)
    clock = _Clock(rng, p_d=p_d)
    pick_tenant = _tenant_picker(rng, tenants)
    stream = _interleave(ctx, pick_tenant, people, clock, pool_size=pool_size, p_new=p_new)
    if retry_rate:
        stream = _with_retries(stream, rng, rate=retry_rate, p_same_second=p_same_second)
    return itertools.islice(stream, n_calls)


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------


def anonymous_identify(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """Anonymous visitors browse, then 60% sign up and get aliased to an e-mail or user id.

    Parameters
    ----------
    n_calls : int
        Exactly how many calls to yield.
    seed : int, optional
        The seed; the same seed gives the same calls.
    tenants : int, optional
        How many tenants (``tenant-1``...); tenant ``i`` gets a share proportional to ``1/i``.

    Returns
    -------
    iterator of dict
        The calls, generated lazily.
    """
    return _people_shape("anonymous_identify", n_calls, seed, tenants, [(_anonymous_person, 1.0)])


def multi_device(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """People with 2-8 anonymous devices each aliased to one user id (parameters: see above)."""
    return _people_shape("multi_device", n_calls, seed, tenants, [(_multi_device_person, 1.0)])


def email_change(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """People who change e-mail address (alias old -> new), 30% of them twice."""
    return _people_shape("email_change", n_calls, seed, tenants, [(_email_change_person, 1.0)])


def shared_device(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """3-6 shared devices per tenant aliased to many different people: big merged clusters."""
    return _people_shape(
        "shared_device",
        n_calls,
        seed,
        tenants,
        [(_shared_device_person, 0.7), (_anonymous_person, 0.3)],
    )


def long_chain(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """One long alias chain ``a0``-``a1``-``a2``-... per tenant, with a few events along it.

    About 85% of the calls are links ``(a{i}, a{i+1})`` in order (arguments swapped one time in
    four), the rest events on a recent chain member.
    """
    _check(n_calls, tenants)
    rng = _rng("long_chain", seed)
    clock = _Clock(rng)
    pick_tenant = _tenant_picker(rng, tenants)

    def stream() -> Iterator[Call]:
        rnd = rng.random
        heads = dict.fromkeys(tenant_names(tenants), 0)
        while True:
            tenant = pick_tenant()
            head = heads[tenant]
            step: Step
            if head and rnd() < 0.15:
                member = f"a{max(0, head - int(rnd() * 10))}"
                step = ("e", member, rng.choice(USER_EVENTS), None)
            else:
                step = _alias(rng, f"a{head}", f"a{head + 1}")
                heads[tenant] = head + 1
            yield _stamp(tenant, step, clock)

    return itertools.islice(stream(), n_calls)


def power_law(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """Cluster sizes drawn from a Pareto law (alpha 1.2, capped at ``n_calls // 8``).

    Most people are one or two identities; a few clusters are giant. The pool of active people
    is small (16) so that giant clusters are completed within the stream.
    """
    return _people_shape(
        "power_law",
        n_calls,
        seed,
        tenants,
        [(_power_law_person, 1.0)],
        pool_size=16,
        p_new=0.3,
        cluster_cap=max(2, n_calls // 8),
    )


def junk(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """Half ordinary visitors, half clients sending junk IDs (``undefined``, ``""``...)."""
    return _people_shape(
        "junk", n_calls, seed, tenants, [(_junk_person, 0.5), (_anonymous_person, 0.5)]
    )


def retries(n_calls: int, seed: int = 0, tenants: int = 1) -> Iterator[Call]:
    """Client retries: 20% of calls re-sent 1-3 times, exactly (same ``_t``, mostly no ``_d``).

    The 15% of calls with ``_d=1`` that get re-sent are exact duplicate events (a server-side
    job run twice); one copy in ten differs only in the fraction of the same second.
    """
    return _people_shape(
        "retries",
        n_calls,
        seed,
        tenants,
        [(_anonymous_person, 0.7), (_multi_device_person, 0.3)],
        p_d=0.15,
        retry_rate=0.2,
        p_same_second=0.1,
    )


def mixed(n_calls: int, seed: int = 0, tenants: int = 3) -> Iterator[Call]:
    """A realistic blend of all the shapes, over 3 tenants by default (the default shape).

    By weight: 40% anonymous visitors, 15% multi-device, 12% e-mail changes, 5% shared
    devices, 10% power-law clusters (up to ``n_calls // 50`` identities), 6% junk clients,
    and a few long chains (up to ``min(5000, n_calls // 100)`` links, ~2% of the calls); 3% of
    calls are retried and 2% of event names oddly written. (Weights count people: long-lived
    people also hold more of the pool of 512 active ones.)
    """
    chain_max = max(2, min(5000, n_calls // 100))
    return _people_shape(
        "mixed",
        n_calls,
        seed,
        tenants,
        [
            (_anonymous_person, 0.40),
            (_multi_device_person, 0.15),
            (_email_change_person, 0.12),
            (_shared_device_person, 0.05),
            (_power_law_person, 0.10),
            (_junk_person, 0.06),
            (_chain_person, 0.3 / chain_max),  # ~2% of the calls, whatever chain_max is
        ],
        pool_size=512,
        retry_rate=0.03,
        p_odd=0.02,
        cluster_cap=max(2, n_calls // 50),
        chain_max=chain_max,
    )


#: The 30 orders of two aliases, two events and one property set: one is drawn per block.
_ISSUE2_BLOCKS: tuple[tuple[str, ...], ...] = tuple(
    sorted(set(itertools.permutations(("a", "a", "e", "e", "s"))))
)
#: (name, value) pairs for the one property of an ``issue2`` event or property set.
_ISSUE2_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (name, value) for name, values in PROPERTIES for value in values
)
_MASK64 = (1 << 64) - 1


def _universe_size(n_calls: int, per_call: float, mentions: float) -> int:
    """Return how many identities to draw from so that ~`per_call` * `n_calls` are distinct.

    Drawing ``mentions * n_calls`` times uniformly from ``U`` identities hits
    ``U * (1 - exp(-mentions * n_calls / U))`` distinct ones; solve for ``U`` by bisection.
    """
    per_call = min(per_call, mentions * 0.999)
    lo, hi = 1e-9, 1e3  # x = n_calls / U; (1 - exp(-m x)) / x decreases from m to 0

    def f(x: float) -> float:
        return (1.0 - math.exp(-mentions * x)) / x

    for _ in range(100):
        mid = (lo + hi) / 2
        if f(mid) > per_call:
            lo = mid
        else:
            hi = mid
    return max(2, math.ceil(n_calls / lo))


def issue2(
    n_calls: int, seed: int = 0, tenants: int = 1, *, identities_per_call: float = 0.8
) -> Iterator[Call]:
    """The ingest-benchmark mix: 40% aliases, 40% events with one property, 20% property sets.

    Calls come in blocks of five (two aliases, two events, one set, in a random order), so the
    ratios are exact up to the last block. Identities are drawn uniformly from a universe sized
    so that about ``identities_per_call * n_calls`` distinct identities occur (60% anonymous
    base64 IDs, 30% e-mails, 10% user ids), derived from their index without being stored.
    With 0.4 alias links per call over ~1.1 identities per call the alias graph stays below
    the giant-component threshold: many small persons.

    Parameters
    ----------
    n_calls : int
        Exactly how many calls to yield.
    seed : int, optional
        The seed.
    tenants : int, optional
        How many tenants; each call picks one (tenant ``i`` with weight ``1/i``).
    identities_per_call : float, optional
        Distinct identities per call to aim at (at most 1.4, the identities a call names on
        average).

    Returns
    -------
    iterator of dict
        The calls, generated lazily.
    """
    _check(n_calls, tenants)
    if identities_per_call <= 0:
        raise ValueError(f"identities_per_call must be > 0, not {identities_per_call}")
    rng = _rng("issue2", seed)
    clock = _Clock(rng)
    pick_tenant = _tenant_picker(rng, tenants)
    universe = _universe_size(n_calls, identities_per_call, mentions=1.4)
    salt = rng.getrandbits(64)

    def identity(i: int) -> str:
        kind = i % 10
        x = ((i + 1) * 0x9E3779B97F4A7C15 ^ salt) & _MASK64  # a bijection of i
        if kind < 6:
            raw = x.to_bytes(8, "big") + (x * 0xD6E8FEB86659FD93 & 0xFFFFFFFF).to_bytes(4, "big")
            return b2a_base64(raw, newline=False).decode("ascii")
        if kind < 9:
            first, last = _FIRST[x % len(_FIRST)], _LAST[(x >> 8) % len(_LAST)]
            return f"{first}.{last}{i}@{_DOMAINS[(x >> 16) % len(_DOMAINS)]}"
        return f"User {i}"

    def stream() -> Iterator[Call]:
        rnd = rng.random
        stamp = clock.stamp
        n_blocks = len(_ISSUE2_BLOCKS)
        pairs = _ISSUE2_PAIRS
        n_pairs, n_events = len(pairs), len(USER_EVENTS)
        while True:
            for path in _ISSUE2_BLOCKS[int(rnd() * n_blocks)]:
                call = {"_path": path, "_k": pick_tenant()}
                if path == "a":
                    a = int(rnd() * universe)
                    b = int(rnd() * (universe - 1))
                    call["_p"] = identity(a)
                    call["_n"] = identity(b + 1 if b >= a else b)  # never a self-alias
                else:
                    call["_p"] = identity(int(rnd() * universe))
                    if path == "e":
                        call["_n"] = USER_EVENTS[int(rnd() * n_events)]
                    name, value = pairs[int(rnd() * n_pairs)]
                    call[name] = value
                t, dated = stamp()
                call["_t"] = t
                if dated:
                    call["_d"] = "1"
                yield call

    return itertools.islice(stream(), n_calls)


#: Every shape by name; `DEFAULT_SHAPE` is the one the CLI uses when none is given.
SHAPES: dict[str, Shape] = {
    "anonymous_identify": anonymous_identify,
    "multi_device": multi_device,
    "email_change": email_change,
    "shared_device": shared_device,
    "long_chain": long_chain,
    "power_law": power_law,
    "junk": junk,
    "retries": retries,
    "mixed": mixed,
    "issue2": issue2,
}
DEFAULT_SHAPE = "mixed"


def default_tenants(shape: str) -> int:
    """Return how many tenants the shape named `shape` uses when not told (1, or 3 for mixed).

    Parameters
    ----------
    shape : str
        A key of `SHAPES`.

    Returns
    -------
    int
        The default of the shape's ``tenants`` parameter.
    """
    default = inspect.signature(SHAPES[shape]).parameters["tenants"].default
    return int(default)


def generate(
    shape: str = DEFAULT_SHAPE, n_calls: int = 1000, seed: int = 0, tenants: int | None = None
) -> Iterator[Call]:
    """Return the calls of the shape named `shape`.

    Parameters
    ----------
    shape : str, optional
        A key of `SHAPES`.
    n_calls : int, optional
        Exactly how many calls.
    seed : int, optional
        The seed.
    tenants : int or None, optional
        How many tenants; None for the shape's default (1, or 3 for ``mixed``).

    Returns
    -------
    iterator of dict
        The calls, generated lazily.

    Raises
    ------
    ValueError
        If `shape` is not a known shape, or an argument is out of range.

    Examples
    --------
    >>> [c["_path"] for c in generate("long_chain", 3)]
    ['a', 'a', 'a']
    """
    try:
        fn = SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}") from None
    if tenants is None:
        return fn(n_calls, seed)
    return fn(n_calls, seed, tenants)


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


_SAFE = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch
#: What `quote_plus` does to each ASCII character that is not always safe.
_ASCII_QUOTES = {c: "+" if c == 32 else f"%{c:02X}" for c in range(128) if not _SAFE(chr(c))}


#: ``key=`` of the keys seen so far (bounded).
_QUOTED_KEYS: dict[str, str] = {}


def _quote(text: str) -> str:
    """Return ``quote_plus(text)``, faster for the common all-safe and ASCII strings."""
    if _SAFE(text):
        return text
    if text.isascii():
        return text.translate(_ASCII_QUOTES)
    return quote_plus(text)


def _km_time(t: str) -> int:
    """Return ``_t`` as whole seconds (fractions dropped, as SPEC §3 says)."""
    try:
        return int(t)
    except ValueError:
        return int(float(t))


def to_url(call: Mapping[str, str]) -> str:
    """Return `call` as a beacon path with a query string.

    Parameters
    ----------
    call : mapping of str to str
        A call with a ``"_path"`` key.

    Returns
    -------
    str
        ``/<path>?<query>``, the parameters in the call's order, encoded like
        `urllib.parse.urlencode` (spaces as ``+``, everything else percent-encoded as UTF-8).

    Examples
    --------
    >>> to_url({"_path": "e", "_k": "tenant-1", "_p": "bob", "_n": "Signed Up", "plan": "pro"})
    '/e?_k=tenant-1&_p=bob&_n=Signed+Up&plan=pro'
    """
    parts: list[str] = []
    append = parts.append
    keys = _QUOTED_KEYS
    safe, table = _SAFE, _ASCII_QUOTES
    for key, value in call.items():
        quoted_key = keys.get(key)
        if quoted_key is None:
            if key == "_path":
                continue
            quoted_key = f"{_quote(key)}="
            if len(keys) < 4096:
                keys[key] = quoted_key
        if safe(value) is None:  # inline `_quote`: this loop is the writer's hot path
            value = value.translate(table) if value.isascii() else quote_plus(value)
        append(quoted_key + value)
    return f"/{call['_path']}?" + "&".join(parts)


def to_km(call: Mapping[str, str], include_key: bool = False) -> str:
    """Return `call` as one line of a Kissmetrics export / JSON import file.

    Events are ``{"_p", "_t", "_n", props...}``, aliases ``{"_p", "_p2", "_t"}`` and property
    sets ``{"_p", "_t", props...}``, with ``_t`` an integer (fractions dropped). An export holds
    the time the event was recorded, so a call without ``_d=1`` loses the distinction between
    sent and applied time here; ``_d`` itself is not written.

    Parameters
    ----------
    call : mapping of str to str
        A call with a ``"_path"`` key.
    include_key : bool, optional
        Write the tenant as ``"_k"`` first (an export is per tenant and has no key).

    Returns
    -------
    str
        A JSON object, UTF-8 text not escaped, without a newline.

    Examples
    --------
    >>> to_km({"_path": "a", "_k": "t", "_p": "anon", "_n": "bob", "_t": "1700000000.5"})
    '{"_p": "anon", "_p2": "bob", "_t": 1700000000}'
    """
    path = call["_path"]
    out: dict[str, str | int] = {}
    if include_key:
        out["_k"] = call["_k"]
    out["_p"] = call["_p"]
    if path == "a":
        out["_p2"] = call["_n"]
    if "_t" in call:
        out["_t"] = _km_time(call["_t"])
    if path == "e":
        out["_n"] = call["_n"]
    for key, value in call.items():
        if key not in RESERVED:
            out[key] = value
    return json.dumps(out, ensure_ascii=False)


FORMATS: dict[str, Callable[[Mapping[str, str]], str]] = {"url": to_url, "km": to_km}


def _km_with_key(call: Mapping[str, str]) -> str:
    return to_km(call, include_key=True)


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[IO[str]]:
    """Open `path` for writing UTF-8 text, gzipped (reproducibly: no name, mtime 0) if .gz."""
    if not path.endswith(".gz"):
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        return
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as fh,
    ):
        yield fh


def _write_lines(calls: Iterable[Mapping[str, str]], fh: IO[str], fmt: Callable[..., str]) -> int:
    count = 0
    it = iter(calls)
    while chunk := list(itertools.islice(it, 8192)):
        fh.write("\n".join(map(fmt, chunk)))
        fh.write("\n")
        count += len(chunk)
    return count


def write(
    calls: Iterable[Mapping[str, str]],
    path_or_file: str | os.PathLike[str] | IO[str],
    fmt: str = "url",
    *,
    include_key: bool = False,
) -> int:
    """Write `calls` one a line, streaming, and return how many were written.

    Parameters
    ----------
    calls : iterable of mappings
        The calls (consumed lazily, 8,192 at a time).
    path_or_file : str, path-like or text file
        A path (gzip-compressed when it ends in ``.gz``, reproducibly) or an open text file,
        which is left open.
    fmt : {"url", "km"}, optional
        `to_url` lines or `to_km` lines.
    include_key : bool, optional
        With ``fmt="km"``, write each call's tenant as ``"_k"``.

    Returns
    -------
    int
        The number of lines written.

    Raises
    ------
    ValueError
        If `fmt` is unknown.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    formatter = _km_with_key if fmt == "km" and include_key else FORMATS[fmt]
    if isinstance(path_or_file, (str, os.PathLike)):
        with _open_text(os.fspath(path_or_file)) as fh:
            return _write_lines(calls, fh, formatter)
    return _write_lines(calls, path_or_file, formatter)
