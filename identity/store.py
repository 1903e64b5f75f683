"""The SQLite store: the only module that speaks SQL.

One file (or ``:memory:``) holds everything, in plain tables any SQL tool can read:

``identities``
    one row per (tenant, identity): ``person`` points at ``persons.id``, ``first_seen`` is the
    earliest time any accepted call named it, ``customer_since`` the earliest accepted ``/e``
    or ``/s`` on it (``NULL``: not a Customer ID).
``persons``
    one row per person: ``person`` is its display id (the smallest member), ``size`` its
    number of identities. Identity to person is one join:
    ``SELECT i.identity, p.person FROM identities i JOIN persons p ON p.id = i.person``.
``links``
    accepted alias links between two identity rows (``a < b``), with the earliest time.
``events``, ``properties``
    deduplicated events and property-set history, per identity.
``quarantine``
    refused calls, verbatim, with their reason.
``inputs``
    how far each input file has been ingested (resumable ingest).
``meta``
    schema version and settings.

A merge relabels only the smaller person's rows (``UPDATE identities SET person = ?
WHERE person = ?`` over an index); the display id lives one row away in ``persons``, so a
merge costs O(smaller side), never a rewrite of the larger one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from .errors import StoreError

__all__ = ["SCHEMA_VERSION", "Store"]

SCHEMA_VERSION = 2

#: What turns a database of schema version N into N + 1, run in one transaction at open.
#: (2: ``inputs.received``, the receive time given to an input's calls that carry none.)
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE inputs ADD COLUMN received INTEGER",),
}
APPLICATION = "identity"
_CHUNK = 500

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    identity TEXT NOT NULL,
    person INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    customer_since INTEGER,
    UNIQUE (tenant, identity)
);
CREATE INDEX identities_person ON identities (person);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    person TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE links (
    id INTEGER PRIMARY KEY,
    a INTEGER NOT NULL,
    b INTEGER NOT NULL,
    t INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (a, b)
);
CREATE INDEX links_b ON links (b);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL,
    key BLOB NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    t INTEGER NOT NULL,
    td INTEGER NOT NULL,
    properties TEXT NOT NULL,
    sent INTEGER NOT NULL,
    UNIQUE (identity, key)
);
CREATE TABLE properties (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL,
    key BLOB NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    t INTEGER NOT NULL,
    td INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    UNIQUE (identity, key)
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    tenant TEXT,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    received INTEGER NOT NULL,
    source TEXT NOT NULL,
    sent INTEGER NOT NULL
);
CREATE INDEX quarantine_reason ON quarantine (reason);
CREATE TABLE inputs (
    source TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    position INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    received INTEGER
);
"""

_TABLES = {"meta", "identities", "persons", "links", "events", "properties", "quarantine"}

_UPSERT_EVENT = """
INSERT INTO events (identity, key, name, name_key, t, td, properties, sent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (identity, key) DO UPDATE SET
    sent = sent + excluded.sent,
    name = CASE WHEN (excluded.t, excluded.name, excluded.properties) < (t, name, properties)
        THEN excluded.name ELSE name END,
    properties = CASE WHEN (excluded.t, excluded.name, excluded.properties)
        < (t, name, properties) THEN excluded.properties ELSE properties END,
    t = min(t, excluded.t)
"""

_UPSERT_PROPERTY = """
INSERT INTO properties (identity, key, name_key, name, value, t, td, sent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (identity, key) DO UPDATE SET
    sent = sent + excluded.sent,
    name = CASE WHEN (excluded.t, excluded.name) < (t, name) THEN excluded.name ELSE name END,
    t = min(t, excluded.t)
"""

_UPSERT_LINK = """
INSERT INTO links (a, b, t, sent, source) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (a, b) DO UPDATE SET
    sent = sent + excluded.sent,
    source = CASE WHEN (excluded.t, excluded.source) < (t, source)
        THEN excluded.source ELSE source END,
    t = min(t, excluded.t)
"""

_UPSERT_QUARANTINE = """
INSERT INTO quarantine (key, tenant, reason, raw, received, source, sent)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    sent = sent + excluded.sent,
    source = min(source, excluded.source)
"""

_TOUCH_IDENTITY = """
UPDATE identities SET
    first_seen = min(first_seen, ?1),
    customer_since = CASE
        WHEN ?2 IS NULL THEN customer_since
        WHEN customer_since IS NULL OR ?2 < customer_since THEN ?2
        ELSE customer_since END
WHERE id = ?3 AND (first_seen > ?1
    OR (?2 IS NOT NULL AND (customer_since IS NULL OR customer_since > ?2)))
"""


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Store:
    """A connection to one identity database.

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file, or ``":memory:"``.
    create : bool
        Create the file and its schema when missing. When false, a missing file is a
        :class:`~identity.errors.StoreError`.
    durable : bool
        ``synchronous=FULL`` (every commit survives power loss) rather than ``NORMAL``
        (every commit survives a killed process).
    settings : dict of str to str
        Settings recorded in ``meta`` when the database is created, and checked to match
        when it is reopened.

    Examples
    --------
    >>> store = Store(":memory:")
    >>> store.meta("schema_version") == str(SCHEMA_VERSION)
    True
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        create: bool = True,
        durable: bool = True,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        memory = self.path == ":memory:" or self.path == ""
        if not memory and not create and not os.path.exists(self.path):
            raise StoreError(self.path, "no such database")
        if not memory and os.path.isdir(self.path):
            raise StoreError(self.path, "is a directory, not a database file")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"cannot open: {exc}") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        try:
            self._prepare(memory, durable, settings or {})
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(self.path, f"not a usable SQLite database ({exc})") from None
        except StoreError:
            conn.close()
            raise

    def _prepare(self, memory: bool, durable: bool, settings: dict[str, str]) -> None:
        conn = self.conn
        tables = set(self.db.table_names())
        if not tables:
            if not memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = {
                "application": APPLICATION,
                "schema_version": str(SCHEMA_VERSION),
                "generation": "0",
                **settings,
            }
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        elif not tables >= _TABLES or self.meta("application") != APPLICATION:
            raise StoreError(self.path, "not an identity database (it has other tables)")
        version = int(self.meta("schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise StoreError(
                self.path,
                f"schema version {version} is newer than this identity "
                f"(knows {SCHEMA_VERSION}); upgrade identity",
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)
        for key, value in settings.items():
            stored = self.meta(key)
            if stored != value:
                raise StoreError(
                    self.path, f"was created with {key}={stored!r}, cannot open with {value!r}"
                )
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        # a bounded page cache (128 MiB) and a 64 MiB WAL between checkpoints, so hot index
        # pages are written back once per checkpoint rather than once per batch (no mmap:
        # memory must not grow with the file)
        conn.execute("PRAGMA cache_size=-131072")
        conn.execute("PRAGMA temp_store=MEMORY")
        if not memory:
            conn.execute("PRAGMA wal_autocheckpoint=16384")
        conn.execute("PRAGMA busy_timeout=10000")

    def _migrate(self, version: int) -> None:
        """Bring a database of an older schema `version` up to date, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # -- transactions and meta --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block as one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run the block inside the open transaction so that it can fail alone.

        On an exception, what the block wrote is undone (``ROLLBACK TO``) and the
        exception propagates; the transaction stays open.
        """
        self.conn.execute("SAVEPOINT one_call")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO one_call")
                self.conn.execute("RELEASE one_call")
            raise
        self.conn.execute("RELEASE one_call")

    def meta(self, key: str) -> str | None:
        """Return one ``meta`` value, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set one ``meta`` value."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def batch_state(self) -> tuple[int, int, int, int, int]:
        """Return, in one statement, what a write batch needs to know first.

        ``(generation, next identity id, largest event id, largest property record id,
        largest link id)``.
        """
        row = self.conn.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'generation'), "
            "(SELECT max(id) FROM identities), (SELECT max(id) FROM events), "
            "(SELECT max(id) FROM properties), (SELECT max(id) FROM links)"
        ).fetchone()
        return (
            int(row[0] or 0),
            int(row[1] or 0) + 1,
            int(row[2] or 0),
            int(row[3] or 0),
            int(row[4] or 0),
        )

    def next_identity_id(self) -> int:
        """Return the id the next new identity row gets."""
        row = self.conn.execute("SELECT max(id) FROM identities").fetchone()
        return int(row[0] or 0) + 1

    def max_ids(self) -> tuple[int, int, int]:
        """Return the largest row id of events, properties and links.

        Rows of these tables are never deleted, so the difference of two readings is the
        number of rows inserted in between: duplicates are counted without a look-up.
        """
        row = self.conn.execute(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM properties), "
            "(SELECT max(id) FROM links)"
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    # -- writes -----------------------------------------------------------------------

    def find_ids(
        self, tenant: str, identities: Sequence[str]
    ) -> dict[str, tuple[int, int, int | None]]:
        """Return ``{identity: (row id, first_seen, customer_since)}`` of those that exist."""
        found: dict[str, tuple[int, int, int | None]] = {}
        for chunk in _chunks(identities):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT identity, id, first_seen, customer_since FROM identities "
                f"WHERE tenant = ? AND identity IN ({marks})",
                (tenant, *chunk),
            )
            for name, row_id, first_seen, since in rows:
                found[name] = (row_id, first_seen, since)
        return found

    def persons_of(self, ids: Sequence[int]) -> dict[int, tuple[int, int, str, str]]:
        """Return ``{identity row id: (person id, person size, display id, tenant)}``."""
        found: dict[int, tuple[int, int, str, str]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT i.id, p.id, p.size, p.person, p.tenant FROM identities i "
                f"JOIN persons p ON p.id = i.person WHERE i.id IN ({marks})",
                tuple(chunk),
            )
            for ident, person, size, display, tenant in rows:
                found[ident] = (person, size, display, tenant)
        return found

    def insert_identities(self, rows: Iterable[tuple[int, str, str, int, int, int | None]]) -> None:
        """Insert rows ``(id, tenant, identity, person, first_seen, customer_since)``."""
        self.conn.executemany(
            "INSERT INTO identities (id, tenant, identity, person, first_seen, customer_since) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def touch_identities(self, rows: Iterable[tuple[int, int | None, int]]) -> None:
        """Lower ``first_seen`` / ``customer_since`` with rows ``(t, customer_t, id)``."""
        self.conn.executemany(_TOUCH_IDENTITY, rows)

    def relabel(self, moves: Iterable[tuple[int, int]]) -> None:
        """Move every identity of person ``old`` to person ``new``, for ``(new, old)`` pairs.

        Notes
        -----
        O(size of ``old``) each, over the ``identities_person`` index.
        """
        self.conn.executemany("UPDATE identities SET person = ? WHERE person = ?", moves)

    def delete_persons(self, ids: Iterable[tuple[int]]) -> None:
        """Delete person rows absorbed by a merge."""
        self.conn.executemany("DELETE FROM persons WHERE id = ?", ids)

    def upsert_persons(self, rows: Iterable[tuple[int, str, str, int]]) -> None:
        """Insert or update person rows ``(id, tenant, display id, size)``."""
        self.conn.executemany(
            "INSERT INTO persons (id, tenant, person, size) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET person = excluded.person, size = excluded.size",
            rows,
        )

    def upsert_links(self, rows: Iterable[tuple[int, int, int, int, str]]) -> None:
        """Insert alias links ``(a, b, t, sent, source)``; a known pair keeps the earliest t."""
        self.conn.executemany(_UPSERT_LINK, rows)

    def upsert_events(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert events; a duplicate is counted and keeps the smallest (t, name, properties)."""
        self.conn.executemany(_UPSERT_EVENT, rows)

    def upsert_properties(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert property-set records; a duplicate is counted and keeps the earliest t."""
        self.conn.executemany(_UPSERT_PROPERTY, rows)

    def upsert_quarantine(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert quarantined calls; the same raw call, reason and time is counted once."""
        self.conn.executemany(_UPSERT_QUARANTINE, rows)

    # -- inputs (resumable ingest) ------------------------------------------------------

    def input_state(self, source: str) -> tuple[str, int, int, bool] | None:
        """Return ``(fingerprint, position, calls, finished)`` recorded for an input, or None.

        Examples
        --------
        >>> store = Store(":memory:")
        >>> store.input_state("/logs/access.log") is None
        True
        >>> with store.transaction():
        ...     store.record_input("/logs/access.log", "9:ab", 9, 2, finished=True, updated=5)
        >>> store.input_state("/logs/access.log")
        ('9:ab', 9, 2, True)
        """
        row = self.conn.execute(
            "SELECT fingerprint, position, calls, finished FROM inputs WHERE source = ?",
            (source,),
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]), bool(row[3]))

    def record_input(
        self,
        source: str,
        fingerprint: str,
        position: int,
        calls: int,
        *,
        finished: bool,
        updated: int,
        received: int | None = None,
    ) -> None:
        """Record how far an input was ingested.

        Call it in the transaction of the batch that got it there, so that the position
        never runs ahead of the data. `received` is the receive time its calls that carry
        none were given (see :meth:`received_for`).
        """
        self.conn.execute(
            "INSERT INTO inputs (source, fingerprint, position, calls, finished, updated, "
            "received) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, position = excluded.position, "
            "calls = excluded.calls, finished = excluded.finished, updated = excluded.updated, "
            "received = excluded.received",
            (source, fingerprint, position, calls, int(finished), updated, received),
        )

    def received_for(self, digest: str) -> int | None:
        """Return the receive time first given to an input whose content hashes to `digest`.

        `digest` is the hash part of an input fingerprint (``size:digest``). Reading the
        same content again (a copy of the file, stdin, ``--force``) gives its calls that
        carry no ``_t`` the same receive time, so that they are duplicates, not new calls.

        Examples
        --------
        >>> store = Store(":memory:")
        >>> with store.transaction():
        ...     store.record_input("/a", "9:ab", 9, 2, finished=True, updated=5, received=7)
        >>> store.received_for("ab"), store.received_for("cd")
        (7, None)
        """
        row = self.conn.execute(
            "SELECT received FROM inputs WHERE substr(fingerprint, instr(fingerprint, ':') + 1)"
            " = ? AND received IS NOT NULL ORDER BY received LIMIT 1",
            (digest,),
        ).fetchone()
        return None if row is None else int(row[0])

    # -- reads ------------------------------------------------------------------------

    def identity(self, tenant: str, identity: str) -> tuple[int, int, str] | None:
        """Return ``(row id, person id, person display id)`` of one identity, or None."""
        row = self.conn.execute(
            "SELECT i.id, i.person, p.person FROM identities i "
            "JOIN persons p ON p.id = i.person WHERE i.tenant = ? AND i.identity = ?",
            (tenant, identity),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def members(self, person: int) -> list[tuple[int, str, int, int | None]]:
        """Return ``(id, identity, first_seen, customer_since)`` of a person's identities."""
        return self.conn.execute(
            "SELECT id, identity, first_seen, customer_since FROM identities WHERE person = ?",
            (person,),
        ).fetchall()

    def identities_by_id(self, ids: Sequence[int]) -> list[tuple[int, str, int, int | None]]:
        """Return ``(id, identity, first_seen, customer_since)`` of identity rows."""
        out: list[tuple[int, str, int, int | None]] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.extend(
                self.conn.execute(
                    "SELECT id, identity, first_seen, customer_since FROM identities "
                    f"WHERE id IN ({marks})",
                    tuple(chunk),
                )
            )
        return out

    def neighbours(self, ids: Sequence[int], as_of: int) -> list[tuple[int, int, int]]:
        """Return links ``(a, b, t)`` touching `ids` with ``t <= as_of``."""
        out: list[tuple[int, int, int]] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.extend(
                self.conn.execute(
                    f"SELECT a, b, t FROM links WHERE a IN ({marks}) AND t <= ? "
                    f"UNION SELECT a, b, t FROM links WHERE b IN ({marks}) AND t <= ?",
                    (*chunk, as_of, *chunk, as_of),
                )
            )
        return out

    def property_records(self, ids: Sequence[int]) -> list[tuple[int, str, str, str, int, int]]:
        """Return ``(identity id, name_key, name, value, t, sent)`` of identity rows."""
        out: list[tuple[int, str, str, str, int, int]] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.extend(
                self.conn.execute(
                    "SELECT identity, name_key, name, value, t, sent FROM properties "
                    f"WHERE identity IN ({marks})",
                    tuple(chunk),
                )
            )
        return out

    def events_of(self, ids: Sequence[int]) -> list[tuple[int, str, int, str, int]]:
        """Return ``(identity id, name, t, properties JSON, sent)`` of identity rows."""
        out: list[tuple[int, str, int, str, int]] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.extend(
                self.conn.execute(
                    "SELECT identity, name, t, properties, sent FROM events "
                    f"WHERE identity IN ({marks})",
                    tuple(chunk),
                )
            )
        return out

    def tenant_members(self, tenant: str) -> Iterator[tuple[str, int, str, int | None]]:
        """Yield ``(person display id, id, identity, customer_since)``, by person."""
        return iter(
            self.conn.execute(
                "SELECT p.person, i.id, i.identity, i.customer_since FROM identities i "
                "JOIN persons p ON p.id = i.person WHERE i.tenant = ? ORDER BY p.person",
                (tenant,),
            )
        )

    def tenant_properties(self, tenant: str) -> Iterator[tuple[str, str, str, str, int]]:
        """Yield ``(person display id, name_key, name, value, t)``, by person."""
        return iter(
            self.conn.execute(
                "SELECT p.person, r.name_key, r.name, r.value, r.t FROM properties r "
                "JOIN identities i ON i.id = r.identity JOIN persons p ON p.id = i.person "
                "WHERE i.tenant = ? ORDER BY p.person",
                (tenant,),
            )
        )

    def tenant_event_counts(self, tenant: str) -> Iterator[tuple[str, int]]:
        """Yield ``(person display id, number of events)``, by person."""
        return iter(
            self.conn.execute(
                "SELECT p.person, count(*) FROM events e "
                "JOIN identities i ON i.id = e.identity JOIN persons p ON p.id = i.person "
                "WHERE i.tenant = ? GROUP BY p.person ORDER BY p.person",
                (tenant,),
            )
        )

    def tenant_identities(self, tenant: str, as_of: int) -> list[tuple[int, str, int, int | None]]:
        """Return ``(id, identity, first_seen, customer_since)`` known by `as_of`."""
        return self.conn.execute(
            "SELECT id, identity, first_seen, customer_since FROM identities "
            "WHERE tenant = ? AND first_seen <= ?",
            (tenant, as_of),
        ).fetchall()

    def tenant_links(self, tenant: str, as_of: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield the links ``(a, b)`` of a tenant (with ``t <= as_of`` when given)."""
        limit = "" if as_of is None else " AND l.t <= ?"
        params: tuple[Any, ...] = (tenant,) if as_of is None else (tenant, as_of)
        return iter(
            self.conn.execute(
                "SELECT l.a, l.b FROM links l JOIN identities i ON i.id = l.a "
                f"WHERE i.tenant = ?{limit}",
                params,
            )
        )

    def tenants(self) -> list[str]:
        """Return every tenant with at least one identity, sorted."""
        rows = self.conn.execute("SELECT DISTINCT tenant FROM identities ORDER BY tenant")
        return [r[0] for r in rows]

    def quarantine(
        self, tenant: str | None = None, reason: str | None = None
    ) -> Iterator[tuple[str, str, int, str | None, str, int]]:
        """Yield ``(reason, raw, received, tenant, source, sent)`` of quarantined calls."""
        where, params = [], []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return iter(
            self.conn.execute(
                "SELECT reason, raw, received, tenant, source, sent FROM quarantine"
                f"{clause} ORDER BY received, reason, raw",
                params,
            )
        )

    def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Return row counts (identities, people, links, events, ...) overall or per tenant."""
        if tenant is None:
            sql = (
                "SELECT (SELECT count(*) FROM identities), (SELECT count(*) FROM persons), "
                "(SELECT count(*) FROM identities WHERE customer_since IS NOT NULL), "
                "(SELECT count(*) FROM links), (SELECT count(*) FROM events), "
                "(SELECT coalesce(sum(sent), 0) FROM events), "
                "(SELECT count(*) FROM properties), (SELECT coalesce(sum(sent), 0) FROM quarantine)"
            )
            row = self.conn.execute(sql).fetchone()
        else:
            ids = "SELECT id FROM identities WHERE tenant = ?1"
            sql = (
                "SELECT (SELECT count(*) FROM identities WHERE tenant = ?1), "
                "(SELECT count(*) FROM persons WHERE tenant = ?1), "
                "(SELECT count(*) FROM identities WHERE tenant = ?1 "
                "AND customer_since IS NOT NULL), "
                f"(SELECT count(*) FROM links WHERE a IN ({ids})), "
                f"(SELECT count(*) FROM events WHERE identity IN ({ids})), "
                f"(SELECT coalesce(sum(sent), 0) FROM events WHERE identity IN ({ids})), "
                f"(SELECT count(*) FROM properties WHERE identity IN ({ids})), "
                "(SELECT coalesce(sum(sent), 0) FROM quarantine WHERE tenant = ?1)"
            )
            row = self.conn.execute(sql, (tenant,)).fetchone()
        names = (
            "identities",
            "people",
            "customer_ids",
            "links",
            "events",
            "events_received",
            "property_records",
            "quarantined",
        )
        return dict(zip(names, (int(x) for x in row), strict=True))

    def identity_persons(self) -> Iterator[tuple[int, str, int]]:
        """Yield ``(id, identity, person)`` of every identity (consistency check)."""
        return iter(self.conn.execute("SELECT id, identity, person FROM identities"))

    def inconsistencies(self, limit: int = 20) -> list[str]:
        """Return what SQL alone can tell is wrong with the stored people and links.

        Person rows that do not match their identities, identities without a person, links
        to unknown identities or across tenants.
        """
        problems: list[str] = []
        rows = self.conn.execute(
            "SELECT p.person, p.size, p.tenant, g.n, g.smallest, g.t1, g.t2 FROM persons p "
            "LEFT JOIN (SELECT person, count(*) AS n, min(identity) AS smallest, "
            "min(tenant) AS t1, max(tenant) AS t2 FROM identities GROUP BY person) g "
            "ON g.person = p.id WHERE g.n IS NULL OR g.n != p.size OR g.smallest != p.person "
            "OR g.t1 != p.tenant OR g.t2 != p.tenant LIMIT ?",
            (limit,),
        )
        for display, size, tenant, n, smallest, t1, t2 in rows:
            if n is None:
                problems.append(f"person {display!r} has no identities")
            elif smallest != display:
                problems.append(f"person {display!r} should be named {smallest!r}")
            elif n != size:
                problems.append(f"person {display!r} has size {size}, not {n}")
            else:
                problems.append(f"person {display!r} of {tenant!r} mixes {t1!r} and {t2!r}")
        rows = self.conn.execute(
            "SELECT identity FROM identities WHERE person NOT IN (SELECT id FROM persons) LIMIT ?",
            (limit,),
        )
        problems += [f"identity {name!r} points at a missing person" for (name,) in rows]
        rows = self.conn.execute(
            "SELECT l.a, l.b, x.tenant, y.tenant FROM links l "
            "LEFT JOIN identities x ON x.id = l.a LEFT JOIN identities y ON y.id = l.b "
            "WHERE x.id IS NULL OR y.id IS NULL OR x.tenant != y.tenant OR l.a >= l.b LIMIT ?",
            (limit,),
        )
        for a, b, ta, tb in rows:
            if ta is None or tb is None:
                problems.append(f"link ({a}, {b}) names an unknown identity")
            elif ta != tb:
                problems.append(f"link ({a}, {b}) crosses tenants")
            else:
                problems.append(f"link ({a}, {b}) is not ordered")
        return problems

    def all_links(self) -> Iterator[tuple[int, int]]:
        """Yield every link ``(a, b)`` (consistency check)."""
        return iter(self.conn.execute("SELECT a, b FROM links"))

    def quick_check(self) -> list[str]:
        """Return SQLite's own ``PRAGMA quick_check`` problems (empty when fine)."""
        rows = [r[0] for r in self.conn.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    # -- export ------------------------------------------------------------------------

    def export_identities(self, tenant: str) -> Iterator[tuple[int, str, int, int | None]]:
        """Yield ``(id, identity, first_seen, customer_since)`` of a tenant's identities.

        By identity, in code point order, streamed over the ``(tenant, identity)`` index.
        """
        return iter(
            self.conn.execute(
                "SELECT id, identity, first_seen, customer_since FROM identities "
                "WHERE tenant = ? ORDER BY identity",
                (tenant,),
            )
        )

    def export_events(self, identity: int) -> list[tuple[str, int, int, str]]:
        """Return ``(name, t, td, properties JSON)`` of one identity row's events."""
        return self.conn.execute(
            "SELECT name, t, td, properties FROM events WHERE identity = ?", (identity,)
        ).fetchall()

    def export_properties(self, identity: int) -> list[tuple[str, str, str, int, int]]:
        """Return ``(name_key, name, value, t, td)`` of one identity row's property records."""
        return self.conn.execute(
            "SELECT name_key, name, value, t, td FROM properties WHERE identity = ?", (identity,)
        ).fetchall()

    def export_links(self, identity: int) -> list[tuple[str, int]]:
        """Return ``(other identity, t)`` of every alias link of one identity row."""
        return self.conn.execute(
            "SELECT i.identity, l.t FROM links l JOIN identities i ON i.id = l.b WHERE l.a = ?1 "
            "UNION ALL "
            "SELECT i.identity, l.t FROM links l JOIN identities i ON i.id = l.a WHERE l.b = ?1",
            (identity,),
        ).fetchall()
