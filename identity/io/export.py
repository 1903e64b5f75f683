r"""Export: write a tenant's accepted calls back as Kissmetrics JSON lines or URLs.

The store keeps what the calls did, not the calls: identities (with the time each was
first named and first the ``_p`` of an ``/e`` or ``/s``), alias links, deduplicated events
and property records. :func:`exported_calls` derives the fewest calls that rebuild exactly
that state:

- each event, with its properties (which also rebuilds the property records they made);
- each property record that no event rebuilds exactly (same value, time and dedupe time),
  records of the same times grouped into one ``/s``;
- each alias link, once, at its earliest time;
- a bare ``/s`` at an identity's first Customer-ID time when no event or record is that
  early (it was a ``/s`` without properties), and a self-alias at its first-seen time when
  nothing else is that early (an identity "only known": aliased with itself).

So ingesting an export into a fresh database yields the same people, person ids, Customer
IDs, property history, deduplicated events and ``as_of`` views; ingesting it into the
database it came from changes nothing (every call is a duplicate). The output is canonical:
identities in code point order, so two databases in the same state export the same bytes.

Kissmetrics lines carry ``_t``, the time a call took effect (an import applies it, as with
``_d=1``). A call whose dedupe time differs (a client sent ``_t`` without ``_d=1``, SPEC §3)
also carries ``"_td"``, its dedupe time, which identity's readers understand; other tools
see a property ``_td``.

Examples
--------
>>> from identity import Engine
>>> engine = Engine()
>>> _ = engine.ingest(
...     ["/e?_k=K&_p=anon-7f&_n=Viewed&_t=90", "/a?_k=K&_p=anon-7f&_n=bob&_t=95&_d=1",
...      "/s?_k=K&_p=bob&Plan=pro&_t=96&_d=1"],
...     received=100,
... )
>>> for line in lines(engine.store, "K"):
...     print(line)
{"_p": "anon-7f", "_n": "Viewed", "_t": 100, "_td": 90}
{"_p": "anon-7f", "_p2": "bob", "_t": 95}
{"_p": "bob", "_t": 96, "Plan": "pro"}
>>> for line in lines(engine.store, "K", fmt="url"):
...     print(line)
/e?_k=K&_p=anon-7f&_n=Viewed&_t=100&_d=1&_td=90
/a?_k=K&_p=anon-7f&_n=bob&_t=95&_d=1
/s?_k=K&_p=bob&Plan=pro&_t=96&_d=1
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import quote_plus

from ..errors import ConfigurationError
from ..store import Store
from .formats import DEDUPE_TIME_KEY, ESCAPE, ESCAPED

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportSummary",
    "Exported",
    "exported_calls",
    "km_line",
    "lines",
    "url_line",
]

#: What :func:`lines` writes: Kissmetrics export JSON lines, or beacon URLs.
ExportFormat = Literal["km", "url"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)

#: Property names a line cannot carry as they are (they mean something else there): they
#: are written with the :data:`~identity.io.formats.ESCAPE` prefix, which identity reads back.
_KM_UNSAFE = ESCAPED
#: In a URL, ``_p2``, ``_n`` (of ``/s``) and ``_path`` are plain properties.
_URL_UNSAFE = frozenset({DEDUPE_TIME_KEY})


@dataclass(frozen=True, slots=True)
class Exported:
    """One call of an export.

    Attributes
    ----------
    kind : str
        ``"e"``, ``"s"`` or ``"a"``.
    identity : str
        ``_p``.
    name : str or None
        The event name (``e``) or the other identity (``a``).
    t : int
        When the call took effect.
    td : int
        Its dedupe time.
    properties : tuple of (str, str)
        Properties (``e``, ``s``), sorted.
    """

    kind: str
    identity: str
    name: str | None
    t: int
    td: int
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class ExportSummary:
    """Counts of one export."""

    lines: int = 0
    events: int = 0
    property_sets: int = 0
    aliases: int = 0

    def line(self) -> str:
        """Return a one-line summary.

        Examples
        --------
        >>> ExportSummary(4, 2, 1, 1).line()
        '4 lines: 2 events, 1 property sets, 1 aliases'
        """
        text = (
            f"{self.lines} lines: {self.events} events, {self.property_sets} property sets, "
            f"{self.aliases} aliases"
        )
        return text


def exported_calls(store: Store, tenant: str) -> Iterator[Exported]:
    """Yield the calls that rebuild `tenant`'s state, identity by identity.

    Notes
    -----
    Streams the identities over an index; memory is bounded by the rows of one identity.
    Three indexed look-ups per identity.
    """
    for row_id, identity, first_seen, customer_since in store.export_identities(tenant):
        yield from _identity_calls(store, row_id, identity, first_seen, customer_since)


def _identity_calls(
    store: Store, row_id: int, identity: str, first_seen: int, customer_since: int | None
) -> Iterator[Exported]:
    earliest: int | None = None  # of the /e and /s calls written
    rebuilt: dict[tuple[str, str, int], tuple[int, str]] = {}
    events = []
    for name, t, td, properties in store.export_events(row_id):
        props = tuple(sorted(json.loads(properties).items()))
        events.append(Exported("e", identity, name, t, td, props))
        for prop, value in props:
            key = (prop.casefold(), value, td)
            made = (t, prop)
            if key not in rebuilt or made < rebuilt[key]:
                rebuilt[key] = made
    events.sort(key=lambda e: (e.t, e.td, e.name or "", e.properties))
    yield from events
    if events:
        earliest = events[0].t
    sets: dict[tuple[int, int], list[dict[str, tuple[str, str]]]] = {}
    for name_key, name, value, t, td in store.export_properties(row_id):
        if rebuilt.get((name_key, value, td)) == (t, name):
            continue
        group = sets.setdefault((t, td), [])
        for line in group:
            if name_key not in line:
                line[name_key] = (name, value)
                break
        else:
            group.append({name_key: (name, value)})
    for (t, td), group in sorted(sets.items()):
        earliest = t if earliest is None else min(earliest, t)
        for props in sorted(tuple(sorted(g.values())) for g in group):
            yield Exported("s", identity, None, t, td, props)
    if customer_since is not None and (earliest is None or customer_since < earliest):
        yield Exported("s", identity, None, customer_since, customer_since)
        earliest = customer_since
    links = store.export_links(row_id)
    known = min([t for _, t in links] + ([] if earliest is None else [earliest]), default=None)
    if known is None or first_seen < known:
        yield Exported("a", identity, identity, first_seen, first_seen)
    for other, t in sorted(links):
        if identity < other:  # each link once, from its smaller end
            yield Exported("a", identity, other, t, t)


def km_line(call: Exported, tenant: str | None = None) -> str:
    """Return `call` as a Kissmetrics JSON line.

    A property whose name means something else on a line (``_p2``, ``_n``, ``_td``,
    ``_path``) is written under :data:`~identity.io.formats.ESCAPE` (``"_prop:_p2"``), which
    identity's readers turn back into its name: every call can be exported.

    Parameters
    ----------
    call : Exported
        The call.
    tenant : str, optional
        Write it as ``_k`` (an export is per tenant and usually has none).

    Examples
    --------
    >>> km_line(Exported("e", "bob", "Paid", 7, 7, (("amount", "5"),)))
    '{"_p": "bob", "_n": "Paid", "_t": 7, "amount": "5"}'
    >>> km_line(Exported("s", "bob", None, 7, 7, (("_p2", "x"),)))
    '{"_p": "bob", "_t": 7, "_prop:_p2": "x"}'
    """
    out: dict[str, str | int] = {} if tenant is None else {"_k": tenant}
    out["_p"] = call.identity
    if call.kind == "a":
        out["_p2"] = call.name or ""
    elif call.kind == "e":
        out["_n"] = call.name or ""
    out["_t"] = call.t
    if call.td != call.t:
        out[DEDUPE_TIME_KEY] = call.td
    for name, value in call.properties:
        out[ESCAPE + name if name in _KM_UNSAFE else name] = value
    return json.dumps(out, ensure_ascii=False)


def _quote(text: str) -> str:
    return quote_plus(text, safe="")


def url_line(call: Exported, tenant: str) -> str:
    """Return `call` as a beacon URL path (a property named ``_td`` escaped, as in km).

    Examples
    --------
    >>> url_line(Exported("a", "User 1", "b+c@x.org", 7, 7), "K")
    '/a?_k=K&_p=User+1&_n=b%2Bc%40x.org&_t=7&_d=1'
    """
    params = [("_k", tenant), ("_p", call.identity)]
    if call.kind != "s":
        params.append(("_n", call.name or ""))
    for name, value in call.properties:
        params.append((ESCAPE + name if name in _URL_UNSAFE else name, value))
    params += [("_t", str(call.t)), ("_d", "1")]
    if call.td != call.t:
        params.append((DEDUPE_TIME_KEY, str(call.td)))
    return f"/{call.kind}?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)


def lines(
    store: Store,
    tenant: str,
    *,
    fmt: ExportFormat = "km",
    include_key: bool = False,
    summary: ExportSummary | None = None,
) -> Iterator[str]:
    """Yield `tenant`'s export, one line (without line break) per call.

    Parameters
    ----------
    store : Store
        The database.
    tenant : str
        Whose calls.
    fmt : {"km", "url"}
        Kissmetrics JSON lines or beacon URLs (these always carry ``_k``).
    include_key : bool
        With ``km``, write ``_k`` on every line.
    summary : ExportSummary, optional
        Counted into as lines are written.
    """
    if fmt not in FORMATS:
        raise ConfigurationError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    counts = summary if summary is not None else ExportSummary()
    key = tenant if include_key else None
    for call in exported_calls(store, tenant):
        line = km_line(call, key) if fmt == "km" else url_line(call, tenant)
        counts.lines += 1
        if call.kind == "e":
            counts.events += 1
        elif call.kind == "s":
            counts.property_sets += 1
        else:
            counts.aliases += 1
        yield line
