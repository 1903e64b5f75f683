from __future__ import annotations

from pathlib import Path

import pytest

from identity import Engine, Outcome, UnknownIdentityError
from identity.errors import ConfigurationError


@pytest.fixture
def engine() -> Engine:
    return Engine(durable=False)


def test_alias_is_transitive_symmetric_and_idempotent(engine: Engine) -> None:
    engine.alias("K", "a", "b", t=1)
    engine.alias("K", "c", "b", t=2)
    assert engine.alias("K", "b", "a", t=3) == Outcome("duplicate")
    assert engine.same_person("K", "a", "c")
    assert engine.person_of("K", "c") == "a"
    assert engine.identities("K", "c") == ["a", "b", "c"]
    assert engine.counts("K")["links"] == 2


def test_customer_ids_are_only_identities_with_events_or_properties(engine: Engine) -> None:
    engine.record("K", "User 12345", "Signed Up", t=1)
    engine.alias("K", "User 12345", "bob@bob.com", t=2)
    assert engine.customer_ids("K", "bob@bob.com") == ["User 12345"]
    engine.set("K", "bob@bob.com", {"gender": "male"}, t=3)
    assert engine.customer_ids("K", "User 12345") == ["User 12345", "bob@bob.com"]
    assert engine.customer_ids("K", "User 12345", as_of=2) == ["User 12345"]


def test_only_aliased_identity_is_a_person_without_customer_id(engine: Engine) -> None:
    engine.alias("K", "x", "y", t=1)
    person = engine.person("K", "y")
    assert person.customer_ids == ()
    assert [p.id for p in engine.people("K")] == ["x"]


def test_self_alias_makes_it_known(engine: Engine) -> None:
    engine.alias("K", "solo", "solo", t=1)
    assert engine.person("K", "solo").identities == ("solo",)
    assert engine.counts("K")["links"] == 0


def test_blocked_alias_is_quarantined_and_merges_nothing(engine: Engine) -> None:
    engine.record("K", "a", "Viewed", t=1)
    engine.record("K", "b", "Viewed", t=1)
    assert engine.alias("K", "a", "undefined").reason == "blocked_identity"
    assert engine.alias("K", "b", "undefined").reason == "blocked_identity"
    assert not engine.same_person("K", "a", "b")
    assert [q.reason for q in engine.quarantine("K")] == ["blocked_identity"] * 2


def test_current_value_is_greatest_time_then_value(engine: Engine) -> None:
    engine.set("K", "a", {"plan": "pro"}, t=5)
    engine.set("K", "b", {"Plan": "free"}, t=5)
    engine.set("K", "b", {"plan": "old"}, t=1)
    engine.alias("K", "a", "b", t=9)
    assert engine.properties("K", "a") == {"plan": "pro"}
    assert engine.first_properties("K", "b") == {"plan": "old"}
    assert engine.properties("K", "b", as_of=4) == {"plan": "old"}
    with pytest.raises(UnknownIdentityError):
        engine.properties("K", "a", as_of=4)
    assert [r.value for r in engine.property_history("K", "b", "plan")] == ["old", "free", "pro"]


def test_event_properties_are_also_property_sets(engine: Engine) -> None:
    engine.record("K", "bob", "Signed Up", {"gender": "male"}, t=1262304000)
    assert engine.properties("K", "bob") == {"gender": "male"}


def test_duplicate_events_exact_and_retries(engine: Engine) -> None:
    # the JS library retries with the same _t and no _d: one event, counted twice
    for received in (100, 130):
        engine.apply("/e?_k=K&_p=bob&_n=Paid&amount=5&_t=90")
        engine.ingest(["/e?_k=K&_p=bob&_n=paid&amount=5&_t=90"], received=received)
    events = engine.events("K", "bob")
    assert len(events) == 1
    assert events[0].sent == 4
    engine.record("K", "bob", "Paid", {"amount": "6"}, t=90)
    assert len(engine.events("K", "bob")) == 2


def test_surviving_duplicate_is_chosen_by_content_not_arrival() -> None:
    one, two = Engine(durable=False), Engine(durable=False)
    calls = ["/e?_k=K&_p=b&_n=paid&_t=7", "/e?_k=K&_p=b&_n=Paid&_t=7"]
    one.ingest(calls, received=50)
    two.ingest(reversed(calls), received=50)
    assert one.events("K", "b") == two.events("K", "b")
    assert one.events("K", "b")[0].name == "Paid"


def test_loose_dedupe_ignores_property_values() -> None:
    engine = Engine(dedupe="loose", durable=False)
    engine.record("K", "b", "Paid", {"amount": "5"}, t=7)
    engine.record("K", "b", "Paid", {"amount": "4"}, t=7)
    events = engine.events("K", "b")
    assert [e.properties for e in events] == [(("amount", "4"),)]
    with pytest.raises(ConfigurationError):
        Engine(dedupe="fuzzy")


def test_queries_never_create_state(engine: Engine) -> None:
    with pytest.raises(UnknownIdentityError):
        engine.person("K", "ghost")
    assert not engine.same_person("K", "ghost", "ghost")
    assert engine.counts() == {
        "identities": 0,
        "people": 0,
        "customer_ids": 0,
        "links": 0,
        "events": 0,
        "events_received": 0,
        "property_records": 0,
        "quarantined": 0,
    }


def test_as_of_partition(engine: Engine) -> None:
    engine.alias("K", "a", "b", t=10)
    engine.alias("K", "b", "c", t=20)
    with pytest.raises(UnknownIdentityError):
        engine.person("K", "c", as_of=15)
    assert engine.person("K", "a", as_of=15).identities == ("a", "b")
    assert [p.identities for p in engine.people("K", as_of=25)] == [("a", "b", "c")]


@pytest.mark.parametrize("known", [True, False], ids=["members-known", "reopened"])
def test_merge_relabels_only_the_smaller_side(tmp_path: Path, known: bool) -> None:
    path = tmp_path / "id.db"
    engine = Engine(path, durable=False)
    engine.ingest([f"/a?_k=K&_p=big0&_n=big{i}" for i in range(1, 50)], received=1)
    engine.ingest(["/a?_k=K&_p=a-small&_n=small2"], received=1)
    if not known:  # a writer that did not see the database empty: relabels by person
        engine.close()
        engine = Engine(path, durable=False)
    statements: list[str] = []
    engine.store.conn.set_trace_callback(statements.append)
    engine.alias("K", "small2", "big7", t=2)
    engine.store.conn.set_trace_callback(None)
    relabels = [s for s in statements if s.startswith("UPDATE identities SET person")]
    if known:  # the cache knows the smaller person's two members: by row id
        assert [s.split("WHERE")[1].split("=")[0].strip() for s in relabels] == ["id", "id"]
    else:
        assert len(relabels) == 1
        assert "WHERE person" in relabels[0]
    rows = engine.store.conn.execute(
        "SELECT count(*) FROM identities WHERE person = (SELECT person FROM identities "
        "WHERE identity = 'big0')"
    ).fetchone()[0]
    assert rows == 52
    assert engine.person_of("K", "big3") == "a-small"
    engine.check()
    engine.close()


def test_ingest_summary_and_batch_size(engine: Engine) -> None:
    summary = engine.ingest(
        ["/a?_k=K&_p=a&_n=b", "/a?_k=K&_p=a&_n=b", "/e?_k=K&_p=a", "/s?_k=K&_p=c&x=1"],
        batch_size=2,
        received=1,
    )
    assert summary.batches == 2
    assert summary.quarantined == {"missing_event_name": 1}
    assert summary.duplicate_aliases == 1
    assert (summary.new_identities, summary.merges, summary.new_people) == (3, 1, 2)
    with pytest.raises(ConfigurationError):
        engine.ingest([], batch_size=0)


def test_quarantine_keeps_raw_and_counts_repeats(engine: Engine) -> None:
    engine.ingest(["/e?_k=K&_p=bob"] * 3, received=9)
    (item,) = engine.quarantine()
    assert (item.raw, item.reason, item.received, item.sent) == (
        "/e?_k=K&_p=bob",
        "missing_event_name",
        9,
        3,
    )
    assert list(engine.quarantine(reason="bad_encoding")) == []


def test_second_writer_is_detected(tmp_path) -> None:
    path = tmp_path / "two.db"
    first, second = Engine(path), Engine(path)
    first.alias("K", "a", "b", t=1)
    second.alias("K", "b", "c", t=1)
    first.alias("K", "c", "d", t=1)
    assert first.person("K", "d").identities == ("a", "b", "c", "d")
    first.check()


def test_a_call_without_a_tenant_is_stored_the_same_wherever_it_sits_in_its_batch() -> None:
    # the batch caches per-tenant look-ups; a call whose tenant is None (only a hand-made
    # Call can be accepted without one) must not depend on which call came before it
    from identity.calls import Call

    stored = []
    for order in (0, 1):
        engine = Engine()
        amy = Call("e", "K", "amy", "Paid", (), 5, 5, 5, "raw", "s:1")
        bob = Call("e", None, "bob", "Paid", (), 5, 5, 5, "raw", "s:2")
        engine.apply_batch([amy, bob] if order else [bob, amy])
        rows = engine.store.conn.execute("SELECT tenant, identity FROM identities ORDER BY 1, 2")
        stored.append(rows.fetchall())
        engine.close()
    assert stored[0] == stored[1]


def test_ingest_leaves_the_garbage_collector_as_it_found_it() -> None:
    """Paused while a batch is read and applied, back on after it, even when it fails."""
    import gc

    engine = Engine()
    assert gc.isenabled()
    engine.ingest(["/a?_k=K&_p=a&_n=b"], received=1)
    assert gc.isenabled()
    with pytest.raises(ConfigurationError):
        engine.ingest(["/a?_k=K&_p=a&_n=c"], received=-1)  # refused inside the batch
    assert gc.isenabled()
    gc.disable()
    try:
        engine.ingest(["/a?_k=K&_p=a&_n=d"], received=1)
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
    assert engine.same_person("K", "a", "d")
