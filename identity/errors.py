"""The one exception tree of identity.

Every error this package raises on purpose is an :class:`IdentityError`. Bad *tracking
data* is never an exception: it is quarantined with a reason (see :mod:`identity.calls`).
Exceptions are for programming errors and for files that cannot be used.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base class for every error this package raises."""


class UnknownIdentityError(IdentityError, LookupError):
    """An identity was asked about that no accepted call ever named.

    Examples
    --------
    >>> str(UnknownIdentityError("K", "bob"))
    "no identity 'bob' in tenant 'K'"
    """

    def __init__(self, tenant: str, identity: str) -> None:
        super().__init__(f"no identity {identity!r} in tenant {tenant!r}")
        self.tenant = tenant
        self.identity = identity


class StoreError(IdentityError):
    """The database could not do its work: missing, damaged, foreign, too new, locked, full.

    Every error of the storage backend is translated into this class (or a subclass) once,
    at the store's boundary (:class:`identity.store.SQLiteBoundary`), chained to the
    backend's own error. It means the database could not do its work, never that one call
    was bad: a batch that fails with it is not retried call by call, and is not
    acknowledged. An error about one value is never a StoreError.

    A plain StoreError: the file is missing, a directory, empty, not SQLite, another
    application's database, of a newer schema, opened with other settings; an I/O error.

    Attributes
    ----------
    path : str
        The database.
    problem : str
        What is wrong, in one line.

    Examples
    --------
    >>> error = StoreError("app.db", "empty file (0 bytes), not an identity database")
    >>> str(error), error.problem
    ('app.db: empty file (0 bytes), not an identity database', 'empty file (0 bytes), not an identity database')
    """  # noqa: E501

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DatabaseLockedError(StoreError):
    """Another connection holds the database's write lock longer than the busy timeout.

    The busy timeout is :data:`identity.store.DEFAULT_BUSY_TIMEOUT` (10 s), or
    ``$IDENTITY_BUSY_TIMEOUT``. The message names the other process (pid and command line)
    when the operating system tells (Linux ``/proc/locks``). Nothing was written: try again.
    Readers wait only for a writer that locks the file exclusively.

    Examples
    --------
    >>> str(DatabaseLockedError("app.db", "locked by another writer (pid 42)"))
    'app.db: locked by another writer (pid 42)'
    """


class ReadOnlyDatabaseError(StoreError):
    """A write was attempted on a database that cannot be written.

    The file or its folder is not writable, or the store was opened read-only. Queries on
    such a database work; nothing was written.
    """


class DiskFullError(StoreError):
    """The disk (or a size limit) is full: the transaction was rolled back.

    Every batch committed before is kept; the database still opens and passes
    :meth:`identity.Engine.check`. Free some space and run the same command again.
    """


class DamagedDatabaseError(StoreError):
    """The file is damaged: it cannot be trusted.

    A malformed page ("database disk image is malformed"), found when a query reaches it
    or by ``PRAGMA quick_check`` in :meth:`identity.Engine.check`; a truncated file, a
    damaged header or schema, or an expected table missing, found at open. Restore the
    database from a backup (or rebuild it by ingesting its inputs again).
    """


class ConfigurationError(IdentityError, ValueError):
    """An option or setting has a value that cannot work."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class InputError(IdentityError):
    """An input file cannot be read at all (not a bad line in it: those are quarantined)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class InconsistentStoreError(IdentityError):
    """:meth:`identity.Engine.check` found stored people that disagree with stored links."""

    def __init__(self, path: str, problems: list[str]) -> None:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{path}: consistency check failed: {shown}{more}")
        self.path = path
        self.problems = problems
