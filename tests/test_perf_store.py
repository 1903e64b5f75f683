"""Settings of issue 13: the page cache size, and the beacon writer's pipelined syncs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from identity import Engine
from identity.beacon.writer import Writer
from identity.calls import parse_query
from identity.errors import ConfigurationError
from identity.store import CACHE_SIZE_ENV, DEFAULT_CACHE_SIZE, Store, parse_cache_size


def _pragma(store: Store, name: str) -> int:
    return int(store.conn.execute(f"PRAGMA {name}").fetchone()[0])


def test_cache_size_is_set_from_argument_environment_or_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CACHE_SIZE_ENV, raising=False)
    assert _pragma(Store(":memory:"), "cache_size") == -DEFAULT_CACHE_SIZE // 1024
    assert _pragma(Store(":memory:", cache_size="64MiB"), "cache_size") == -65536
    monkeypatch.setenv(CACHE_SIZE_ENV, "2GiB")
    assert Engine(":memory:").store.cache_size == 2 * 2**30
    assert Engine(":memory:", cache_size=2**21).store.cache_size == 2**21


@pytest.mark.parametrize("bad", ["lots", "0", "-5MiB", "1e30", "12 parsecs", ""])
def test_a_bad_cache_size_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="cache size"):
        parse_cache_size(bad)


def test_units_of_cache_sizes() -> None:
    assert parse_cache_size("300MB") == 300 * 10**6
    assert parse_cache_size("1.5g") == 3 * 2**29
    assert parse_cache_size(" 512 mib ") == 512 * 2**20


def test_the_writer_answers_after_its_own_sync_and_gives_durability_back(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "beacon.db")
    assert _pragma(engine.store, "synchronous") == 2  # FULL
    writer = Writer(engine)
    assert _pragma(engine.store, "synchronous") == 1  # NORMAL: the syncer syncs the log
    assert writer.commit(parse_query("/e?_k=K&_p=bob&_n=Paid", received=1))
    assert writer._syncer is not None
    assert writer._syncer.syncs >= 1
    writer.close()
    assert _pragma(engine.store, "synchronous") == 2
    assert engine.same_person("K", "bob", "bob")
    engine.close()


def test_a_failed_sync_is_never_acknowledged(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "beacon.db")
    writer = Writer(engine)
    assert writer._syncer is not None
    writer._syncer.path = os.fspath(tmp_path / "nowhere" / "beacon.db-wal")  # cannot be opened
    assert not writer.commit(parse_query("/e?_k=K&_p=bob&_n=Paid", received=1))
    assert writer.stats()["failed"] == 1
    writer.close()
    engine.close()


def test_an_in_memory_engine_has_no_syncer() -> None:
    with Writer(Engine()) as writer:
        assert writer._syncer is None
        assert writer.commit(parse_query("/s?_k=K&_p=bob&a=1", received=1))
