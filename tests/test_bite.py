"""Direct tests where the promise is (issue 8, deliver 6).

Each test here kills a plausible one-line mistake that the rest of the suite let through
(or caught only by chance): the mutation it kills is named in its docstring. They pin the
rules of SPEC §6-§9 on the smallest inputs that tell a right engine from a wrong one, in
every arrival order and batch split, so that a mistake shows on every run, not only when
a property test happens to draw the colliding pair.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import pytest

from identity import Engine, UnknownIdentityError
from identity.calls import MAX_JSON_DEPTH, from_params, name_key, parse_km_line


def _persons(engine: Engine) -> dict[int, int]:
    return dict(engine.store.conn.execute("SELECT id, person FROM identities"))


def _ingest_in_batches(engine: Engine, batches: list[list[str]], received: int = 50) -> None:
    for batch in batches:
        engine.ingest(batch, received=received)


# -- (a) a merge relabels the smaller side: rows changed, not statements ------------------


@pytest.mark.parametrize("small_first", [True, False])
def test_a_merge_rewrites_only_the_smaller_persons_rows(small_first: bool) -> None:
    """Kills: ``merge picks rx, ry by size`` swapped (the larger side relabelled).

    The partition is right either way; only the number of identity rows whose ``person``
    changes tells, and a trace of statements (one UPDATE either way) does not.
    """
    engine = Engine(durable=False)
    engine.ingest([f"/a?_k=K&_p=big00&_n=big{i:02}" for i in range(1, 40)], received=1)
    engine.ingest(["/a?_k=K&_p=small1&_n=small2", "/a?_k=K&_p=small2&_n=small3"], received=1)
    before = _persons(engine)
    changes = engine.store.conn.total_changes
    if small_first:
        engine.alias("K", "small3", "big17", t=2)
    else:
        engine.alias("K", "big17", "small3", t=2)
    rows_written = engine.store.conn.total_changes - changes
    after = _persons(engine)
    moved = {row for row in before if before[row] != after[row]}
    small = {row for row, person in before.items() if person == before[max(before)]}
    assert moved == small
    assert len(moved) == 3
    # 3 relabelled identities, a person row deleted and one updated, the link, the
    # generation: never a rewrite of the 40 identities of the larger side
    assert rows_written < 10
    assert engine.person_of("K", "small1") == "big00"
    engine.check()


def test_a_merge_of_equal_sizes_relabels_one_side_only() -> None:
    """Kills: ``merged size = max`` instead of the sum (the next merge then picks wrong)."""
    engine = Engine(durable=False)
    engine.ingest([f"/a?_k=K&_p=x0&_n=x{i}" for i in range(1, 6)], received=1)  # 6 rows
    engine.ingest([f"/a?_k=K&_p=y0&_n=y{i}" for i in range(1, 4)], received=1)  # 4 rows
    engine.ingest(["/a?_k=K&_p=y0&_n=w0", "/a?_k=K&_p=w0&_n=w1"], received=1)  # y: 6 rows
    engine.ingest(["/a?_k=K&_p=z0&_n=z1"], received=1)  # 2 rows
    engine.alias("K", "z1", "y2", t=2)  # y: 8 rows, z relabelled
    before = _persons(engine)
    engine.alias("K", "x3", "w1", t=3)  # x (6) joins y (8): x's 6 rows move, not y's 8
    after = _persons(engine)
    assert sum(before[row] != after[row] for row in before) == 6
    assert engine.counts("K")["people"] == 1
    engine.check()


# -- (b) a duplicate event in a later batch keeps the smallest (t, name, properties) -------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/e?_k=K&_p=b&_n=paid&_t=7", "/e?_k=K&_p=b&_n=Paid&_t=7"),
        ("/e?_k=K&_p=b&_n=Paid&_t=7", "/e?_k=K&_p=b&_n=paid&_t=7"),
        ("/e?_k=K&_p=b&_n=Paid&amount=5&_t=7", "/e?_k=K&_p=b&_n=paid&Amount=5&_t=7"),
        ("/e?_k=K&_p=b&_n=paid&Amount=5&_t=7", "/e?_k=K&_p=b&_n=Paid&amount=5&_t=7"),
    ],
)
def test_a_duplicate_event_in_a_later_batch_keeps_the_same_survivor(
    first: str, second: str
) -> None:
    """Kills: ``_UPSERT_EVENT`` keeping the stored name/properties (first arrival wins).

    The same two copies in one batch, in two batches, and in both orders must leave the
    same event: the one with the smallest ``(t, name, properties)``.
    """
    results = []
    for batches in ([[first, second]], [[second, first]], [[first], [second]], [[second], [first]]):
        engine = Engine(durable=False)
        _ingest_in_batches(engine, batches)
        (event,) = engine.events("K", "b")
        assert event.sent == 2
        results.append((event.name, event.t, event.properties))
    assert len(set(results)) == 1
    assert results[0][0] == "Paid"  # "P" < "p": the smallest display name survives


@pytest.mark.parametrize("later_first", [True, False])
def test_a_duplicate_event_keeps_the_earliest_time_across_batches(later_first: bool) -> None:
    """Kills: ``t = max(t, excluded.t)`` and in-batch ``>`` for the surviving copy.

    A client retry (same ``_t``, no ``_d``) received at 40 and at 90 is one event, at 40.
    """
    call = "/e?_k=K&_p=b&_n=Paid&_t=7"
    order = [(call, 90), (call, 40)] if later_first else [(call, 40), (call, 90)]
    split, together = Engine(durable=False), Engine(durable=False)
    for text, received in order:
        split.ingest([text], received=received)
    together.ingest(
        [from_params("e", [("_k", "K"), ("_p", "b"), ("_n", "Paid"), ("_t", "7")], received=r)
         for _, r in order]
    )  # fmt: skip
    assert [e.t for e in split.events("K", "b")] == [40]
    assert split.events("K", "b") == together.events("K", "b")
    assert split.person("K", "b").customer_ids == ("b",)
    assert split.events("K", "b", as_of=40) == split.events("K", "b")


def test_event_copies_are_counted_across_batches() -> None:
    """Kills: ``sent = excluded.sent`` (repeats of a later batch replace the count)."""
    engine = Engine(durable=False)
    for _ in range(3):
        engine.ingest(["/e?_k=K&_p=b&_n=Paid&_t=7"] * 2, received=9)
    (event,) = engine.events("K", "b")
    assert event.sent == 6
    assert engine.counts("K")["events_received"] == 6


# -- (c) ties on t break on the value, then the name, never on storage order -------------


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_property_ties_on_time_break_on_value_not_storage_order(order: tuple[int, ...]) -> None:
    """Kills: ties on ``t`` broken by the name before the value, ``first_properties``
    returning the last value, ``person(as_of)`` dropping records at ``t == as_of``.

    One batch per call, in every arrival order. (A tie-break on ``t`` alone is killed by
    the 30-value test below: rows come back in index order, so three rows can hide it.)
    """
    sets = [("a", "Plan", "b"), ("b", "plan", "a"), ("a", "PLAN", "a")]
    engine = Engine(durable=False)
    engine.alias("K", "a", "b", t=1)
    for i in order:
        identity, name, value = sets[i]
        engine.set("K", identity, {name: value}, t=5)
    # (t, value, name): the greatest value "b" wins; the first value is the smallest
    assert engine.properties("K", "a") == {"Plan": "b"}
    assert engine.first_properties("K", "b") == {"PLAN": "a"}
    assert [p.properties for p in engine.people("K")] == [(("Plan", "b"),)]
    assert engine.person("K", "b", as_of=5).properties == (("Plan", "b"),)
    history = engine.property_history("K", "a")
    assert [(r.identity, r.name, r.value) for r in history] == [
        ("a", "PLAN", "a"),
        ("b", "plan", "a"),
        ("a", "Plan", "b"),
    ]


@pytest.mark.parametrize("order", list(permutations(range(2))))
def test_same_time_and_value_break_on_the_name(order: tuple[int, ...]) -> None:
    """Kills: a tie on ``(t, value)`` broken by storage order (the shown name differs)."""
    sets = [("a", {"plan": "pro"}), ("b", {"Plan": "pro"})]
    engine = Engine(durable=False)
    engine.alias("K", "a", "b", t=1)
    for i in order:
        engine.set("K", sets[i][0], sets[i][1], t=5)
    assert engine.properties("K", "a") == {"plan": "pro"}  # "plan" > "Plan"
    assert [p.properties for p in engine.people("K")] == [(("plan", "pro"),)]


def test_a_duplicate_property_record_keeps_the_earliest_time_and_smallest_name() -> None:
    """Kills: ``_UPSERT_PROPERTY`` / the in-batch choice keeping the latest or largest."""
    # _t without _d: the dedupe time is 7, the event time the receive time
    calls = [("/s?_k=K&_p=a&plan=pro&_t=7", 90), ("/s?_k=K&_p=a&Plan=pro&_t=7", 40)]
    seen = set()
    for batches in (calls, calls[::-1]):
        for together in (True, False):
            engine = Engine(durable=False)
            if together:
                engine.ingest(
                    [from_params("s", [("_k", "K"), ("_p", "a"), *_pairs(q)], received=r)
                     for q, r in batches]
                )  # fmt: skip
            else:
                for q, r in batches:
                    engine.ingest([q], received=r)
            (record,) = engine.property_history("K", "a")
            seen.add((record.name, record.value, record.t))
            assert record.sent == 2
    assert seen == {("Plan", "pro", 40)}


def _pairs(query: str) -> list[tuple[str, str]]:
    params = [tuple(p.split("=", 1)) for p in query.split("?", 1)[1].split("&")]
    return [(k, v) for k, v in params if k not in ("_k", "_p")]


# -- (d) every read is per tenant ----------------------------------------------------------


def _two_tenants(engine: Engine) -> None:
    engine.alias("t1", "bob", "amy", t=1)
    engine.record("t1", "bob", "Paid", {"plan": "t1"}, t=2)
    engine.record("t2", "bob", "Viewed", {"plan": "t2"}, t=3)


def test_reads_of_an_identity_never_see_another_tenant() -> None:
    """Kills: ``Store.identity`` without ``i.tenant = ?`` (person, events, properties...)."""
    engine = Engine(durable=False)
    _two_tenants(engine)
    assert engine.person_of("t2", "bob") == "bob"
    assert engine.person_of("t1", "bob") == "amy"
    person = engine.person("t2", "bob")
    assert (person.id, person.identities, person.customer_ids) == ("bob", ("bob",), ("bob",))
    assert person.properties == (("plan", "t2"),)
    assert [e.name for e in engine.events("t2", "bob")] == ["Viewed"]
    assert [r.value for r in engine.property_history("t2", "bob")] == ["t2"]
    assert engine.properties("t2", "bob", as_of=10) == {"plan": "t2"}
    assert not engine.same_person("t2", "bob", "amy")
    assert engine.same_person("t1", "bob", "amy")
    with pytest.raises(UnknownIdentityError):
        engine.person("t2", "amy")
    with pytest.raises(UnknownIdentityError):
        engine.person("t3", "bob")


def test_lists_of_people_never_see_another_tenant() -> None:
    """Kills: ``tenant_members`` / ``tenant_properties`` / ``tenant_event_counts`` unfiltered."""
    engine = Engine(durable=False)
    _two_tenants(engine)
    assert [(p.id, p.identities, p.properties, p.events) for p in engine.people("t2")] == [
        ("bob", ("bob",), (("plan", "t2"),), 1)
    ]
    assert [(p.id, p.identities, p.properties, p.events) for p in engine.people("t1")] == [
        ("amy", ("amy", "bob"), (("plan", "t1"),), 1)
    ]
    assert [p.identities for p in engine.people("t2", as_of=10)] == [("bob",)]
    assert engine.counts("t2") == {
        "identities": 1, "people": 1, "customer_ids": 1, "links": 0, "events": 1,
        "events_received": 1, "property_records": 1, "quarantined": 0,
    }  # fmt: skip


def test_the_write_path_looks_identities_up_per_tenant(tmp_path: Path) -> None:
    """Kills: ``find_ids`` without ``tenant = ?`` (a reopened engine has no cache)."""
    path = tmp_path / "two.db"
    with Engine(path, durable=False) as engine:
        engine.alias("t1", "bob", "amy", t=1)
    with Engine(path, durable=False) as engine:
        engine.record("t2", "bob", "Paid", t=2)
        engine.alias("t2", "bob", "cy", t=3)
        assert engine.person("t2", "bob").identities == ("bob", "cy")
        assert engine.person("t1", "bob").identities == ("amy", "bob")
        assert engine.person("t1", "bob").customer_ids == ()
        assert engine.counts("t2")["identities"] == 2
        engine.check()


# -- identity times, Customer IDs and as_of bounds --------------------------------------


def test_an_identity_first_only_aliased_becomes_a_customer_id_later(tmp_path: Path) -> None:
    """Kills: ``customer_since`` never set on a stored row that had none (NULL)."""
    path = tmp_path / "c.db"
    with Engine(path, durable=False) as engine:
        engine.alias("K", "a", "b", t=1)
    for reopen in (False, True):
        with Engine(path, durable=False) as engine:
            if not reopen:
                engine.set("K", "b", {"x": "1"}, t=5)
            assert engine.customer_ids("K", "a") == ["b"]
            assert engine.customer_ids("K", "a", as_of=4) == []
            assert engine.customer_ids("K", "a", as_of=5) == ["b"]


def test_first_seen_and_customer_since_are_the_earliest_in_any_batch_split() -> None:
    """Kills: identity times raised instead of lowered, in a batch or across batches."""
    calls = [
        "/s?_k=K&_p=a&x=1&_t=9&_d=1",
        "/s?_k=K&_p=a&x=2&_t=3&_d=1",
        "/a?_k=K&_p=a&_n=b&_t=1&_d=1",
        "/e?_k=K&_p=b&_n=Paid&_t=6&_d=1",
        "/e?_k=K&_p=b&_n=Paid&_t=4&_d=1",
    ]
    for batch_size in (1, 2, 5):
        for ordered in (calls, calls[::-1]):
            engine = Engine(durable=False)
            engine.ingest(ordered, batch_size=batch_size, received=50)
            assert engine.person("K", "a", as_of=1).identities == ("a", "b")
            assert engine.customer_ids("K", "a", as_of=2) == []
            assert engine.customer_ids("K", "a", as_of=3) == ["a"]
            assert engine.customer_ids("K", "a", as_of=4) == ["a", "b"]
            engine.check()


def test_as_of_includes_calls_at_exactly_that_time() -> None:
    """Kills: every ``t <= as_of`` written ``t < as_of`` (links, identities, events, sets)."""
    engine = Engine(durable=False)
    engine.alias("K", "a", "b", t=5)
    engine.alias("K", "b", "c", t=6)
    engine.record("K", "c", "Paid", {"plan": "pro"}, t=6)
    assert engine.person("K", "a", as_of=5).identities == ("a", "b")
    assert engine.person("K", "a", as_of=6).identities == ("a", "b", "c")
    assert [p.identities for p in engine.people("K", as_of=5)] == [("a", "b")]
    assert [p.id for p in engine.people("K", as_of=6)] == ["a"]
    assert len(engine.events("K", "a", as_of=6)) == 1
    assert engine.properties("K", "c", as_of=6) == {"plan": "pro"}
    assert engine.person("K", "c", as_of=6).properties == (("plan", "pro"),)
    assert engine.customer_ids("K", "c", as_of=6) == ["c"]


def test_as_of_person_ids_are_the_smallest_member_then() -> None:
    """Kills: the ``as_of`` person id taken from today's person or the largest member."""
    engine = Engine(durable=False)
    engine.alias("K", "m", "z", t=5)
    engine.alias("K", "z", "a", t=9)
    assert engine.person("K", "z", as_of=6).id == "m"
    assert [p.id for p in engine.people("K", as_of=6)] == ["m"]
    assert engine.person("K", "z").id == "a"


def test_a_merged_person_takes_the_smallest_display_id_in_any_order() -> None:
    """Kills: the display id of a merge taken from the larger or the absorbing side."""
    for first, second in (("m", "b"), ("b", "m")):
        engine = Engine(durable=False)
        engine.ingest([f"/a?_k=K&_p={first}&_n={first}1", f"/a?_k=K&_p={first}&_n={first}2"])
        engine.ingest([f"/a?_k=K&_p={second}&_n={second}1"])
        engine.alias("K", f"{first}2", f"{second}1")
        assert engine.person_of("K", f"{first}2") == engine.person_of("K", f"{second}1") == "b"
        assert [p.id for p in engine.people("K")] == ["b"]
        engine.check()


# -- calls: the rules at their edges ---------------------------------------------------


def test_lengths_at_the_limit_are_accepted() -> None:
    """Kills: ``>`` written ``>=`` on the identity length and the value length."""
    engine = Engine(durable=False)
    assert engine.record("K", "p" * 255, "e" * 255, {"n" * 255: "v" * 8192}).status == "applied"
    assert engine.alias("K", "p" * 255, "q" * 255).status == "applied"
    assert engine.record("K", "p" * 256, "e").reason == "person_too_long"
    assert engine.set("K", "p", {"n": "v" * 8193}).reason == "value_too_long"


def test_time_zero_is_a_valid_time() -> None:
    """Kills: ``MIN_TIME < number`` (the epoch refused)."""
    engine = Engine(durable=False)
    assert engine.record("K", "a", "Paid", t=0).status == "applied"
    assert [e.t for e in engine.events("K", "a")] == [0]


def test_repeated_property_in_one_call_keeps_the_last_value() -> None:
    """Kills: the first of a repeated (case-insensitive) key kept."""
    engine = Engine(durable=False)
    engine.apply("/s?_k=K&_p=a&plan=free&Plan=pro&_t=1&_d=1")
    assert engine.properties("K", "a") == {"Plan": "pro"}


def test_alias_of_a_blocked_identity_either_side_is_quarantined() -> None:
    """Kills: only ``_n`` checked against the block list, or a self-alias refused."""
    engine = Engine(durable=False)
    assert engine.alias("K", "undefined", "bob").reason == "blocked_identity"
    assert engine.alias("K", "bob", "NULL").reason == "blocked_identity"
    assert engine.alias("K", "undefined", "undefined").status == "applied"
    assert engine.person("K", "undefined").identities == ("undefined",)


def test_names_compare_with_casefold_not_lower() -> None:
    """Kills: ``str.lower`` for the name key (``ß`` and ``SS`` are one name)."""
    engine = Engine(durable=False)
    engine.record("K", "a", "Straße", t=1)
    assert engine.record("K", "a", "STRASSE", t=1).status == "duplicate"
    engine.set("K", "a", {"Maß": "1"}, t=2)
    engine.set("K", "a", {"MASS": "2"}, t=2)
    assert engine.properties("K", "a") == {"MASS": "2"}


def test_plus_is_a_space_also_next_to_percent_escapes() -> None:
    """Kills: ``+`` kept as it is when the text also has ``%`` escapes."""
    engine = Engine(durable=False)
    engine.apply("/e?_k=K&_p=User+1%40x&_n=Signed+Up%21&_t=1&_d=1")
    assert [e.name for e in engine.events("K", "User 1@x")] == ["Signed Up!"]


def test_a_quarantined_call_repeated_in_later_batches_is_counted() -> None:
    """Kills: the quarantine upsert replacing the count instead of adding to it."""
    engine = Engine(durable=False)
    for _ in range(3):
        engine.ingest(["/e?_k=K&_p=bob"] * 2, received=9)
    (item,) = engine.quarantine()
    assert item.sent == 6
    assert engine.counts()["quarantined"] == 6


def test_event_counts_are_per_tenant_also_for_the_same_person_id() -> None:
    """Kills: ``tenant_event_counts`` unfiltered (two tenants' person ``x`` add up)."""
    engine = Engine(durable=False)
    engine.record("t1", "x", "Paid", t=1)
    engine.record("t1", "x", "Viewed", t=1)
    engine.record("t2", "x", "Paid", t=1)
    assert [(p.id, p.events) for p in engine.people("t2")] == [("x", 1)]
    assert [(p.id, p.events) for p in engine.people("t1")] == [("x", 2)]


@pytest.mark.parametrize("early_first", [True, False])
def test_a_duplicate_alias_keeps_the_earliest_time_across_batches(early_first: bool) -> None:
    """Kills: ``_UPSERT_LINK`` taking the later arrival's time (and the in-batch ``>``)."""
    times = [5, 9] if early_first else [9, 5]
    split, together = Engine(durable=False), Engine(durable=False)
    for t in times:
        split.alias("K", "a", "b", t=t)
    together.ingest([f"/a?_k=K&_p=b&_n=a&_t={t}&_d=1" for t in times], received=50)
    for engine in (split, together):
        assert engine.person("K", "a", as_of=5).identities == ("a", "b")
        assert [p.identities for p in engine.people("K", as_of=6)] == [("a", "b")]


def test_a_reopened_engine_still_lowers_the_first_seen_time(tmp_path: Path) -> None:
    """Kills: times read from the store not handed to the identity cache.

    After a reopen the cache knows no times; a batch that names a stored identity without
    lowering its times must still teach the cache the stored ones, or a later, earlier
    call is taken for no change.
    """
    path = tmp_path / "c.db"
    with Engine(path, durable=False) as engine:
        engine.set("K", "a", {"x": "1"}, t=50)
    with Engine(path, durable=False) as engine:
        engine.ingest(["/s?_k=K&_p=a&y=1&_t=100&_d=1", "/s?_k=K&_p=n&y=1&_t=100&_d=1"])
        engine.alias("K", "a", "b", t=10)
        assert engine.person("K", "b", as_of=10).identities == ("a", "b")
        assert [p.identities for p in engine.people("K", as_of=10)] == [("a", "b")]
        engine.check()
    with Engine(path, durable=False) as engine:
        assert engine.person("K", "b", as_of=10).identities == ("a", "b")


def test_name_key_is_casefold() -> None:
    """Kills: ``name_key`` written with ``str.lower`` (``ß``, ``ǅ``, ``ﬁ`` fold further)."""
    assert name_key("Straße") == name_key("STRASSE") == "strasse"
    assert name_key("ǅ") == name_key("ǆ")
    assert name_key("ﬁle") == name_key("FILE")


def test_json_one_level_past_the_depth_limit_is_malformed() -> None:
    """Kills: the depth check off by one (``MAX_JSON_DEPTH + 1`` levels accepted)."""
    inner = MAX_JSON_DEPTH - 1  # plus the line's own object: exactly the limit
    at_limit = f'{{"_p": "b", "_n": "x", "v": {"[" * inner + "]" * inner}}}'
    past = f'{{"_p": "b", "_n": "x", "v": {"[" * (inner + 1) + "]" * (inner + 1)}}}'
    assert parse_km_line(at_limit, tenant="K", received=1).ok
    assert parse_km_line(past, tenant="K", received=1).reason == "malformed"


def test_many_values_tied_on_time_the_greatest_wins_everywhere() -> None:
    """Kills: ``_make_person`` comparing ``t`` only, whatever order the rows come back in.

    Stored rows come back in index order (identity, digest), not arrival order, so a wrong
    tie-break is not an arrival dependence but a wrong value: with 30 tied values the
    first row is the greatest one only by chance.
    """
    engine = Engine(durable=False)
    engine.alias("K", "a", "b", t=1)
    values = [f"v{i:02}" for i in range(30)]
    for i, value in enumerate(values):
        engine.set("K", "ab"[i % 2], {"plan": value}, t=5)
    assert engine.properties("K", "a") == {"plan": "v29"}
    assert engine.first_properties("K", "a") == {"plan": "v00"}
    assert [p.properties for p in engine.people("K")] == [(("plan", "v29"),)]
    assert engine.person("K", "b", as_of=5).properties == (("plan", "v29"),)
