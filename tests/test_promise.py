"""The order-independence contract (SPEC §7), held against a naive reference model.

Random call collections — several tenants, chains, cycles, repeats, junk identities, bad
calls, property conflicts and ties on time — are ingested in any permutation, any batch
split, with close and reopen in between, and must give identical observable state; the
partition, person ids, Customer IDs, current property values and deduplicated events must
equal what a plain networkx model computes.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from itertools import pairwise
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity import Engine
from identity.calls import Call, from_params

EXAMPLES = int(os.environ.get("IDENTITY_HYPOTHESIS_EXAMPLES", "500"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TENANTS = ["t1", "t2"]
IDENTITIES = ["a", "b", "c", "d", "e", "A", "é", "undefined", "None", "0", "x" * 256]
EVENTS = ["Paid", "paid", "Signed Up", "signed,up", ""]
PROPERTY_NAMES = ["Plan", "plan", "color", "a:b", ""]
VALUES = ["1", "2", "pro", ""]

times = st.integers(min_value=0, max_value=6)


@st.composite
def a_call(
    draw: st.DrawFn,
    identities: list[str] = IDENTITIES,
    events: list[str] = EVENTS,
    stamps: st.SearchStrategy[int] = times,
    names: list[str] = PROPERTY_NAMES,
    values: list[str] = VALUES,
) -> Call:
    kind = draw(st.sampled_from(["e", "e", "s", "a", "a", "a", "x"]))
    params: list[tuple[str, str]] = []
    if draw(st.integers(0, 20)):
        params.append(("_k", draw(st.sampled_from(TENANTS))))
    params.append(("_p", draw(st.sampled_from(identities))))
    if kind == "e":
        params.append(("_n", draw(st.sampled_from(events))))
    elif kind == "a":
        params.append(("_n", draw(st.sampled_from(identities))))
    stamp = draw(st.one_of(st.none(), stamps.map(str), st.just("1.5"), st.just("soon")))
    if stamp is not None:
        params.append(("_t", stamp))
    if draw(st.booleans()):
        params.append(("_d", draw(st.sampled_from(["1", "0"]))))
    if kind in "es":
        for _ in range(draw(st.integers(0, 2))):
            params.append((draw(st.sampled_from(names)), draw(st.sampled_from(values))))
    received = draw(stamps)
    return from_params(kind, params, received=received, source="test")


def _variant(text: str, how: str) -> str:
    return {"upper": text.upper(), "lower": text.lower(), "swap": text.swapcase()}.get(how, text)


@st.composite
def an_echo(draw: st.DrawFn, call: Call, stamps: st.SearchStrategy[int]) -> Call:
    """Another copy of `call` that collides with it: a duplicate, or nearly one.

    The event and property names in another case, another receive time (so another event
    time when ``_d`` is not 1, the same dedupe time when ``_t`` is a number), ``_d``
    added or dropped, sometimes other property values (a tie on ``t`` between two values),
    sometimes the other tenant (the same identity in two tenants).
    """
    how = draw(st.sampled_from(["same", "upper", "lower", "swap"]), label="case")
    received = draw(st.one_of(st.just(call.received), stamps), label="received")
    other_tenant = draw(st.integers(0, 4), label="other tenant") == 0
    toggle_d = draw(st.integers(0, 3), label="toggle _d") == 0
    revalue = draw(st.integers(0, 2), label="other value") == 0
    params: list[tuple[str, str]] = []
    for key, value in call.params:
        if key == "_k" and other_tenant:
            value = TENANTS[1 - TENANTS.index(value)] if value in TENANTS else value
        elif key == "_n" and call.kind == "e":
            value = _variant(value, how)
        elif key == "_d" and toggle_d:
            continue
        elif not key.startswith("_"):
            key = _variant(key, how)
            value = value + "0" if revalue else value
        params.append((key, value))
    if toggle_d and "_d" not in dict(call.params):
        params.append(("_d", "1"))
    return from_params(call.kind, params, received=received, source="echo")


@st.composite
def colliding_collections(draw: st.DrawFn) -> list[Call]:
    """Few identities, case variants of one event name, ties on time, echoes of calls.

    Built so that nearly every collection holds calls that collide: duplicate events and
    property sets (exact or in another case), ties on ``t`` between different values, the
    same identity in both tenants; the permutation and batch split of the test then put
    the copies of a pair in different batches.
    """
    identities = draw(
        st.lists(st.sampled_from(IDENTITIES), min_size=1, max_size=3, unique=True),
        label="identities",
    )
    event = draw(st.sampled_from(["Signed Up", "Paid"]), label="event")
    events = [event, event.lower(), event.upper(), event.swapcase()]
    stamps = st.integers(min_value=0, max_value=2)
    calls = a_call(identities, events, stamps, ["Plan", "plan", "PLAN"], ["1", "2"])
    base = draw(st.lists(calls, min_size=1, max_size=12), label="calls")
    picks = draw(st.lists(st.sampled_from(base), max_size=10), label="echoed")
    return base + [draw(an_echo(call, stamps), label="echo") for call in picks]


wide_collections = st.lists(a_call(), min_size=1, max_size=25)
#: two draws in three collide by construction
collections = st.one_of(wide_collections, colliding_collections(), colliding_collections())


def observe(engine: Engine) -> dict[str, Any]:
    """Everything SPEC §7 calls observable state, with counters of repeats left out."""
    state: dict[str, Any] = {}
    for tenant in engine.tenants():
        people = list(engine.people(tenant))
        state[tenant] = {
            "people": people,
            "as_of": [list(engine.people(tenant, as_of=t)) for t in (1, 3)],
            "detail": {
                p.id: (
                    engine.events(tenant, p.id),
                    engine.property_history(tenant, p.id),
                    engine.first_properties(tenant, p.id),
                    engine.person(tenant, p.id, as_of=2)
                    if _known(engine, tenant, p.id, 2)
                    else None,
                )
                for p in people
            },
        }
    state["quarantine"] = sorted({(q.raw, q.reason, q.received) for q in engine.quarantine()})
    return state


def _known(engine: Engine, tenant: str, identity: str, as_of: int) -> bool:
    return any(identity in p.identities for p in engine.people(tenant, as_of=as_of))


def ingest_all(calls: list[Call], batches: list[int], reopen_every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.db")
        engine = Engine(path, durable=False)
        position, batch_no = 0, 0
        sizes = iter(batches)
        while position < len(calls):
            size = next(sizes, len(calls))
            engine.ingest(calls[position : position + size], batch_size=max(size, 1))
            position += size
            batch_no += 1
            if reopen_every and batch_no % reopen_every == 0:
                engine.close()
                engine = Engine(path, durable=False)
        engine.check()
        state = observe(engine)
        engine.close()
    return state


@SETTINGS
@given(
    calls=collections,
    data=st.data(),
)
def test_any_order_repeats_batches_and_reopens_give_the_same_state(
    calls: list[Call], data: st.DataObject
) -> None:
    baseline = ingest_all(calls, [len(calls)], 0)
    shuffled = data.draw(st.permutations(calls), label="permutation")
    repeats = data.draw(st.lists(st.sampled_from(calls), max_size=8), label="repeats")
    mixed = data.draw(st.permutations(shuffled + repeats), label="with repeats")
    batches = data.draw(st.lists(st.integers(1, 7), max_size=10), label="batches")
    reopen = data.draw(st.integers(0, 3), label="reopen every")
    assert ingest_all(mixed, batches, reopen) == baseline


def reference(calls: list[Call]) -> dict[str, Any]:
    """A deliberately naive model: networkx components over accepted alias links."""
    graphs: dict[str, nx.Graph] = defaultdict(nx.Graph)
    customers: dict[str, set[str]] = defaultdict(set)
    records: dict[str, dict[tuple[str, str, str, int], int]] = defaultdict(dict)
    events: dict[str, set[tuple[str, str, int, tuple[tuple[str, str], ...]]]] = defaultdict(set)
    for call in calls:
        if not call.ok:
            continue
        tenant, person = call.tenant or "", call.identity or ""
        graph = graphs[tenant]
        graph.add_node(person)
        if call.kind == "a":
            graph.add_edge(person, call.name)
            continue
        customers[tenant].add(person)
        for key, _, value in call.properties:
            record = (person, key, value, call.td)
            records[tenant][record] = min(records[tenant].get(record, call.t), call.t)
        if call.kind == "e":
            props = tuple((k, v) for k, _, v in call.properties)
            events[tenant].add((person, (call.name or "").casefold(), call.td, props))
    model: dict[str, Any] = {}
    for tenant, graph in graphs.items():
        people = {}
        for component in nx.connected_components(graph):
            current: dict[str, tuple[int, str]] = {}
            for (person, key, value, _), t in records[tenant].items():
                if person in component and (key not in current or (t, value) > current[key]):
                    current[key] = (t, value)
            people[min(component)] = (
                tuple(sorted(component)),
                tuple(sorted(component & customers[tenant])),
                sorted(v for _, v in current.values()),
                sum(1 for e in events[tenant] if e[0] in component),
            )
        model[tenant] = people
    return model


@SETTINGS
@given(calls=collections)
def test_partition_customer_ids_properties_and_events_match_the_reference(
    calls: list[Call],
) -> None:
    engine = Engine(durable=False)
    engine.ingest(calls, batch_size=4)
    actual = {
        tenant: {
            p.id: (p.identities, p.customer_ids, sorted(v for _, v in p.properties), p.events)
            for p in engine.people(tenant)
        }
        for tenant in engine.tenants()
    }
    assert actual == reference(calls)


@settings(max_examples=max(EXAMPLES // 5, 20), deadline=None)
@given(names=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=2, max_size=4, unique=True))
def test_the_same_identity_in_two_tenants_never_meets(names: list[str]) -> None:
    engine = Engine(durable=False)
    for x, y in pairwise(names):
        engine.alias("t1", x, y, t=1)
    engine.set("t2", names[0], {"plan": "t2-only"}, t=1)
    engine.record("t2", names[-1], "Paid", t=1)
    t2 = list(engine.people("t2"))
    assert all(len(p.identities) == 1 for p in t2)
    assert all(p.properties == () for p in engine.people("t1"))
    assert all(p.events == 0 for p in engine.people("t1"))
    assert engine.counts("t1")["links"] >= 1
    assert engine.counts("t2")["links"] == 0
