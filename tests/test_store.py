from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from identity import Engine, InconsistentStoreError, StoreError
from identity.store import SCHEMA_VERSION


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
