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
    """The database file cannot be used: missing, damaged, foreign, too new, locked, full.

    Every error of the storage backend is translated into this class (or a subclass) once,
    at the store's boundary. It means the database could not do its work, never that one
    call was bad: a batch that fails with it is not retried call by call, and is not
    acknowledged.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DatabaseLockedError(StoreError):
    """Another connection holds the database's write lock longer than the busy timeout.

    Examples
    --------
    >>> str(DatabaseLockedError("app.db", "locked by another writer (pid 42)"))
    'app.db: locked by another writer (pid 42)'
    """


class ReadOnlyDatabaseError(StoreError):
    """The database (or its folder) cannot be written: a write was attempted on it."""


class DiskFullError(StoreError):
    """The disk (or a size limit) is full: the transaction was rolled back."""


class DamagedDatabaseError(StoreError):
    """The file is damaged (a malformed page, a truncated file): it cannot be trusted."""


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
