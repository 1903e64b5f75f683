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
    """The database file cannot be used: missing, damaged, foreign or too new."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


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
