from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import (
    DamagedDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    Engine,
    InconsistentStoreError,
    ReadOnlyDatabaseError,
    StoreError,
)
from identity import engine as engine_module
from identity.calls import Call
from identity.store import (
    _CREATE_UPDATES,
    _SCHEMA,
    DEFERRED_KEY,
    SCHEMA_VERSION,
    Store,
    sqlite_error,
)
from tests import test_promise as promise


def test_reopen_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        engine.record("K", "anon-1", "Viewed", {"page": "/pricing"}, t=1)
        engine.alias("K", "anon-1", "bob", t=2)
        engine.apply("/e?_k=K&_p=bob")
        before = (list(engine.people("K")), list(engine.quarantine()), engine.counts())
    with Engine(path, create=False) as engine:
        assert (list(engine.people("K")), list(engine.quarantine()), engine.counts()) == before
        engine.alias("K", "bob", "carol", t=3)
        assert engine.person_of("K", "carol") == "anon-1"
        engine.check()


def test_identity_to_person_is_one_join(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        engine.alias("K", "zed", "amy", t=1)
    rows = (
        sqlite3.connect(path)
        .execute(
            "SELECT i.identity, p.person FROM identities i JOIN persons p ON p.id = i.person "
            "ORDER BY i.identity"
        )
        .fetchall()
    )
    assert rows == [("amy", "amy"), ("zed", "amy")]


def test_missing_file_is_an_error_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database"):
        Engine(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Engine(path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an identity database"):
        Engine(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Engine(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Engine(path)


def test_dedupe_mode_is_fixed_at_creation(tmp_path: Path) -> None:
    path = tmp_path / "mode.db"
    Engine(path, dedupe="loose").close()
    with pytest.raises(StoreError, match="dedupe"):
        Engine(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        Engine(tmp_path)


def test_check_finds_tampering(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        engine.alias("K", "a", "b", t=1)
        engine.alias("K", "c", "d", t=1)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO links (a, b, t, sent, source) SELECT x.id, y.id, 1, 1, 'forged' "
        "FROM identities x, identities y WHERE x.identity = 'b' AND y.identity = 'c'"
    )
    conn.commit()
    conn.close()
    with Engine(path) as engine, pytest.raises(InconsistentStoreError, match="linked"):
        engine.check()


def test_wal_mode_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        assert engine.store.meta("schema_version") == str(SCHEMA_VERSION)
        assert engine.store.meta("dedupe") == "exact"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_check_finds_a_person_its_links_do_not_connect(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        engine.alias("K", "a", "b", t=1)
        engine.alias("K", "b", "c", t=1)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM links WHERE b = (SELECT id FROM identities WHERE identity = 'c')")
    conn.execute("UPDATE persons SET size = size + 1")
    conn.commit()
    conn.close()
    with Engine(path) as engine, pytest.raises(InconsistentStoreError) as caught:
        engine.check()
    assert "not connected" in str(caught.value)
    assert "size" in str(caught.value)


# -- the error boundary -----------------------------------------------------------------


def sqlite_exception(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    exc = kind(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("kind", "message", "code", "expected"),
    [
        (sqlite3.OperationalError, "database is locked", 5, DatabaseLockedError),
        (sqlite3.OperationalError, "database table is locked", 6, DatabaseLockedError),
        (
            sqlite3.OperationalError,
            "attempt to write a readonly database",
            8,
            ReadOnlyDatabaseError,
        ),
        (
            sqlite3.OperationalError,
            "attempt to write a readonly database",
            1544,
            ReadOnlyDatabaseError,
        ),
        (sqlite3.OperationalError, "database or disk is full", 13, DiskFullError),
        (sqlite3.DatabaseError, "database disk image is malformed", 11, DamagedDatabaseError),
        (sqlite3.DatabaseError, "file is not a database", 26, DamagedDatabaseError),
        (sqlite3.OperationalError, "disk I/O error", 522, DamagedDatabaseError),
        (sqlite3.OperationalError, "disk I/O error", 10, StoreError),
        (sqlite3.OperationalError, "unable to open database file", 14, StoreError),
        (sqlite3.OperationalError, "no such table: inputs", 1, StoreError),
        (sqlite3.OperationalError, "interrupted", 9, StoreError),
        (sqlite3.InternalError, "internal", 2, StoreError),
        (sqlite3.IntegrityError, "UNIQUE constraint failed: links.a, links.b", 2067, None),
        (sqlite3.DataError, "string or blob too big", 18, None),
        (sqlite3.InterfaceError, "bad parameter or other API misuse", 21, None),
        (
            sqlite3.ProgrammingError,
            "Error binding parameter 1: type 'object' is not supported",
            0,
            None,
        ),
    ],
)
def test_one_mapping_from_sqlite_errors(
    kind: type[sqlite3.Error], message: str, code: int, expected: type[StoreError] | None
) -> None:
    # without sqlite_errorcode (Python 3.10) the message tells, less finely
    fallback = StoreError if code == 522 else expected
    for exc, wanted in (
        (sqlite_exception(kind, message, code), expected),
        (kind(message), fallback),
    ):
        error = sqlite_error("app.db", exc)
        expected = wanted
        if expected is None:
            assert error is None
        else:
            assert type(error) is expected
            assert error is not None
            assert error.path == "app.db"
            assert "\n" not in str(error)


def test_value_errors_are_never_store_errors() -> None:
    store = Store(":memory:")
    with store.transaction():
        store.insert_identities([(1, "K", "a", 1, 1, None)])
    for rows, error in [
        ([(1, "K", "b", 1, 1, None)], sqlite3.IntegrityError),  # a duplicate row id
        ([(2**70, "K", "b", 1, 1, None)], OverflowError),  # too large for SQLite INTEGER
        ([(3, "K", object(), 1, 1, None)], sqlite3.ProgrammingError),  # cannot be bound
        ([(3, "K")], sqlite3.ProgrammingError),  # wrong number of values
    ]:
        with pytest.raises(error) as caught, store.transaction():
            store.insert_identities(rows)  # type: ignore[arg-type]
        assert not isinstance(caught.value, StoreError)
    assert store.counts()["identities"] == 1
    with store.transaction():  # every failed transaction was rolled back
        store.insert_identities([(2, "K", "b", 1, 1, None)])


def test_a_failed_commit_is_rolled_back_and_the_next_transaction_begins() -> None:
    store = Store(":memory:")
    conn = store.conn
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TEMP TABLE child (parent INTEGER REFERENCES parent (id) "
        "DEFERRABLE INITIALLY DEFERRED)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), store.transaction():  # noqa: PT012
        store.set_meta("generation", "7")
        conn.execute("INSERT INTO child VALUES (1)")  # refused only by COMMIT
    assert not conn.in_transaction
    assert store.meta("generation") == "0"
    with store.transaction():
        store.set_meta("generation", "8")
    assert store.meta("generation") == "8"


class FailingConnection:
    """A connection whose every statement fails as a broken disk would."""

    in_transaction = False

    def _fail(self, *args: object) -> None:
        raise sqlite_exception(sqlite3.OperationalError, "disk I/O error", 10)

    execute = executemany = close = _fail


STORE_CALLS: dict[str, tuple[object, ...]] = {
    "meta": ("generation",),
    "set_meta": ("generation", "1"),
    "batch_state": (),
    "next_identity_id": (),
    "max_ids": (),
    "find_ids": ("K", ["a"]),
    "persons_of": ([1],),
    "insert_identities": ([],),
    "touch_identities": ([],),
    "relabel": ([],),
    "relabel_members": ([(1, 2)],),
    "append_identity_updates": ([(1, 1, 5, None)],),
    "delete_persons": ([],),
    "upsert_persons": ([],),
    "upsert_links": ([],),
    "upsert_events": ([],),
    "upsert_properties": ([],),
    "upsert_quarantine": ([],),
    "input_state": ("f",),
    "record_input": ("f", "1:ab", 1, 1),
    "received_for": ("ab",),
    "identity": ("K", "a"),
    "members": (1,),
    "identities_by_id": ([1],),
    "neighbours": ([1], 5),
    "links_of": ([1], 5),
    "tenant_link_rows": ("K",),
    "activity": ([1], 5),
    "property_records": ([1],),
    "events_of": ([1],),
    "tenant_members": ("K",),
    "tenant_properties": ("K",),
    "tenant_event_counts": ("K",),
    "tenant_identities": ("K", 5),
    "tenant_links": ("K",),
    "tenants": (),
    "quarantine": (),
    "counts": (),
    "identity_persons": (),
    "inconsistencies": (),
    "all_links": (),
    "quick_check": (),
    "export_identities": ("K",),
    "export_events": (1,),
    "export_properties": (1,),
    "export_links": (1,),
    "checkpoint": (),
    "defer_indexes": (),
    "build_deferred_indexes": (),
    "close": (),
}


def test_every_store_method_goes_through_the_boundary() -> None:
    public = {
        name
        for name, value in vars(Store).items()
        if callable(value) and not name.startswith("_") and name not in ("transaction", "savepoint")
    }
    assert public == set(STORE_CALLS), "a new Store method: add it here"
    store = Store(":memory:")
    real = store.conn
    store.conn = FailingConnection()  # type: ignore[assignment]
    for name, args in STORE_CALLS.items():
        keywords = {"finished": True, "updated": 1} if name == "record_input" else {}
        with pytest.raises(StoreError, match="I/O error") as caught:  # noqa: PT012
            result = getattr(store, name)(*args, **keywords)
            list(result)  # a stream fails when it is read, if not before
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError), name
    for block in (store.transaction, store.savepoint):
        with pytest.raises(StoreError, match="I/O error"), block():
            pass  # pragma: no cover
    real.close()


def test_checkpoint(tmp_path: Path) -> None:
    with Engine(tmp_path / "id.db") as engine:
        engine.alias("K", "a", "b", t=1)
        busy, frames, done = engine.store.checkpoint("TRUNCATE")
        assert (busy, frames, done) == (0, 0, 0)
        with pytest.raises(ValueError, match="checkpoint mode"):
            engine.store.checkpoint("SOMETIME")


def test_a_new_database_declares_its_relationships_and_views(tmp_path: Path) -> None:
    import sqlite_utils

    path = tmp_path / "x.db"
    with Engine(path) as engine:
        engine.alias("K", "a", "b", t=1)
    db = sqlite_utils.Database(path)
    keys = {
        (fk.table, fk.column, fk.other_table, fk.other_column)
        for t in db.tables
        for fk in t.foreign_keys
    }
    assert keys == {
        ("identities", "person", "persons", "id"),
        ("links", "a", "identities", "id"),
        ("links", "b", "identities", "id"),
        ("events", "identity", "identities", "id"),
        ("properties", "identity", "identities", "id"),
    }
    assert sorted(db.view_names()) == ["people", "person_links"]
    assert [(r["identity"], r["person"]) for r in db["people"].rows] == [("a", "a"), ("b", "a")]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.close()


# --- bulk load into an empty database: read indexes deferred --------------------------


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _bulk_lines(n: int) -> list[str]:
    return [
        f"/a?_k=K&_p=u{i}&_n=u{i + 1}" if i % 3 == 0 else f"/e?_k=K&_p=u{i}&_n=Paid&plan={i % 4}"
        for i in range(n)
    ]


def test_a_bulk_load_builds_its_read_indexes_when_it_closes(tmp_path: Path) -> None:
    path = tmp_path / "bulk.db"
    engine = Engine(path, durable=False)
    engine.ingest(_bulk_lines(3000), received=5, batch_size=1500)
    assert engine.store.deferred
    deferred = [
        "identities_tenant_identity",
        "links_a",
        "identities_person",
        "events_identity",
        "properties_identity",
    ]
    assert not set(deferred) & _indexes(path)
    assert engine.store.meta(DEFERRED_KEY) == ",".join([*deferred, "identity_updates", "persons"])
    assert _count(path, "persons") == 0  # filled from identities.person at the end
    engine.close()
    assert set(deferred) <= _indexes(path)
    assert _count(path, "persons") == 2000  # u0-u1, u3-u4...: 1000 pairs, 1000 alone
    with Engine(path) as again:
        assert again.store.meta(DEFERRED_KEY) is None
        assert again.check()["identities"] == 3000
        assert again.same_person("K", "u0", "u1")


def test_a_read_during_a_bulk_load_builds_the_indexes_first(tmp_path: Path) -> None:
    path = tmp_path / "bulk.db"
    with Engine(path, durable=False) as engine:
        engine.ingest(_bulk_lines(2000), received=5, batch_size=2000)
        assert engine.store.deferred
        assert engine.person_of("K", "u1") == "u0"
        assert not engine.store.deferred
        assert "identities_tenant_identity" in _indexes(path)
        engine.ingest(_bulk_lines(2000), received=5, batch_size=2000)  # not empty: kept
        assert not engine.store.deferred


def test_a_bulk_load_killed_before_it_closes_gets_its_indexes_at_the_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    engine = Engine(path, durable=False)
    engine.ingest(_bulk_lines(3000), received=5, batch_size=1000)
    engine.store.conn.close()  # as a killed process would leave it: no index built
    assert "identities_tenant_identity" not in _indexes(path)
    with Engine(path) as again:
        assert {"identities_tenant_identity", "links_a"} <= _indexes(path)
        assert again.check()["identities"] == 3000
        summary = again.ingest(_bulk_lines(3000), received=5)
        assert summary.new_identities == 0  # the unique index holds: names known
    with Engine(path, readonly=True) as reader:
        assert reader.person_of("K", "u4") == "u3"


def test_small_batches_and_memory_databases_keep_every_index(tmp_path: Path) -> None:
    path = tmp_path / "beacon.db"
    with Engine(path) as engine:
        engine.ingest(_bulk_lines(500), received=5, batch_size=100)
        assert not engine.store.deferred
    assert "identities_tenant_identity" in _indexes(path)
    with Engine(":memory:") as memory:
        memory.ingest(_bulk_lines(2000), received=5, batch_size=2000)
        assert not memory.store.deferred


@settings(max_examples=60, deadline=None)
@given(calls=promise.collections, data=st.data())
def test_a_bulk_load_gives_the_state_of_a_plain_one(calls: list[Call], data: st.DataObject) -> None:
    """Deferring the read indexes changes nothing observable (SPEC §7), reopens included."""
    batches = data.draw(st.lists(st.integers(1, 7), max_size=6), label="batches")
    reopen = data.draw(st.integers(0, 2), label="reopen every")
    saved = engine_module.BULK_FROM
    try:
        engine_module.BULK_FROM = 10**9
        plain = promise.ingest_all(calls, batches, reopen)
        engine_module.BULK_FROM = 1
        bulk = promise.ingest_all(calls, batches, reopen)
    finally:
        engine_module.BULK_FROM = saved
    assert bulk == plain


# --- dedupe keys: by time in new databases, by identity in databases before schema 4 -----


def _schema_3_table(table: str) -> str:
    """Return ``CREATE TABLE`` of `table` as schema 3 had it: ``UNIQUE (identity, key)``."""
    (create,) = [part for part in _SCHEMA.split(";") if f"CREATE TABLE {table} (" in part]
    assert "UNIQUE (td, identity, key)" in create
    return create.replace("UNIQUE (td, identity, key)", "UNIQUE (identity, key)")


def _as_schema_3(path: Path) -> None:
    """Give a database the dedupe keys of schema 3: ``UNIQUE (identity, key)``, no index."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for table in ("events", "properties"):
        conn.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        conn.execute(_schema_3_table(table))
        conn.execute(f"INSERT INTO {table} SELECT * FROM old_{table}")
        conn.execute(f"DROP TABLE old_{table}")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.close()


def _unique_columns(path: Path, table: str) -> list[list[str]]:
    conn = sqlite3.connect(path)
    try:
        return [
            [c[0] for c in conn.execute("SELECT name FROM pragma_index_info(?)", (name,))]
            for (name,) in conn.execute(
                'SELECT name FROM pragma_index_list(?) WHERE "unique"', (table,)
            )
        ]
    finally:
        conn.close()


def test_a_new_database_keys_events_and_properties_by_time(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        assert engine.store.by_time
        engine.record("K", "bob", "Paid", {"plan": "pro"}, t=5)
        assert engine.record("K", "bob", "paid", {"plan": "pro"}, t=5).status == "duplicate"
        assert engine.record("K", "bob", "Paid", {"plan": "pro"}, t=6).status == "applied"
    for table in ("events", "properties"):
        assert _unique_columns(path, table) == [["td", "identity", "key"]]
    assert {"events_identity", "properties_identity"} <= _indexes(path)


def test_a_schema_3_database_keeps_its_dedupe_keys_and_folds_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    lines = [
        "/e?_k=K&_p=a&_n=Paid&plan=pro&_t=5",
        "/s?_k=K&_p=a&plan=pro&_t=5",
        "/a?_k=K&_p=a&_n=b&_t=6",
    ]
    with Engine(path) as engine:
        engine.ingest(lines, received=9)
        before = (list(engine.people("K")), engine.counts(), engine.events("K", "a"))
    _as_schema_3(path)
    with Engine(path) as engine:
        assert engine.store.meta("schema_version") == str(SCHEMA_VERSION)
        assert not engine.store.by_time
        assert (list(engine.people("K")), engine.counts(), engine.events("K", "a")) == before
        summary = engine.ingest([*lines, "/e?_k=K&_p=b&_n=Paid&_t=7"], received=9)
        assert (summary.duplicate_events, summary.duplicate_properties) == (1, 2)
        assert summary.duplicate_aliases == 1
        assert engine.counts()["events"] == 2
        engine.check()
    for table in ("events", "properties"):
        assert _unique_columns(path, table) == [["identity", "key"]]


def test_a_bulk_load_into_an_empty_schema_3_database_defers_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "bulk.db"
    Engine(path).close()
    _as_schema_3(path)
    engine = Engine(path, durable=False)
    engine.ingest(_bulk_lines(3000), received=5, batch_size=1500)
    assert (
        engine.store.meta(DEFERRED_KEY)
        == "identities_tenant_identity,links_a,identities_person,identity_updates,persons"
    )
    engine.close()
    assert not {"events_identity", "properties_identity"} & _indexes(path)
    with Engine(path) as again:
        assert again.check()["identities"] == 3000
        assert again.ingest(_bulk_lines(3000), received=5).duplicate_events == 2000


def _with_links_by_a(path: Path) -> None:
    """Give a database the links of schema 4: ``UNIQUE (a, b)`` and ``links_b``."""
    (create,) = [part for part in _SCHEMA.split(";") if "CREATE TABLE links (" in part]
    assert "UNIQUE (b, a)" in create
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE links RENAME TO old_links")
    conn.execute(create.replace("UNIQUE (b, a)", "UNIQUE (a, b)"))
    conn.execute("INSERT INTO links SELECT * FROM old_links")
    conn.execute("DROP TABLE old_links")
    conn.execute("CREATE INDEX links_b ON links (b)")
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.close()


def test_a_new_database_keys_links_by_the_newer_identity_first(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    with Engine(path) as engine:
        assert engine.store.links_by_b
        engine.alias("K", "a", "b", t=5)
        assert engine.alias("K", "b", "a", t=4).status == "duplicate"
        assert engine.person("K", "a").identities == ("a", "b")
    assert _unique_columns(path, "links") == [["b", "a"]]
    assert "links_a" in _indexes(path)


def test_a_database_with_links_by_a_keeps_them_and_its_bulk_load_defers_links_b(
    tmp_path: Path,
) -> None:
    lines = _merging_lines(3000, seed=5)
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    Engine(old).close()
    _with_links_by_a(old)
    summaries = []
    for path in (old, new):
        with Engine(path, durable=False) as engine:
            assert engine.store.links_by_b == (path == new)
            engine.ingest(lines[:2000], received=5, batch_size=1000)
            deferred = engine.store.meta(DEFERRED_KEY) or ""
            assert ("links_b" if path == old else "links_a") in deferred.split(",")
        with Engine(path) as engine:
            summaries.append(engine.ingest(lines, received=5))  # over the indexes
            engine.check()
    assert summaries[0] == summaries[1]
    assert summaries[0].duplicate_aliases > 900  # the first 2000 lines' aliases
    assert _unique_columns(old, "links") == [["a", "b"]]
    assert {"links_b"} <= _indexes(old)
    assert "links_a" not in _indexes(old)
    assert _people_rows(old) == _people_rows(new)
    with Engine(old) as a, Engine(new) as b:
        assert promise.observe(a) == promise.observe(b)


def test_a_bulk_load_relabels_merged_persons_by_their_members(tmp_path: Path) -> None:
    """Merges across batches of a bulk load (no identities_person index): the partition
    is the alias graph's components, the same as a writer that relabels by person."""
    import random

    import networkx as nx

    rng = random.Random(7)
    lines = [f"/a?_k=K&_p=u{rng.randrange(900)}&_n=u{rng.randrange(900)}" for _ in range(1200)]
    lines += [f"/e?_k=K&_p=u{i}&_n=Seen" for i in range(900)]
    rng.shuffle(lines)
    graph = nx.Graph()
    graph.add_nodes_from(f"u{i}" for i in range(900))
    for line in lines:
        if line.startswith("/a"):
            params = dict(p.split("=") for p in line.split("?")[1].split("&"))
            graph.add_edge(params["_p"], params["_n"])
    expected = sorted(sorted(c) for c in nx.connected_components(graph))
    bulk, plain = tmp_path / "bulk.db", tmp_path / "plain.db"
    with Engine(bulk, durable=False) as engine:
        engine.ingest(lines, received=5, batch_size=1000)
        assert "identities_person" not in _indexes(bulk)  # deferred while it loads
        assert engine.store.meta(DEFERRED_KEY) is not None
    Engine(plain).close()
    for start in range(0, len(lines), 300):  # small batches, reopened: by person
        with Engine(plain, durable=False) as engine:
            engine.ingest(lines[start : start + 300], received=5)
    found = []
    for path in (bulk, plain):
        with Engine(path) as engine:
            engine.check()
            people = sorted(sorted(p.identities) for p in engine.people("K"))
            assert people == expected
            found.append(list(engine.people("K")))
        conn = sqlite3.connect(path)
        found.append(conn.execute("SELECT * FROM persons ORDER BY person").fetchall())
        conn.close()
    assert found[0] == found[2]  # the same persons, ids and sizes, either way
    assert [row[2:] for row in found[1]] == [row[2:] for row in found[3]]


def _merging_lines(n: int, seed: int) -> list[str]:
    """Aliases and events over few identities, times going down: batch after batch, a bulk
    load merges stored persons and lowers the first_seen and customer_since of stored
    identities."""
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(n):
        a, b, t = rng.randrange(n // 2), rng.randrange(n // 2), 10 * n - i
        if i % 2:
            lines.append(f"/a?_k=K&_p=u{a}&_n=u{b}&_t={t}")
        else:
            lines.append(f"/e?_k=K&_p=u{a}&_n=Paid&_t={t}")
    return lines


def _people_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM people ORDER BY tenant, identity").fetchall()
    finally:
        conn.close()


def test_a_bulk_load_killed_with_identity_updates_pending_applies_them_at_the_next_open(
    tmp_path: Path,
) -> None:
    """Merges and lowered times of stored identities wait in identity_updates (appended,
    not written in place) until the load ends; a kill leaves them there, committed, and
    the next open applies them: the state of a plain load, row for row."""
    lines = _merging_lines(4000, seed=3)
    bulk, plain = tmp_path / "bulk.db", tmp_path / "plain.db"
    engine = Engine(bulk, durable=False)
    engine.ingest(lines, received=5, batch_size=1000)
    assert engine.store.updates_deferred
    pending = engine.store.conn.execute(
        "SELECT count(*), count(DISTINCT id) FROM identity_updates"
    ).fetchone()
    assert pending[0] > pending[1] > 100  # identities changed in more than one batch
    engine.store.conn.close()  # killed
    saved = engine_module.BULK_FROM
    try:
        engine_module.BULK_FROM = 10**9
        with Engine(plain, durable=False) as engine:
            engine.ingest(lines, received=5, batch_size=1000)
    finally:
        engine_module.BULK_FROM = saved
    with Engine(bulk) as again:
        assert again.store.meta(DEFERRED_KEY) is None
        assert "identity_updates" not in again.store.db.table_names()
        again.check()
        got = promise.observe(again)
    with Engine(plain) as engine:
        assert got == promise.observe(engine)
    assert _people_rows(bulk) == _people_rows(plain)  # first_seen, customer_since too


def test_an_empty_identity_updates_table_of_no_load_does_not_stop_the_next_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    with Engine(path, durable=False) as engine:
        engine.store.conn.execute(_CREATE_UPDATES)  # as a load rolled back could not leave it
        engine.ingest(_merging_lines(3000, seed=4), received=5, batch_size=1500)
        assert engine.store.updates_deferred
    with Engine(path) as again:
        again.check()
        assert "identity_updates" not in again.store.db.table_names()


def test_a_read_only_open_during_a_bulk_load_says_the_persons_are_not_filled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    engine = Engine(path, durable=False)
    engine.ingest(_bulk_lines(3000), received=5, batch_size=1500)
    assert engine.store.persons_deferred
    with pytest.raises(StoreError, match="filled the persons table; open it with write"):
        Engine(path, readonly=True)
    engine.close()
    with Engine(path, readonly=True) as reader:
        assert reader.person_of("K", "u1") == "u0"


def test_another_writer_during_a_bulk_load_fills_the_persons_and_the_load_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    lines = _bulk_lines(6000)
    engine = Engine(path, durable=False)
    engine.ingest(lines[:3000], received=5, batch_size=1500)
    assert engine.store.persons_deferred
    with Engine(path) as other:  # opens with write access: fills them at open
        assert other.person_of("K", "u1") == "u0"
    engine.ingest(lines[3000:], received=5, batch_size=1500)
    assert not engine.store.persons_deferred  # as committed by the other writer
    engine.ingest(["/a?_k=K&_p=u1&_n=u5999"], received=5)
    engine.close()
    with Engine(path) as again:
        again.check()
        assert again.person("K", "u5999").identities == ("u0", "u1", "u5999")
        assert again.counts()["people"] == 3999
