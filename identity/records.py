"""Immutable values the engine returns: people, events, property records, outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .calls import Reason

#: What happened to one call (:class:`Outcome`).
Status = Literal["applied", "duplicate", "quarantined"]

__all__ = [
    "Event",
    "Outcome",
    "Person",
    "PropertyRecord",
    "Quarantined",
    "Summary",
]


@dataclass(frozen=True, slots=True)
class Person:
    """One person of a tenant: the identities joined by accepted aliases.

    Attributes
    ----------
    tenant : str
        The API key the person belongs to.
    id : str
        The person's id: its smallest identity by code point, a pure function of the
        member set (SPEC §6).
    identities : tuple of str
        Every member identity, sorted.
    customer_ids : tuple of str
        The members that were the ``_p`` of an accepted ``/e`` or ``/s`` call, sorted.
    properties : tuple of (str, str)
        Current value per property name (one per case-insensitive name, shown as written),
        sorted by name.
    events : int
        Number of deduplicated events of all members.
    """

    tenant: str
    id: str
    identities: tuple[str, ...]
    customer_ids: tuple[str, ...]
    properties: tuple[tuple[str, str], ...] = ()
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``people --json`` line).

        Examples
        --------
        >>> Person("K", "a", ("a", "b"), ("b",), (("Plan", "pro"),), 2).as_dict()["properties"]
        {'Plan': 'pro'}
        """
        return {
            "tenant": self.tenant,
            "person": self.id,
            "identities": list(self.identities),
            "customer_ids": list(self.customer_ids),
            "properties": dict(self.properties),
            "events": self.events,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One deduplicated event.

    ``sent`` counts the copies received (1 + duplicates); it is the only field that
    depends on how often a call was repeated.
    """

    identity: str
    name: str
    t: int
    properties: tuple[tuple[str, str], ...]
    sent: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class PropertyRecord:
    """One accepted property set (history), on one identity at time ``t``."""

    identity: str
    name: str
    value: str
    t: int
    sent: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One refused call, verbatim, with its reason.

    ``sent`` counts identical copies (same raw text, reason and receive time).
    """

    reason: str
    raw: str
    received: int
    tenant: str | None
    source: str
    sent: int = field(default=1, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "reason": self.reason,
            "raw": self.raw,
            "received": self.received,
            "tenant": self.tenant,
            "source": self.source,
            "sent": self.sent,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call.

    Attributes
    ----------
    status : str
        ``"applied"`` (it changed something), ``"duplicate"`` (everything it carried was
        already known) or ``"quarantined"``.
    reason : str or None
        The quarantine reason.
    """

    status: Status
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        """Whether the call was accepted (applied or a duplicate)."""
        return self.status != "quarantined"


@dataclass(slots=True)
class Summary:
    """Counts of one ingest (adds up over batches)."""

    calls: int = 0
    accepted: int = 0
    quarantined: dict[Reason, int] = field(default_factory=dict)
    duplicate_events: int = 0
    duplicate_properties: int = 0
    duplicate_aliases: int = 0
    new_identities: int = 0
    merges: int = 0
    batches: int = 0

    @property
    def new_people(self) -> int:
        """People created: every new identity starts one, every merge removes one."""
        return self.new_identities - self.merges

    def add(self, other: Summary) -> None:
        """Add `other`'s counts to these."""
        self.calls += other.calls
        self.accepted += other.accepted
        for reason, n in other.quarantined.items():
            self.quarantined[reason] = self.quarantined.get(reason, 0) + n
        self.duplicate_events += other.duplicate_events
        self.duplicate_properties += other.duplicate_properties
        self.duplicate_aliases += other.duplicate_aliases
        self.new_identities += other.new_identities
        self.merges += other.merges
        self.batches += other.batches

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "calls": self.calls,
            "accepted": self.accepted,
            "quarantined": dict(sorted(self.quarantined.items())),
            "duplicate_events": self.duplicate_events,
            "duplicate_properties": self.duplicate_properties,
            "duplicate_aliases": self.duplicate_aliases,
            "new_identities": self.new_identities,
            "new_people": self.new_people,
            "merges": self.merges,
            "batches": self.batches,
        }

    def line(self) -> str:
        """Return the one-line summary the CLI prints.

        Examples
        --------
        >>> Summary(calls=3, accepted=2, quarantined={"missing_key": 1}).line()
        '3 calls: 2 accepted, 0 duplicate events, 0 duplicate property sets, 0 duplicate aliases, 1 quarantined (missing_key=1); 0 new identities, 0 new people, 0 merges'
        """  # noqa: E501
        q = sum(self.quarantined.values())
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.quarantined.items()))
        return (
            f"{self.calls} calls: {self.accepted} accepted, "
            f"{self.duplicate_events} duplicate events, "
            f"{self.duplicate_properties} duplicate property sets, "
            f"{self.duplicate_aliases} duplicate aliases, "
            f"{q} quarantined{f' ({reasons})' if reasons else ''}; "
            f"{self.new_identities} new identities, {self.new_people} new people, "
            f"{self.merges} merges"
        )
