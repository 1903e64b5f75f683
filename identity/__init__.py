"""identity: order-independent identity resolution for Kissmetrics-style tracking calls.

Examples
--------
>>> from identity import Engine
>>> engine = Engine()
>>> _ = engine.alias("K", "anon-1", "bob@example.com")
>>> engine.person_of("K", "bob@example.com")
'anon-1'
"""

from .calls import Call, Rules
from .core import UnionFind
from .engine import Engine
from .errors import (
    ConfigurationError,
    DamagedDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    IdentityError,
    InconsistentStoreError,
    InputError,
    ReadOnlyDatabaseError,
    StoreError,
    UnknownIdentityError,
)
from .records import Event, Outcome, Person, PropertyRecord, Quarantined, Summary

__all__ = [
    "Call",
    "ConfigurationError",
    "DamagedDatabaseError",
    "DatabaseLockedError",
    "DiskFullError",
    "Engine",
    "Event",
    "IdentityError",
    "InconsistentStoreError",
    "InputError",
    "Outcome",
    "Person",
    "PropertyRecord",
    "Quarantined",
    "ReadOnlyDatabaseError",
    "Rules",
    "StoreError",
    "Summary",
    "UnionFind",
    "UnknownIdentityError",
]
__version__ = "0.1.0"
