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
``identity_updates``
    only while a bulk load runs (or after one was stopped, until the next open): the new
    state of stored identities it changed, applied when it ends (:meth:`Store.defer_indexes`).

A merge relabels only the smaller person's rows (``UPDATE identities SET person = ?
WHERE person = ?`` over an index); the display id lives one row away in ``persons``, so a
merge costs O(smaller side), never a rewrite of the larger one.

Errors cross one boundary: every SQLite error of every method is mapped once, by
:func:`sqlite_error` (inside :class:`SQLiteBoundary`), to identity's tree --
:class:`~identity.errors.DatabaseLockedError`, :class:`~identity.errors.ReadOnlyDatabaseError`,
:class:`~identity.errors.DiskFullError`, :class:`~identity.errors.DamagedDatabaseError` or a
plain :class:`~identity.errors.StoreError` -- chained to the original. A
:class:`~identity.errors.StoreError` means the database could not do its work; an error
about one value (:class:`sqlite3.IntegrityError`, a binding error, :class:`OverflowError`)
is left as it is, so that the engine can retry a batch call by call.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Concatenate, Literal, NamedTuple, ParamSpec, TypeVar

import sqlite_utils

from .errors import (
    ConfigurationError,
    DamagedDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    ReadOnlyDatabaseError,
    StoreError,
)

__all__ = [
    "BUSY_TIMEOUT_ENV",
    "CACHE_SIZE_ENV",
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_CACHE_SIZE",
    "SCHEMA_VERSION",
    "Boundary",
    "SQLiteBoundary",
    "Store",
    "lock_holder",
    "parse_cache_size",
    "sqlite_error",
]

SCHEMA_VERSION = 5

#: The views of the schema (added to older databases by migration 2 -> 3).
_VIEWS = """
CREATE VIEW people AS
SELECT i.tenant, i.identity, p.person, i.customer_since IS NOT NULL AS customer_id,
    i.first_seen, i.customer_since
FROM identities i JOIN persons p ON p.id = i.person;
CREATE VIEW person_links AS
SELECT x.tenant, p.person, x.identity AS a, y.identity AS b, l.t, l.sent, l.source
FROM links l JOIN identities x ON x.id = l.a JOIN identities y ON y.id = l.b
JOIN persons p ON p.id = x.person
"""

#: Relationships declared as foreign keys (for Datasette, sqlite-utils and other tools; not
#: enforced while writing, as SQLite's default is: ``identity check`` verifies them).
_FOREIGN_KEYS = {
    "identities": [("person", "persons", "id")],
    "links": [("a", "identities", "id"), ("b", "identities", "id")],
    "events": [("identity", "identities", "id")],
    "properties": [("identity", "identities", "id")],
}


def _declare_foreign_keys(db: sqlite_utils.Database) -> None:
    """Rebuild the tables with their foreign keys (sqlite-utils' ``transform``), add views."""
    for name, keys in _FOREIGN_KEYS.items():
        table = db.table(name)
        have = {(fk.column, fk.other_table, fk.other_column) for fk in table.foreign_keys}
        missing = [key for key in keys if key not in have]
        if missing:
            table.transform(add_foreign_keys=missing)
    for statement in _VIEWS.split(";"):
        if statement.strip():
            db.conn.execute(statement.replace("CREATE VIEW", "CREATE VIEW IF NOT EXISTS"))


#: What turns a database of schema version N into N + 1, in one transaction at open:
#: SQL statements, or functions of the sqlite-utils database.
#: 2: ``inputs.received``, the receive time given to an input's calls that carry none.
#: 3: foreign keys (``identities.person``, ``links.a``/``b``, ``events``/``properties``
#: ``.identity``) and the views ``people`` and ``person_links``.
#: 4: events and property records of new databases are unique by ``(td, identity, key)``
#: (the same rows: ``key`` hashes ``td``), read by identity over ``events_identity`` /
#: ``properties_identity``; older databases keep ``UNIQUE (identity, key)`` (no rewrite
#: of their tables at open: :class:`Store` detects which one a database has).
#: 5: a bulk load may leave the ``identity_updates`` table to apply when it is stopped
#: (:data:`DEFERRED_KEY` says so), which an older identity would not apply: it refuses the
#: database. New databases key links by ``UNIQUE (b, a)``, the newer identity first (a
#: link's new rows go at the right end of the index), read by ``a`` over ``links_a``;
#: older ones keep ``UNIQUE (a, b)`` and ``links_b`` (the same rows and upsert either way).
_MIGRATIONS: dict[int, tuple[str | Callable[[sqlite_utils.Database], None], ...]] = {
    1: ("ALTER TABLE inputs ADD COLUMN received INTEGER",),
    2: (_declare_foreign_keys,),
    3: (),
    4: (),
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
    person INTEGER NOT NULL REFERENCES persons (id),
    first_seen INTEGER NOT NULL,
    customer_since INTEGER
);
CREATE UNIQUE INDEX identities_tenant_identity ON identities (tenant, identity);
CREATE INDEX identities_person ON identities (person);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    person TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE links (
    id INTEGER PRIMARY KEY,
    a INTEGER NOT NULL REFERENCES identities (id),
    b INTEGER NOT NULL REFERENCES identities (id),
    t INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (b, a)
);
CREATE INDEX links_a ON links (a);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities (id),
    key BLOB NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    t INTEGER NOT NULL,
    td INTEGER NOT NULL,
    properties TEXT NOT NULL,
    sent INTEGER NOT NULL,
    UNIQUE (td, identity, key)
);
CREATE INDEX events_identity ON events (identity);
CREATE TABLE properties (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities (id),
    key BLOB NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    t INTEGER NOT NULL,
    td INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    UNIQUE (td, identity, key)
);
CREATE INDEX properties_identity ON properties (identity);
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

#: Indexes that only reads and a second writer need: a bulk load into an empty database
#: (:meth:`Store.defer_indexes`) goes without them and builds them once, after (at
#: :meth:`Store.close`, before the first read that could use them, or at the next open
#: after a kill). ``identities_tenant_identity`` is the schema's UNIQUE (tenant, identity):
#: while it is deferred, the writer's complete identity cache is what keeps names unique.
#: (Databases created before it was named keep the same constraint inline, not deferrable.)
#: ``events_identity`` and ``properties_identity`` exist in databases of schema 4 and later
#: only, ``links_a`` in databases of schema 5 and later, ``links_b`` in older ones; each is
#: deferred where it exists.
_DEFERRABLE = {
    "identities_tenant_identity": "CREATE UNIQUE INDEX IF NOT EXISTS identities_tenant_identity "
    "ON identities (tenant, identity)",
    "links_a": "CREATE INDEX IF NOT EXISTS links_a ON links (a)",
    "links_b": "CREATE INDEX IF NOT EXISTS links_b ON links (b)",
    "identities_person": "CREATE INDEX IF NOT EXISTS identities_person ON identities (person)",
    "events_identity": "CREATE INDEX IF NOT EXISTS events_identity ON events (identity)",
    "properties_identity": "CREATE INDEX IF NOT EXISTS properties_identity "
    "ON properties (identity)",
}
#: What :data:`DEFERRED_KEY` lists for the ``persons`` table.
_PERSONS = "persons"
#: What :data:`DEFERRED_KEY` lists while the ``identity_updates`` table waits to be applied:
#: the new person, ``first_seen`` and ``customer_since`` of stored identities that a bulk
#: load's merges and calls changed, appended batch after batch (the last row of an identity
#: holds its state) instead of updating identities in place, one random page each.
_UPDATES = "identity_updates"
_CREATE_UPDATES = """
CREATE TABLE identity_updates (
    id INTEGER NOT NULL,
    person INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    customer_since INTEGER
)
"""
#: The updates into ``identities``: the last row of each identity, in row id order (one
#: pass over the table, each page written once).
_APPLY_UPDATES = """
UPDATE identities
SET person = u.person, first_seen = u.first_seen, customer_since = u.customer_since
FROM (
    SELECT id, person, first_seen, customer_since, max(rowid) FROM identity_updates
    GROUP BY id ORDER BY id
) AS u
WHERE identities.id = u.id
"""
#: The deferrable indexes every database has (a bulk load defers nothing without them).
#: ``identities_person`` is what :meth:`Store.relabel` moves a person's identities by; the
#: bulk load's writer, whose cache knows every person's members, relabels them by row id
#: (:meth:`Store.relabel_members`) or appends their new state (:data:`_UPDATES`).
_ALWAYS_DEFERRABLE = ("identities_tenant_identity", "identities_person")
#: The ``meta`` key that lists the indexes left to build (committed with their drop), and
#: ``persons`` when the ``persons`` table is left to fill.
DEFERRED_KEY = "deferred_indexes"

#: The persons of a bulk load, from ``identities.person``: one sorted pass, after it.
#: A person's display id is its smallest member (``min`` compares UTF-8 bytes, which is
#: code point order, as the write path compares them).
_FILL_PERSONS = """
INSERT INTO persons (id, tenant, person, size)
SELECT person, min(tenant), min(identity), count(*) FROM identities NOT INDEXED
GROUP BY person ORDER BY person
"""

#: Store methods of the write path, which never need a deferred index.
_WRITE_PATH = frozenset(
    {
        "batch_state", "next_identity_id", "max_ids", "persons_of", "insert_identities",
        "touch_identities", "relabel_members", "append_identity_updates", "delete_persons",
        "upsert_persons", "upsert_links", "upsert_events", "upsert_properties",
        "upsert_quarantine", "input_state", "record_input", "received_for", "meta", "set_meta",
        "checkpoint", "close", "defer_indexes", "build_deferred_indexes",
    }
)  # fmt: skip

_TABLES = {
    "meta",
    "identities",
    "persons",
    "links",
    "events",
    "properties",
    "quarantine",
    "inputs",
}

#: The dedupe keys of events and property records: ``UNIQUE (td, identity, key)`` in
#: databases created by schema 4 and later, ``UNIQUE (identity, key)`` before (the same
#: rows either way, since ``key`` hashes ``td``). Time first, so that a batch's new rows
#: go at the right end of the index however old their identities are: a batch of an
#: access log dirties a few pages of it, not one page per event of an earlier identity.
_BY_TIME = "td, identity, key"
_BY_IDENTITY = "identity, key"

_UPSERT_EVENT = """
INSERT INTO events (identity, key, name, name_key, t, td, properties, sent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT ({target}) DO UPDATE SET
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
ON CONFLICT ({target}) DO UPDATE SET
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


class IdentityRow(NamedTuple):
    """A row of ``identities``."""

    id: int
    tenant: str
    identity: str
    person: int
    first_seen: int
    customer_since: int | None


class PersonRow(NamedTuple):
    """A row of ``persons``: ``person`` is the display id (the smallest member)."""

    id: int
    tenant: str
    person: str
    size: int


class LinkRow(NamedTuple):
    """A row of ``links`` (``a < b``)."""

    a: int
    b: int
    t: int
    sent: int
    source: str


class EventRow(NamedTuple):
    """A row of ``events``: ``key`` is the dedupe fingerprint."""

    identity: int
    key: bytes
    name: str
    name_key: str
    t: int
    td: int
    properties: str
    sent: int


class PropertyRow(NamedTuple):
    """A row of ``properties`` (one property record)."""

    identity: int
    key: bytes
    name_key: str
    name: str
    value: str
    t: int
    td: int
    sent: int


class QuarantineRow(NamedTuple):
    """A row of ``quarantine``: ``key`` fingerprints (raw, reason, received)."""

    key: bytes
    tenant: str | None
    reason: str
    raw: str
    received: int
    source: str
    sent: int


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the error boundary ---------------------------------------------------------------

#: Seconds a connection waits for another writer's lock before giving up with
#: :class:`~identity.errors.DatabaseLockedError` (SQLite's busy timeout). Override it per
#: store with ``busy_timeout=``, or for every store of a process (the command line too)
#: with the environment variable :data:`BUSY_TIMEOUT_ENV`.
DEFAULT_BUSY_TIMEOUT = 10.0

#: The environment variable that sets the busy timeout, in seconds, when a store is opened
#: without ``busy_timeout=``.
BUSY_TIMEOUT_ENV = "IDENTITY_BUSY_TIMEOUT"

#: Bytes of SQLite page cache per connection when not told otherwise (256 MiB). The cache is
#: a bound, not an allocation: memory grows up to it as pages are read. Override it per store
#: with ``cache_size=``, or for every store of a process with :data:`CACHE_SIZE_ENV`.
DEFAULT_CACHE_SIZE = 256 * 2**20

#: The environment variable that sets the page cache size (``512MiB``, ``2GiB``, ``300M``,
#: or bytes), when a store is opened without ``cache_size=``.
CACHE_SIZE_ENV = "IDENTITY_CACHE_SIZE"

#: Pages of write-ahead log between automatic checkpoints (1 GiB of 4 KiB pages): a hot
#: page rewritten by many batches is copied back to the database once per checkpoint, not
#: once per 64 MiB of log. After a checkpoint the log file is cut back to
#: :data:`_WAL_KEEP` bytes.
_WAL_PAGES = 262_144
_WAL_KEEP = 64 * 2**20

_MAGIC = b"SQLite format 3\x00"

# SQLite's primary result codes (sqlite3.SQLITE_* exists only from Python 3.11)
_ERROR, _PERM, _BUSY, _LOCKED, _READONLY, _INTERRUPT, _IOERR, _CORRUPT = 1, 3, 5, 6, 8, 9, 10, 11
_FULL, _CANTOPEN, _NOTADB = 13, 14, 26
_IOERR_SHORT_READ = _IOERR | (2 << 8)
_READONLY_DIRECTORY = _READONLY | (6 << 8)

# Python 3.10 has no sqlite_errorcode: the code is read from SQLite's message instead
_MESSAGES = (
    ("database is locked", _BUSY),
    ("database table is locked", _LOCKED),
    ("readonly database", _READONLY),
    ("disk is full", _FULL),
    ("malformed", _CORRUPT),
    ("not a database", _NOTADB),
    ("disk i/o error", _IOERR),
    ("unable to open", _CANTOPEN),
    ("interrupted", _INTERRUPT),
)

# errors about one value, or programming errors: never a StoreError
_VALUE_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.NotSupportedError,
)


class Boundary:
    """The store's one error boundary: backend errors in, :class:`StoreError` out.

    A reusable context manager (it keeps no state between uses, so one instance serves
    every call and nests). An exception of the backend's :attr:`errors` that
    :meth:`translate` maps to a :class:`~identity.errors.StoreError` is raised again as
    that error, chained to the original (``raise ... from``); anything else — an error about
    one value, a bug, ``KeyboardInterrupt`` — goes through unchanged.

    Another backend (DuckDB, Spark) plugs in with a subclass that sets :attr:`errors` and
    implements :meth:`translate`.

    Parameters
    ----------
    path : str
        The database, named in every error.
    """

    #: The backend's exception classes this boundary looks at.
    errors: tuple[type[BaseException], ...] = ()

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: object, exc: BaseException | None, traceback: object
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, self.errors):
            error = self.translate(exc)
            if error is not None:
                raise error from exc
        return False

    def translate(self, exc: BaseException) -> StoreError | None:
        """Return the :class:`StoreError` that `exc` means, or None to let it through."""
        raise NotImplementedError


class SQLiteBoundary(Boundary):
    """The error boundary of a SQLite store: see :func:`sqlite_error`.

    Examples
    --------
    >>> boundary = SQLiteBoundary("app.db")
    >>> with boundary:
    ...     sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    Traceback (most recent call last):
    ...
    identity.errors.StoreError: app.db: cannot use it: no such table: nowhere
    >>> with boundary:
    ...     sqlite3.connect(":memory:").execute("SELECT ?", (2**64,))
    Traceback (most recent call last):
    ...
    OverflowError: Python int too large to convert to SQLite INTEGER
    """

    errors = (sqlite3.Error,)

    __slots__ = ("busy_timeout", "readonly")

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        readonly: str | None = None,
    ) -> None:
        super().__init__(path)
        self.busy_timeout = busy_timeout
        self.readonly = readonly

    def translate(self, exc: BaseException) -> StoreError | None:
        """Return :func:`sqlite_error` of `exc` for this store."""
        assert isinstance(exc, sqlite3.Error)
        return sqlite_error(self.path, exc, busy_timeout=self.busy_timeout, readonly=self.readonly)


def _code(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code
    text = str(exc).lower()
    for needle, value in _MESSAGES:
        if needle in text:
            return value
    return _ERROR


def sqlite_error(
    path: str,
    exc: sqlite3.Error,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    readonly: str | None = None,
) -> StoreError | None:
    """Map one SQLite error to identity's exception tree, or None when it is about one value.

    This is the only place that decides what a SQLite error means.

    Parameters
    ----------
    path : str
        The database.
    exc : sqlite3.Error
        What SQLite raised.
    busy_timeout : float
        The busy timeout the connection used, in seconds (named in a lock error).
    readonly : str, optional
        Why the store was opened read-only, if it was (named in a read-only error).

    Returns
    -------
    StoreError or None
        The database could not do its work: :class:`~identity.errors.DatabaseLockedError`
        (busy, locked), :class:`~identity.errors.ReadOnlyDatabaseError`,
        :class:`~identity.errors.DiskFullError`, :class:`~identity.errors.DamagedDatabaseError`
        (corrupt, not a database, truncated) or a plain :class:`~identity.errors.StoreError`
        (I/O error, cannot open, schema trouble). None for a problem with one value or one
        statement (:class:`sqlite3.IntegrityError`, :class:`sqlite3.DataError`,
        :class:`sqlite3.InterfaceError`, :class:`sqlite3.ProgrammingError`), which the
        engine answers by retrying the batch call by call.

    Examples
    --------
    >>> sqlite_error("app.db", sqlite3.OperationalError("database or disk is full"))
    DiskFullError('app.db: cannot write: the disk is full (or the database reached its size limit); the transaction was rolled back')
    >>> sqlite_error("app.db", sqlite3.DatabaseError("database disk image is malformed"))
    DamagedDatabaseError('app.db: damaged: database disk image is malformed; restore it from a backup')
    >>> sqlite_error("app.db", sqlite3.IntegrityError("UNIQUE constraint failed: links.a")) is None
    True
    """  # noqa: E501
    if isinstance(exc, _VALUE_ERRORS):
        return None
    code = _code(exc)
    primary = code & 0xFF
    if primary in (_BUSY, _LOCKED):
        if primary == _LOCKED:
            return DatabaseLockedError(path, f"locked: {exc}")
        holder = lock_holder(path)
        who = "another writer" if holder is None else f"another writer ({holder})"
        return DatabaseLockedError(
            path,
            f"database is locked: {who} has held it for more than {busy_timeout:g} s; "
            f"try again later, or wait longer with {BUSY_TIMEOUT_ENV}=<seconds>",
        )
    if primary == _READONLY:
        if readonly is None and code == _READONLY_DIRECTORY:
            readonly = "its folder is not writable"
        return ReadOnlyDatabaseError(path, _readonly_problem(readonly, exc))
    if primary == _FULL:
        return DiskFullError(
            path,
            "cannot write: the disk is full (or the database reached its size limit); "
            "the transaction was rolled back",
        )
    if primary == _CORRUPT:
        return DamagedDatabaseError(path, f"damaged: {exc}; restore it from a backup")
    if primary == _NOTADB:
        return DamagedDatabaseError(
            path, f"damaged: {exc} (its header is damaged, or it is encrypted)"
        )
    if code == _IOERR_SHORT_READ:
        return DamagedDatabaseError(path, f"truncated: {exc}; restore it from a backup")
    if primary == _IOERR:
        return StoreError(path, f"I/O error: {exc}")
    if primary in (_CANTOPEN, _PERM):
        return StoreError(path, f"cannot open: {exc}")
    return StoreError(path, f"cannot use it: {exc}")


def _readonly_problem(reason: str | None, exc: object = None) -> str:
    if reason is None:
        return f"cannot write: the database is read-only ({exc})"
    return f"cannot write: the database is read-only ({reason})"


def lock_holder(path: str) -> str | None:
    """Describe the other process that holds a write lock on the database, if it can be told.

    Reads ``/proc/locks`` (Linux): SQLite's write lock is a POSIX lock on byte 120 of the
    ``-shm`` file (WAL mode) or on the lock bytes of the database file (rollback journal, or
    a connection in exclusive locking mode). Elsewhere, or when the lock was released in the
    meantime, None.

    Returns
    -------
    str or None
        ``"pid 4242: identity ingest --db app.db calls.txt"``, or ``"pid 4242"`` when its
        command line cannot be read.

    Examples
    --------
    >>> lock_holder("/nonexistent/app.db") is None
    True
    """
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    wanted: dict[str, tuple[int, int]] = {}
    for name, low, high in ((f"{path}-shm", 120, 120), (path, 0x40000000, 0x400001FF)):
        try:
            info = os.stat(name)
        except OSError:
            continue
        device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        wanted[device] = (low, high)
    me = os.getpid()
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or "->" in fields or fields[3] != "WRITE":
            continue
        span = wanted.get(fields[5])
        try:
            pid, start = int(fields[4]), int(fields[6])
            end = 2**63 if fields[7] == "EOF" else int(fields[7])
        except ValueError:
            continue
        if span is not None and pid > 0 and pid != me and start <= span[1] and end >= span[0]:
            return _describe_process(pid)
    return None


def _describe_process(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            args = [a.decode(errors="replace") for a in stream.read().split(b"\0") if a]
    except OSError:
        return f"pid {pid}"
    if not args:
        return f"pid {pid}"
    shown = [os.path.basename(args[0])]
    rest = args[1:]
    if shown[0].startswith("python") and rest and not rest[0].startswith("-"):
        shown.append(os.path.basename(rest.pop(0)))
    command = " ".join(" ".join(shown + rest).split())  # one line, whatever the arguments
    if len(command) > 100:
        command = command[:97] + "..."
    return f"pid {pid}: {command}"


def _busy_timeout(value: float | None) -> float:
    """Return the busy timeout in seconds: `value`, else the environment's, else the default.

    Examples
    --------
    >>> _busy_timeout(0.5)
    0.5
    >>> _busy_timeout(-1)
    Traceback (most recent call last):
    ...
    identity.errors.ConfigurationError: busy_timeout must be a number of seconds >= 0, not -1
    """
    if value is None:
        raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_BUSY_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(
                f"{BUSY_TIMEOUT_ENV} must be a number of seconds, not {raw!r}"
            ) from None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 2e6):
        raise ConfigurationError(f"busy_timeout must be a number of seconds >= 0, not {value!r}")
    return float(value)


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
          "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30}  # fmt: skip


def parse_cache_size(value: int | str | None) -> int:
    """Return the page cache size in bytes: `value`, else the environment's, else the default.

    A string may carry a unit: ``"512MiB"``, ``"2G"`` (binary), ``"300MB"`` (decimal).

    Examples
    --------
    >>> parse_cache_size(2**20), parse_cache_size("512MiB"), parse_cache_size("1g")
    (1048576, 536870912, 1073741824)
    >>> parse_cache_size("lots")
    Traceback (most recent call last):
    ...
    identity.errors.ConfigurationError: cache size must be bytes >= 1 MiB (such as 512MiB), not 'lots'
    """  # noqa: E501
    if value is None:
        value = os.environ.get(CACHE_SIZE_ENV, "").strip() or DEFAULT_CACHE_SIZE
    number: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace("_", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
        unit = text[len(digits) :].strip()
        if unit in _UNITS:
            with suppress(ValueError):
                number = float(digits) * _UNITS[unit]
    if number is None or not math.isfinite(number) or not 2**20 <= number <= 2**44:
        raise ConfigurationError(
            f"cache size must be bytes >= 1 MiB (such as 512MiB), not {value!r}"
        )
    return int(number)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(
    method: Callable[Concatenate[Store, _P], _R],
) -> Callable[Concatenate[Store, _P], _R]:
    """Run a store method inside the store's error boundary."""
    reads = method.__name__ not in _WRITE_PATH

    @functools.wraps(method)
    def translated(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.boundary:
            if reads and self.deferred:
                self.build_deferred_indexes()
            return method(self, *args, **kwargs)

    return translated


def _has_log(path: str) -> bool:
    """Whether a ``-wal`` or ``-journal`` file with content lies beside the database."""
    for suffix in ("-wal", "-journal"):
        try:
            if os.path.getsize(path + suffix) > 0:
                return True
        except OSError:
            pass
    return False


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
    readonly : bool, optional
        True: open read-only (queries work, :meth:`transaction` raises
        :class:`~identity.errors.ReadOnlyDatabaseError`). None (the default): read-only
        exactly when the file or its folder cannot be written. False: never read-only.
    busy_timeout : float, optional
        Seconds to wait for another writer's lock (default: ``$IDENTITY_BUSY_TIMEOUT``, else
        :data:`DEFAULT_BUSY_TIMEOUT`, 10 s).
    cache_size : int or str, optional
        Most bytes of SQLite page cache (``"1GiB"`` or a number; default:
        ``$IDENTITY_CACHE_SIZE``, else :data:`DEFAULT_CACHE_SIZE`, 256 MiB). A database whose
        indexes fit in it is written without reading pages back from the file.

    Raises
    ------
    StoreError
        The file is missing (and `create` is false), a directory, empty (and `create` is
        false), not SQLite, another application's, of a newer schema, or opened with other
        settings.
    DamagedDatabaseError
        Truncated, a damaged header or schema, or an expected table is missing.
    DatabaseLockedError
        Another process holds a lock longer than the busy timeout.
    ReadOnlyDatabaseError
        It must be written (to create its schema) and cannot be.

    Notes
    -----
    Every SQLite error of every method goes through one boundary (:attr:`boundary`,
    :func:`sqlite_error`): what means the database could not do its work becomes a
    :class:`~identity.errors.StoreError`; an error about one value (a constraint, a
    binding, an integer too large for SQLite) is left as it is.

    A read-only store of a file nobody is writing (no ``-wal`` or ``-shm`` file beside
    it) reads it as ``immutable``, so that it creates no file next to it: do not let
    another process start writing that file while it is open.

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
        readonly: bool | None = None,
        busy_timeout: float | None = None,
        cache_size: int | str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = _busy_timeout(busy_timeout)
        #: The page cache bound, in bytes.
        self.cache_size = parse_cache_size(cache_size)
        memory = self.path == ":memory:" or self.path == ""
        self.readonly_reason: str | None = None
        immutable = False
        if memory:
            if readonly:
                raise ConfigurationError("an in-memory database cannot be opened read-only")
        else:
            exists = self._check_file(create and not readonly)
            folder = os.path.dirname(os.path.abspath(self.path))
            if readonly:
                self.readonly_reason = "opened read-only"
            elif readonly is None and exists and not os.access(self.path, os.W_OK):
                self.readonly_reason = "the file is not writable"
            elif readonly is None and not os.access(folder, os.W_OK):
                if not exists:
                    raise ReadOnlyDatabaseError(
                        self.path, f"cannot create it: its folder {folder} is not writable"
                    )
                self.readonly_reason = "its folder is not writable"
            # A reader that cannot write would leave -wal/-shm files behind (a folder it
            # can write) or fail to create them (one it cannot): with neither file there,
            # no writer is active and the file is read as it is (immutable).
            immutable = self.readonly_reason is not None and not readonly
            immutable = immutable and not any(
                os.path.exists(self.path + suffix) for suffix in ("-wal", "-shm")
            )
        self.boundary = SQLiteBoundary(
            self.path, busy_timeout=self.busy_timeout, readonly=self.readonly_reason
        )
        if self.readonly_reason is None:
            target, uri = self.path, False
        else:
            target = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
            target += "&immutable=1" if immutable else ""
            uri = True
        with self.boundary:
            conn = sqlite3.connect(
                target,
                uri=uri,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        #: Whether commits are synced to the disk (``synchronous=FULL``).
        self.durable = durable
        #: Whether this store left read indexes out for a bulk load (:meth:`defer_indexes`).
        self.deferred = False
        #: Whether the ``persons`` table waits for the end of a bulk load (then filled from
        #: ``identities.person``); the write path then keeps persons in memory only.
        self.persons_deferred = False
        #: Whether changes to stored identities go to ``identity_updates`` (applied at the
        #: end of a bulk load, :meth:`append_identity_updates`) rather than to ``identities``.
        self.updates_deferred = False
        #: Whether events and property records are unique by ``(td, identity, key)``
        #: (databases of schema 4 and later; see :meth:`upsert_events`), else by
        #: ``(identity, key)``.
        self.by_time = True
        #: Whether links are unique by ``(b, a)``, the newer identity first (databases of
        #: schema 5 and later), else by ``(a, b)``: the order :meth:`upsert_links` is fastest in.
        self.links_by_b = True
        self._upsert_event = _UPSERT_EVENT.format(target=_BY_TIME)
        self._upsert_property = _UPSERT_PROPERTY.format(target=_BY_TIME)
        try:
            with self.boundary:
                self._prepare(memory, create or memory, durable, settings or {})
        except BaseException:
            conn.close()
            raise

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only (see :attr:`readonly_reason`)."""
        return self.readonly_reason is not None

    def _check_file(self, create: bool) -> bool:
        """Refuse a file that cannot be an identity database before SQLite touches it.

        Returns whether the file exists. Missing, a directory, empty (unless `create`),
        not SQLite, shorter than its header says: a :class:`StoreError` (the last one a
        :class:`DamagedDatabaseError`). An empty file is never written by a query.
        """
        path = self.path
        if os.path.isdir(path):
            raise StoreError(path, "is a directory, not a database file")
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            if not create:
                raise StoreError(path, "no such database") from None
            return False
        except OSError as exc:
            raise StoreError(path, f"cannot read it: {exc.strerror or exc}") from None
        if size == 0:
            if not create:
                raise StoreError(path, "empty file (0 bytes), not an identity database")
            return True
        try:
            with open(path, "rb") as stream:
                header = stream.read(100)
        except OSError as exc:
            raise StoreError(path, f"cannot read it: {exc.strerror or exc}") from None
        if header[:16] != _MAGIC[: len(header[:16])]:
            raise StoreError(
                path, "not a usable SQLite database (it does not start with a SQLite header)"
            )
        if len(header) < 100:
            raise DamagedDatabaseError(
                path, f"truncated: {size} bytes, shorter than a SQLite header"
            )
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512 or page_size & (page_size - 1):
            raise DamagedDatabaseError(
                path, f"damaged: its header gives a page size of {page_size}"
            )
        if _has_log(path):  # the file alone need not be whole: SQLite reads it with its log
            return True
        if size % page_size:
            raise DamagedDatabaseError(
                path,
                f"truncated: {size:,} bytes is not a whole number of {page_size:,}-byte pages",
            )
        pages = int.from_bytes(header[28:32], "big")
        if header[24:28] == header[92:96] and size < pages * page_size:
            raise DamagedDatabaseError(
                path, f"truncated: {size:,} bytes, its header says {pages * page_size:,}"
            )
        return True

    def _prepare(self, memory: bool, create: bool, durable: bool, settings: dict[str, str]) -> None:
        conn = self.conn
        try:
            with self.boundary:
                tables = set(self.db.table_names())
        except StoreError as exc:
            # read-only, a log beside it (else it would be immutable), and SQLite cannot
            # create or recover the -shm file it needs to read that log
            if self.readonly_reason is None or type(exc) not in (StoreError, ReadOnlyDatabaseError):
                raise
            log = os.path.basename(self.path) + "-wal"
            raise ReadOnlyDatabaseError(
                self.path,
                f"cannot read it: it has a write-ahead log ({log}) that SQLite can only read "
                f"with write access ({self.readonly_reason}); open it once with write access",
            ) from exc
        if not tables:
            if not create:
                raise StoreError(self.path, "an empty SQLite database, not an identity database")
            tables = self._create(memory, settings)
        if "meta" not in tables or self._application() != APPLICATION:
            raise StoreError(self.path, "not an identity database (it has other tables)")
        stored_version = self.meta("schema_version") or "0"
        try:
            version = int(stored_version)
        except ValueError:
            raise DamagedDatabaseError(
                self.path, f"damaged: its schema version is {stored_version!r}"
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                self.path,
                f"schema version {version} is newer than this identity "
                f"(knows {SCHEMA_VERSION}); upgrade identity",
            )
        missing = sorted(_TABLES - tables)
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise DamagedDatabaseError(
                self.path,
                f"damaged: the identity database has no {names} table "
                "(dropped by another tool?); restore it from a backup",
            )
        if version < SCHEMA_VERSION and self.readonly_reason is None:
            self._migrate(version)  # read-only: read as it is (queries need nothing newer)
        self._detect_dedupe_keys()
        deferred = self.meta(DEFERRED_KEY)
        if deferred is not None and self.readonly_reason is None:
            self.build_deferred_indexes()  # a bulk load was stopped before it built them
        elif deferred is not None and _PERSONS in deferred.split(","):
            raise StoreError(
                self.path,
                "cannot read it yet: a bulk load into it is running or was stopped before "
                "it filled the persons table; open it with write access once the load is "
                f"over (e.g. identity check) ({self.readonly_reason})",
            )
        for key, value in settings.items():
            stored = self.meta(key)
            if stored != value:
                raise StoreError(
                    self.path, f"was created with {key}={stored!r}, cannot open with {value!r}"
                )
        if not memory and self.readonly_reason is None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        # a bounded page cache (cache_size) and 1 GiB of WAL between checkpoints, so hot
        # index pages are written back once per checkpoint rather than once per batch (no
        # mmap: memory must not grow with the file)
        conn.execute(f"PRAGMA cache_size=-{max(1, self.cache_size // 1024)}")
        conn.execute("PRAGMA temp_store=MEMORY")
        if not memory:
            conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP}")

    def _create(self, memory: bool, settings: dict[str, str]) -> set[str]:
        """Write the schema into an empty database; return its tables."""
        if self.readonly_reason is not None:
            raise ReadOnlyDatabaseError(
                self.path, f"cannot create its schema: {_readonly_problem(self.readonly_reason)}"
            )
        conn = self.conn
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = set(self.db.table_names())
            if not tables:  # (another process may have created it while this one waited)
                for statement in (_SCHEMA + ";" + _VIEWS).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                meta = {
                    "application": APPLICATION,
                    "schema_version": str(SCHEMA_VERSION),
                    "generation": "0",
                    **settings,
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                tables = set(self.db.table_names())
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return tables

    def _detect_dedupe_keys(self) -> None:
        """Set :attr:`links_by_b`, :attr:`by_time` and the upserts from the unique indexes."""
        conn = self.conn
        for (index,) in conn.execute(
            "SELECT name FROM pragma_index_list('links') WHERE \"unique\""
        ):
            first = conn.execute(
                "SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (index,)
            ).fetchone()
            self.links_by_b = first == ("b",)
        unique = conn.execute(
            "SELECT name FROM pragma_index_list('events') WHERE \"unique\""
        ).fetchall()
        for (index,) in unique:
            columns = conn.execute(
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index,)
            ).fetchall()
            if columns == [("identity",), ("key",)]:
                self.by_time = False
                self._upsert_event = _UPSERT_EVENT.format(target=_BY_IDENTITY)
                self._upsert_property = _UPSERT_PROPERTY.format(target=_BY_IDENTITY)
                return

    def _application(self) -> str | None:
        try:
            return self.meta("application")
        except StoreError as exc:
            if type(exc) is not StoreError:  # locked, damaged, ...: not a question of tables
                raise
            return None  # a foreign table named meta

    def _migrate(self, version: int) -> None:
        """Bring a database of an older schema `version` up to date, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    if callable(statement):
                        statement(self.db)
                    else:
                        conn.execute(statement)
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @_translated
    def close(self) -> None:
        """Build the indexes a bulk load deferred, if any; close the connection."""
        try:
            if self.deferred and not self.conn.in_transaction:
                self.build_deferred_indexes()
        finally:
            self.conn.close()

    @_translated
    def defer_indexes(self) -> bool:
        """Leave the read indexes out while an empty database is bulk-loaded.

        Call it inside the first write transaction. On a database with no identity and no
        link, it drops the :data:`_DEFERRABLE` indexes (empty, so at no cost), creates the
        ``identity_updates`` table and records both under :data:`DEFERRED_KEY`, all
        committed with the transaction: random-order inserts into the indexes and updates
        of stored identities in place (a page dirtied each, written to the log at every
        commit) are then replaced by appends and one sorted pass each, after the load. A
        read does those passes first, so nothing a reader sees changes.

        Returns
        -------
        bool
            Whether the indexes were dropped (False: not empty, in memory, already done,
            or a database whose unique name index is not its own index).

        Examples
        --------
        >>> store = Store(":memory:")
        >>> with store.transaction():
        ...     store.defer_indexes()
        False
        """
        conn = self.conn
        if self.deferred:
            return False
        names = {
            str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        memory = self.path in (":memory:", "")
        if memory or not conn.in_transaction or not set(_ALWAYS_DEFERRABLE) <= names:
            return False
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM identities), EXISTS (SELECT 1 FROM links), "
            "EXISTS (SELECT 1 FROM persons)"
        ).fetchone()
        if any(row):
            return False
        deferred = [name for name in _DEFERRABLE if name in names]
        for name in deferred:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(f"DROP TABLE IF EXISTS {_UPDATES}")  # left by no load: it is empty
        conn.execute(_CREATE_UPDATES)
        self.set_meta(DEFERRED_KEY, ",".join([*deferred, _UPDATES, _PERSONS]))
        self.deferred = self.persons_deferred = self.updates_deferred = True
        return True

    @_translated
    def build_deferred_indexes(self) -> None:
        """Build the indexes :meth:`defer_indexes` left out (one sorted pass each).

        First the pending ``identity_updates`` are applied to ``identities`` (the last one
        of each identity, in row id order) and the table dropped; then the ``persons`` are
        filled from ``identities.person``; then the indexes are built. In the open
        transaction when there is one (they then commit or roll back with it), else in a
        transaction of their own. The store then reads as any other.
        """
        conn = self.conn
        listed = (self.meta(DEFERRED_KEY) or "").split(",")
        statements = [_APPLY_UPDATES, f"DROP TABLE {_UPDATES}"] if _UPDATES in listed else []
        statements += [_FILL_PERSONS] if _PERSONS in listed else []
        statements += [_DEFERRABLE[name] for name in _DEFERRABLE if name in listed]
        if conn.in_transaction:
            for statement in statements:
                conn.execute(statement)
            conn.execute("DELETE FROM meta WHERE key = ?", (DEFERRED_KEY,))
        else:
            # the sorts spill to temporary files, not memory (temp_store=MEMORY would hold
            # every key of the index at once)
            conn.execute("PRAGMA temp_store=FILE")
            try:
                with self.transaction():
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("DELETE FROM meta WHERE key = ?", (DEFERRED_KEY,))
            finally:
                conn.execute("PRAGMA temp_store=MEMORY")
        self.deferred = self.persons_deferred = self.updates_deferred = False

    @_translated
    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy the write-ahead log back into the database file (``PRAGMA wal_checkpoint``).

        SQLite checkpoints on its own every 64 MiB of log and when the last connection
        closes; this is for callers that want it now (``PASSIVE``: without waiting for
        readers; ``FULL``, ``RESTART``, ``TRUNCATE``: see SQLite's documentation).

        Returns
        -------
        tuple of int
            ``(busy, log frames, frames checkpointed)``; busy is 1 when it could not finish.

        Examples
        --------
        >>> Store(":memory:").checkpoint()
        (0, -1, -1)
        """
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ConfigurationError(
                f"checkpoint mode must be PASSIVE, FULL, RESTART or TRUNCATE, not {mode!r}"
            )
        row = self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _stream(self, cursor: sqlite3.Cursor) -> Iterator[Any]:
        """Yield the rows of `cursor` inside the error boundary (errors surface as rows come)."""
        with self.boundary:
            yield from cursor

    def _rollback(self) -> None:
        """Roll back the open transaction, if any, so that the next one can begin."""
        if self.conn.in_transaction:
            # if even that fails nothing more can be done here; the next BEGIN will say why
            with suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    # -- transactions and meta --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block as one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        On any exception, a failed ``COMMIT`` included, the transaction is rolled back
        (so that the next one can begin) and the exception propagates.

        Raises
        ------
        ReadOnlyDatabaseError
            The store was opened read-only.
        DatabaseLockedError
            Another writer held the lock for longer than the busy timeout.
        StoreError
            ``BEGIN`` or ``COMMIT`` failed (disk full, I/O error, ...).
        """
        if self.readonly_reason is not None:
            raise ReadOnlyDatabaseError(self.path, _readonly_problem(self.readonly_reason))
        boundary = self.boundary
        with boundary:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            with boundary:
                self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run the block inside the open transaction so that it can fail alone.

        On an exception, what the block wrote is undone (``ROLLBACK TO``) and the
        exception propagates; the transaction stays open.
        """
        boundary = self.boundary
        with boundary:
            self.conn.execute("SAVEPOINT one_call")
        try:
            yield
        except BaseException:
            with boundary:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK TO one_call")
                    self.conn.execute("RELEASE one_call")
            raise
        with boundary:
            self.conn.execute("RELEASE one_call")

    @_translated
    def meta(self, key: str) -> str | None:
        """Return one ``meta`` value, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @_translated
    def set_meta(self, key: str, value: str) -> None:
        """Set one ``meta`` value."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @_translated
    def batch_state(self) -> tuple[int, int, int, int, int]:
        """Return, in one statement, what a write batch needs to know first.

        ``(generation, next identity id, largest event id, largest property record id,
        largest link id)``.
        """
        row = self.conn.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'generation'), "
            "(SELECT max(id) FROM identities), (SELECT max(id) FROM events), "
            "(SELECT max(id) FROM properties), (SELECT max(id) FROM links), "
            f"(SELECT value FROM meta WHERE key = '{DEFERRED_KEY}')"
        ).fetchone()
        # what is deferred, as committed (another process may have built it meanwhile)
        self.deferred = row[5] is not None
        listed = str(row[5]).split(",") if self.deferred else []
        self.persons_deferred = _PERSONS in listed
        self.updates_deferred = _UPDATES in listed
        return (
            int(row[0] or 0),
            int(row[1] or 0) + 1,
            int(row[2] or 0),
            int(row[3] or 0),
            int(row[4] or 0),
        )

    @_translated
    def next_identity_id(self) -> int:
        """Return the id the next new identity row gets."""
        row = self.conn.execute("SELECT max(id) FROM identities").fetchone()
        return int(row[0] or 0) + 1

    @_translated
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

    @_translated
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

    @_translated
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

    @_translated
    def insert_identities(self, rows: Iterable[IdentityRow] | Iterable[Sequence[Any]]) -> None:
        """Insert rows ``(id, tenant, identity, person, first_seen, customer_since)``."""
        self.conn.executemany(
            "INSERT INTO identities (id, tenant, identity, person, first_seen, customer_since) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    @_translated
    def touch_identities(self, rows: Iterable[tuple[int, int | None, int]]) -> None:
        """Lower ``first_seen`` / ``customer_since`` with rows ``(t, customer_t, id)``."""
        self.conn.executemany(_TOUCH_IDENTITY, rows)

    @_translated
    def relabel(self, moves: Iterable[tuple[int, int]]) -> None:
        """Move every identity of person ``old`` to person ``new``, for ``(new, old)`` pairs.

        Notes
        -----
        O(size of ``old``) each, over the ``identities_person`` index (built first when a
        bulk load deferred it).
        """
        self.conn.executemany("UPDATE identities SET person = ? WHERE person = ?", moves)

    @_translated
    def relabel_members(self, rows: Iterable[tuple[int, int]]) -> None:
        """Move identities to other persons, for ``(person, identity row id)`` rows.

        What :meth:`relabel` does when the caller knows the members (the writer of a bulk
        load): by primary key, fastest in row id order.
        """
        self.conn.executemany("UPDATE identities SET person = ? WHERE id = ?", rows)

    @_translated
    def append_identity_updates(self, rows: Iterable[tuple[int, int, int, int | None]]) -> None:
        """Record the state of stored identities changed by a bulk load's batch.

        Rows ``(id, person, first_seen, customer_since)``: the whole new state of each
        identity, appended to ``identity_updates`` (while :attr:`updates_deferred`), and
        written into ``identities`` by :meth:`build_deferred_indexes`, the last row of an
        identity winning. Appends fill the table's last pages only, where updates in place
        would dirty a random page of ``identities`` each once it outgrows the page cache.
        """
        self.conn.executemany(
            f"INSERT INTO {_UPDATES} (id, person, first_seen, customer_since) VALUES (?, ?, ?, ?)",
            rows,
        )

    @_translated
    def delete_persons(self, ids: Iterable[tuple[int]]) -> None:
        """Delete person rows absorbed by a merge."""
        self.conn.executemany("DELETE FROM persons WHERE id = ?", ids)

    @_translated
    def upsert_persons(self, rows: Iterable[PersonRow] | Iterable[Sequence[Any]]) -> None:
        """Insert or update person rows ``(id, tenant, display id, size)``."""
        self.conn.executemany(
            "INSERT INTO persons (id, tenant, person, size) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET person = excluded.person, size = excluded.size",
            rows,
        )

    @_translated
    def upsert_links(self, rows: Iterable[LinkRow] | Iterable[Sequence[Any]]) -> None:
        """Insert alias links ``(a, b, t, sent, source)``; a known pair keeps the earliest t.

        Fastest in ``(b, a)`` order when :attr:`links_by_b`, else in ``(a, b)`` order.
        """
        self.conn.executemany(_UPSERT_LINK, rows)

    @_translated
    def upsert_events(self, rows: Iterable[EventRow] | Iterable[Sequence[Any]]) -> None:
        """Insert events; a duplicate is counted and keeps the smallest (t, name, properties).

        Fastest in :attr:`by_time` order.
        """
        self.conn.executemany(self._upsert_event, rows)

    @_translated
    def upsert_properties(self, rows: Iterable[PropertyRow] | Iterable[Sequence[Any]]) -> None:
        """Insert property-set records; a duplicate is counted and keeps the earliest t.

        Fastest in :attr:`by_time` order.
        """
        self.conn.executemany(self._upsert_property, rows)

    @_translated
    def upsert_quarantine(self, rows: Iterable[QuarantineRow]) -> None:
        """Insert quarantined calls; the same raw call, reason and time is counted once."""
        self.conn.executemany(_UPSERT_QUARANTINE, rows)

    # -- inputs (resumable ingest) ------------------------------------------------------

    @_translated
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

    @_translated
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

    @_translated
    def received_for(self, fingerprint: str) -> int | None:
        """Return the receive time first given to an input of this content `fingerprint`.

        `fingerprint` is ``size:hash of the first 64 KiB``, whatever the path. Reading the
        same content again (a copy of the file, stdin, ``--force``) gives its calls that
        carry no ``_t`` the same receive time, so that they are duplicates, not new calls;
        a file that grew has another size, and its new lines get a receive time of their own.

        Examples
        --------
        >>> store = Store(":memory:")
        >>> with store.transaction():
        ...     store.record_input("/a", "9:ab", 9, 2, finished=True, updated=5, received=7)
        >>> store.received_for("9:ab"), store.received_for("9:cd")
        (7, None)
        """
        row = self.conn.execute(
            "SELECT min(received) FROM inputs WHERE fingerprint = ? AND received IS NOT NULL",
            (fingerprint,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # -- reads ------------------------------------------------------------------------

    @_translated
    def identity(self, tenant: str, identity: str) -> tuple[int, int, str] | None:
        """Return ``(row id, person id, person display id)`` of one identity, or None."""
        row = self.conn.execute(
            "SELECT i.id, i.person, p.person FROM identities i "
            "JOIN persons p ON p.id = i.person WHERE i.tenant = ? AND i.identity = ?",
            (tenant, identity),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    @_translated
    def members(self, person: int) -> list[tuple[int, str, int, int | None]]:
        """Return ``(id, identity, first_seen, customer_since)`` of a person's identities."""
        return self.conn.execute(
            "SELECT id, identity, first_seen, customer_since FROM identities WHERE person = ?",
            (person,),
        ).fetchall()

    @_translated
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

    @_translated
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

    @_translated
    def links_of(self, ids: Sequence[int], as_of: int | None = None) -> list[LinkRow]:
        """Return the links whose smaller end is one of `ids` (``t <= as_of`` when given).

        Given every identity of a person, these are the person's links.
        """
        out: list[LinkRow] = []
        limit = "" if as_of is None else " AND t <= ?"
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            params: tuple[Any, ...] = tuple(chunk) if as_of is None else (*chunk, as_of)
            rows = self.conn.execute(
                f"SELECT a, b, t, sent, source FROM links WHERE a IN ({marks}){limit}", params
            )
            out.extend(LinkRow(*row) for row in rows)
        return out

    @_translated
    def activity(self, ids: Sequence[int], as_of: int | None = None) -> dict[int, tuple[int, int]]:
        """Return ``{identity row id: (events, property records)}`` (``t <= as_of``)."""
        found: dict[int, list[int]] = {}
        limit = "" if as_of is None else " AND t <= ?"
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            params: tuple[Any, ...] = tuple(chunk) if as_of is None else (*chunk, as_of)
            for slot, table in enumerate(("events", "properties")):
                rows = self.conn.execute(
                    f"SELECT identity, count(*) FROM {table} WHERE identity IN ({marks}){limit} "
                    "GROUP BY identity",
                    params,
                )
                for row_id, n in rows:
                    found.setdefault(row_id, [0, 0])[slot] = n
        return {row_id: (n[0], n[1]) for row_id, n in found.items()}

    @_translated
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

    @_translated
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

    @_translated
    def tenant_members(self, tenant: str) -> Iterator[tuple[str, int, str, int | None]]:
        """Yield ``(person display id, id, identity, customer_since)``, by person."""
        return self._stream(
            self.conn.execute(
                "SELECT p.person, i.id, i.identity, i.customer_since FROM identities i "
                "JOIN persons p ON p.id = i.person WHERE i.tenant = ? ORDER BY p.person",
                (tenant,),
            )
        )

    @_translated
    def tenant_properties(self, tenant: str) -> Iterator[tuple[str, str, str, str, int]]:
        """Yield ``(person display id, name_key, name, value, t)``, by person."""
        return self._stream(
            self.conn.execute(
                "SELECT p.person, r.name_key, r.name, r.value, r.t FROM properties r "
                "JOIN identities i ON i.id = r.identity JOIN persons p ON p.id = i.person "
                "WHERE i.tenant = ? ORDER BY p.person",
                (tenant,),
            )
        )

    @_translated
    def tenant_event_counts(self, tenant: str) -> Iterator[tuple[str, int]]:
        """Yield ``(person display id, number of events)``, by person."""
        return self._stream(
            self.conn.execute(
                "SELECT p.person, count(*) FROM events e "
                "JOIN identities i ON i.id = e.identity JOIN persons p ON p.id = i.person "
                "WHERE i.tenant = ? GROUP BY p.person ORDER BY p.person",
                (tenant,),
            )
        )

    @_translated
    def tenant_identities(self, tenant: str, as_of: int) -> list[tuple[int, str, int, int | None]]:
        """Return ``(id, identity, first_seen, customer_since)`` known by `as_of`."""
        return self.conn.execute(
            "SELECT id, identity, first_seen, customer_since FROM identities "
            "WHERE tenant = ? AND first_seen <= ?",
            (tenant, as_of),
        ).fetchall()

    @_translated
    def tenant_links(self, tenant: str, as_of: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield the links ``(a, b)`` of a tenant (with ``t <= as_of`` when given)."""
        limit = "" if as_of is None else " AND l.t <= ?"
        params: tuple[Any, ...] = (tenant,) if as_of is None else (tenant, as_of)
        return self._stream(
            self.conn.execute(
                "SELECT l.a, l.b FROM links l JOIN identities i ON i.id = l.a "
                f"WHERE i.tenant = ?{limit}",
                params,
            )
        )

    @_translated
    def tenant_link_rows(self, tenant: str, as_of: int | None = None) -> Iterator[LinkRow]:
        """Yield every link of a tenant whole (``t <= as_of`` when given)."""
        limit = "" if as_of is None else " AND l.t <= ?"
        params: tuple[Any, ...] = (tenant,) if as_of is None else (tenant, as_of)
        rows = self._stream(
            self.conn.execute(
                "SELECT l.a, l.b, l.t, l.sent, l.source FROM links l "
                f"JOIN identities i ON i.id = l.a WHERE i.tenant = ?{limit}",
                params,
            )
        )
        return (LinkRow(*row) for row in rows)

    @_translated
    def tenants(self) -> list[str]:
        """Return every tenant with at least one identity, sorted."""
        rows = self.conn.execute("SELECT DISTINCT tenant FROM identities ORDER BY tenant")
        return [r[0] for r in rows]

    @_translated
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
        return self._stream(
            self.conn.execute(
                "SELECT reason, raw, received, tenant, source, sent FROM quarantine"
                f"{clause} ORDER BY received, reason, raw",
                params,
            )
        )

    @_translated
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

    @_translated
    def identity_persons(self) -> Iterator[tuple[int, str, int]]:
        """Yield ``(id, identity, person)`` of every identity (consistency check)."""
        return self._stream(self.conn.execute("SELECT id, identity, person FROM identities"))

    @_translated
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

    @_translated
    def all_links(self) -> Iterator[tuple[int, int]]:
        """Yield every link ``(a, b)`` (consistency check)."""
        return self._stream(self.conn.execute("SELECT a, b FROM links"))

    @_translated
    def quick_check(self) -> list[str]:
        """Run SQLite's own ``PRAGMA quick_check``; return ``[]`` when the file is sound.

        Raises
        ------
        DamagedDatabaseError
            With the first problem SQLite found (a damaged page, a broken index): the file
            cannot be trusted, which is not a disagreement between people and links.

        Examples
        --------
        >>> Store(":memory:").quick_check()
        []
        """
        rows = [str(r[0]) for r in self.conn.execute("PRAGMA quick_check")]
        if rows == ["ok"]:
            return []
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        raise DamagedDatabaseError(self.path, f"damaged: {rows[0]}{more}; restore it from a backup")

    # -- export ------------------------------------------------------------------------

    @_translated
    def export_identities(self, tenant: str) -> Iterator[tuple[int, str, int, int | None]]:
        """Yield ``(id, identity, first_seen, customer_since)`` of a tenant's identities.

        By identity, in code point order, streamed over the ``(tenant, identity)`` index.
        """
        return self._stream(
            self.conn.execute(
                "SELECT id, identity, first_seen, customer_since FROM identities "
                "WHERE tenant = ? ORDER BY identity",
                (tenant,),
            )
        )

    @_translated
    def export_events(self, identity: int) -> list[tuple[str, int, int, str]]:
        """Return ``(name, t, td, properties JSON)`` of one identity row's events."""
        return self.conn.execute(
            "SELECT name, t, td, properties FROM events WHERE identity = ? ORDER BY key",
            (identity,),
        ).fetchall()

    @_translated
    def export_properties(self, identity: int) -> list[tuple[str, str, str, int, int]]:
        """Return ``(name_key, name, value, t, td)`` of one identity row's property records."""
        return self.conn.execute(
            "SELECT name_key, name, value, t, td FROM properties WHERE identity = ? ORDER BY key",
            (identity,),
        ).fetchall()

    @_translated
    def export_links(self, identity: int) -> list[tuple[str, int]]:
        """Return ``(other identity, t)`` of every alias link of one identity row."""
        return self.conn.execute(
            "SELECT i.identity, l.t FROM links l JOIN identities i ON i.id = l.b WHERE l.a = ?1 "
            "UNION ALL "
            "SELECT i.identity, l.t FROM links l JOIN identities i ON i.id = l.a WHERE l.b = ?1",
            (identity,),
        ).fetchall()
