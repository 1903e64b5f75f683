"""Tracking calls: parse, validate and normalise (pure functions, no I/O).

Every way a call can arrive — a URL or query string, a form body, a Python mapping, a line
of a Kissmetrics export or import file — becomes one immutable :class:`Call` here, before
anything else looks at it. A call that breaks a rule of the contract is still a
:class:`Call`, with :attr:`Call.reason` set: it is quarantined whole, never applied in part,
and never raised as an exception (bad tracking data is data, not a programming error).

Examples
--------
>>> call = parse_query("/e?_k=K&_p=bob&_n=Signed+Up&gender=male&_t=1262304000&_d=1")
>>> call.kind, call.tenant, call.identity, call.name, call.t
('e', 'K', 'bob', 'Signed Up', 1262304000)
>>> call.properties
(('gender', 'gender', 'male'),)
>>> parse_query("/a?_k=K&_p=bob&_n=undefined", received=5).reason
'blocked_identity'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_BLOCKED",
    "DEFAULT_RULES",
    "KINDS",
    "MAX_NAME_LENGTH",
    "REASONS",
    "Call",
    "Rules",
    "from_mapping",
    "from_params",
    "name_key",
    "normalise_name",
    "parse_form",
    "parse_km_line",
    "parse_query",
    "rejected",
    "validate",
]

#: The three calls, by path: record an event, set properties, alias two identities.
KINDS = frozenset({"e", "s", "a"})

#: Identities, event names and property names longer than this are refused (KM).
MAX_NAME_LENGTH = 255

#: Every quarantine reason, in the order the checks run (the first failing check wins).
REASONS = (
    "unknown_call",
    "malformed",
    "too_large",
    "incomplete",
    "post_body_not_logged",
    "bad_encoding",
    "missing_key",
    "unknown_key",
    "missing_person",
    "person_too_long",
    "missing_event_name",
    "missing_alias",
    "name_too_long",
    "alias_too_long",
    "bad_timestamp",
    "missing_property_name",
    "value_too_long",
    "blocked_identity",
)

#: Junk identities an alias must never touch (SPEC §8), compared after :func:`_junk_form`.
DEFAULT_BLOCKED = frozenset(
    {
        "",
        "null",
        "undefined",
        "none",
        "nil",
        "nan",
        "0",
        "-1",
        "anonymous",
        "anon",
        "guest",
        "unknown",
        "n/a",
        "na",
        "true",
        "false",
        "[object object]",
        "{}",
        "[]",
        "<nil>",
        "id",
        "email",
        "distinctid",
        "distinct_id",
        "not_authenticated",
        "00000000-0000-0000-0000-000000000000",
    }
)
_ZEROS = r"^[0-]*$"
_DEFAULT_PATTERNS = (_ZEROS,)
_QUOTES = "\"'`"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RESERVED = {"e": ("_k", "_p", "_n", "_t", "_d"), "s": ("_k", "_p", "_t", "_d")}


def _junk_form(identity: str) -> str:
    return identity.strip().casefold().strip(_QUOTES).strip()


@dataclass(frozen=True, slots=True)
class Rules:
    """The configurable part of validation.

    Parameters
    ----------
    allowed_keys : frozenset of str or None
        When given, calls whose ``_k`` is not in it are quarantined as ``unknown_key``.
    blocked : frozenset of str
        Junk identities, compared after trimming, case-folding and stripping quotes.
    blocked_patterns : tuple of str
        Regular expressions (``re.fullmatch`` on the same folded form) of junk identities.
    max_value_length : int
        Longest property value accepted, in characters.

    Examples
    --------
    >>> rules = Rules().with_blocked(add=["test"], remove=["guest"])
    >>> rules.is_blocked(' "TEST" '), rules.is_blocked("guest"), rules.is_blocked("0-0")
    (True, False, True)
    """

    allowed_keys: frozenset[str] | None = None
    blocked: frozenset[str] = DEFAULT_BLOCKED
    blocked_patterns: tuple[str, ...] = _DEFAULT_PATTERNS
    max_value_length: int = 8192
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)
    _zeros: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_value_length < 1:
            raise ConfigurationError(
                f"max_value_length must be at least 1, not {self.max_value_length}"
            )
        object.__setattr__(self, "_zeros", _ZEROS in self.blocked_patterns)
        try:
            compiled = tuple(re.compile(p) for p in self.blocked_patterns if p != _ZEROS)
        except re.error as exc:
            raise ConfigurationError(f"bad blocked-identity pattern: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "blocked", frozenset(_junk_form(b) for b in self.blocked))

    def is_blocked(self, identity: str) -> bool:
        """Tell whether `identity` is a junk identity that must not be aliased."""
        folded = _junk_form(identity)
        if folded in self.blocked or (self._zeros and not folded.strip("0-")):
            return True
        return any(p.fullmatch(folded) for p in self._compiled)

    def with_blocked(
        self,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        patterns: Iterable[str] = (),
    ) -> Rules:
        """Return a copy with identities added to / removed from the block list."""
        removed = {_junk_form(r) for r in remove}
        blocked = (self.blocked | {_junk_form(a) for a in add}) - removed
        return replace(
            self,
            blocked=frozenset(blocked),
            blocked_patterns=self.blocked_patterns + tuple(patterns),
        )


DEFAULT_RULES = Rules()


def normalise_name(name: str) -> str:
    """Return an event or property name as displayed: commas and colons become spaces.

    Examples
    --------
    >>> normalise_name("Plan: Pro, yearly")
    'Plan  Pro  yearly'
    """
    if "," in name or ":" in name:
        return name.replace(",", " ").replace(":", " ")
    return name


def name_key(name: str) -> str:
    """Return the comparison form of a (normalised) name: names compare case-insensitively.

    Examples
    --------
    >>> name_key("Signed Up") == name_key("signed up")
    True
    """
    return name.casefold()


@dataclass(frozen=True, slots=True)
class Call:
    """One tracking call, parsed, validated and normalised.

    Attributes
    ----------
    kind : str
        ``"e"`` (record an event), ``"s"`` (set properties), ``"a"`` (alias); for an
        ``unknown_call`` the path as received.
    tenant : str or None
        The API key ``_k``.
    identity : str or None
        ``_p``, exactly as sent.
    name : str or None
        For ``e`` the event name (normalised for display); for ``a`` the other identity.
    properties : tuple of (key, name, value)
        Properties set by the call, sorted by key; ``key`` is the case-insensitive form of
        ``name``, one entry per key (the last one sent wins).
    t : int
        Event time: ``_t`` when ``_d`` is ``"1"``, otherwise the receive time.
    td : int
        Dedupe time: ``_t`` whenever it is a number, otherwise the receive time.
    received : int
        Receive time, UTC seconds.
    raw : str
        The call as received, verbatim.
    source : str
        Where it came from (a file and line, ``beacon``, ``library``...).
    reason : str or None
        ``None`` when the call is accepted, else its quarantine reason (one of
        :data:`REASONS`).
    params : tuple of (str, str)
        The decoded parameters as received, kept for re-validation and export.
    """

    kind: str
    tenant: str | None
    identity: str | None
    name: str | None
    properties: tuple[tuple[str, str, str], ...]
    t: int
    td: int
    received: int
    raw: str
    source: str = ""
    reason: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the call is accepted (not quarantined)."""
        return self.reason is None


def _now() -> int:
    return int(time.time())


def _as_int(value: str) -> int | None:
    if value.isdigit() and value.isascii():
        return int(value)
    if not _NUMBER.fullmatch(value):
        return None
    try:
        return int(Decimal(value))
    except (InvalidOperation, ValueError, OverflowError):  # pragma: no cover - regex guards
        return None


def _reject(
    kind: str,
    params: tuple[tuple[str, str], ...],
    values: Mapping[str, str],
    received: int,
    raw: str,
    source: str,
    reason: str,
) -> Call:
    return Call(
        kind=kind,
        tenant=values.get("_k") or None,
        identity=values.get("_p"),
        name=values.get("_n"),
        properties=(),
        t=received,
        td=received,
        received=received,
        raw=raw,
        source=source,
        reason=reason,
        params=params,
    )


def rejected(
    raw: str, reason: str, *, received: int, source: str = "", tenant: str | None = None
) -> Call:
    """Return a call refused before it could be parsed (e.g. ``bad_encoding``).

    Examples
    --------
    >>> rejected("/e?_p=%ff", "bad_encoding", received=1).ok
    False
    """
    values = {} if tenant is None else {"_k": tenant}
    return _reject("", (), values, received, raw, source, reason)


def from_params(
    kind: str,
    params: Iterable[tuple[str, str]],
    *,
    received: int | None = None,
    raw: str | None = None,
    source: str = "",
    rules: Rules = DEFAULT_RULES,
) -> Call:
    """Build a validated :class:`Call` from decoded parameters.

    Parameters
    ----------
    kind : str
        The call's path without slashes: ``"e"``, ``"s"`` or ``"a"``.
    params : iterable of (str, str)
        Decoded parameters in the order received; a repeated key keeps its last value.
    received : int, optional
        Receive time in UTC seconds (default: now).
    raw : str, optional
        The call as received (default: rebuilt from `kind` and `params`).
    source : str
        Provenance.
    rules : Rules
        Configurable validation rules.

    Returns
    -------
    Call
        Accepted, or with :attr:`Call.reason` set.

    Examples
    --------
    >>> from_params("s", [("_k", "K"), ("_p", "bob"), ("Plan", "pro")], received=7).t
    7
    >>> from_params("e", [("_k", "K"), ("_p", "bob")], received=7).reason
    'missing_event_name'
    """
    if received is None:
        received = _now()
    params = tuple(params)
    if raw is None:
        raw = json.dumps({"_path": kind, **dict(params)}, ensure_ascii=False)
    values = dict(params)
    if kind not in KINDS:
        return _reject(kind, params, values, received, raw, source, "unknown_call")
    reason = _check_common(kind, values, rules)
    if reason is not None:
        return _reject(kind, params, values, received, raw, source, reason)
    stamp = values.get("_t")
    number = _as_int(stamp) if stamp is not None else None
    if values.get("_d") == "1":
        if number is None:
            return _reject(kind, params, values, received, raw, source, "bad_timestamp")
        t = number
    else:
        t = received
    td = received if number is None else number
    identity = values["_p"]
    properties: tuple[tuple[str, str, str], ...] = ()
    name: str | None
    if kind == "a":
        name = values["_n"]
        if name != identity and (rules.is_blocked(identity) or rules.is_blocked(name)):
            return _reject(kind, params, values, received, raw, source, "blocked_identity")
    else:
        name = normalise_name(values["_n"]) if kind == "e" else None
        reserved = _RESERVED[kind]
        props: dict[str, tuple[str, str, str]] = {}
        for key, value in params:
            if key in reserved:
                continue
            if not key:
                return _reject(
                    kind, params, values, received, raw, source, "missing_property_name"
                )
            if len(key) > MAX_NAME_LENGTH:
                return _reject(kind, params, values, received, raw, source, "name_too_long")
            if len(value) > rules.max_value_length:
                return _reject(kind, params, values, received, raw, source, "value_too_long")
            shown = normalise_name(key)
            folded = shown.casefold()
            props.pop(folded, None)
            props[folded] = (folded, shown, value)
        properties = tuple(sorted(props.values()))
    return Call(
        kind=kind,
        tenant=values["_k"],
        identity=identity,
        name=name,
        properties=properties,
        t=t,
        td=td,
        received=received,
        raw=raw,
        source=source,
        reason=None,
        params=params,
    )


def _check_common(kind: str, values: Mapping[str, str], rules: Rules) -> str | None:
    tenant = values.get("_k")
    if not tenant:
        return "missing_key"
    if rules.allowed_keys is not None and tenant not in rules.allowed_keys:
        return "unknown_key"
    person = values.get("_p")
    if not person:
        return "missing_person"
    if len(person) > MAX_NAME_LENGTH:
        return "person_too_long"
    other = values.get("_n")
    if kind == "e":
        if not other:
            return "missing_event_name"
        if len(other) > MAX_NAME_LENGTH:
            return "name_too_long"
    elif kind == "a":
        if not other:
            return "missing_alias"
        if len(other) > MAX_NAME_LENGTH:
            return "alias_too_long"
    return None


def validate(call: Call, rules: Rules = DEFAULT_RULES) -> Call:
    """Validate `call` again under other `rules` (e.g. an engine's allow-list).

    A call refused for how it was received (``unknown_call``, ``malformed``,
    ``bad_encoding``) stays refused.

    Examples
    --------
    >>> call = parse_query("/s?_k=K&_p=bob&a=1", received=1)
    >>> validate(call, Rules(allowed_keys=frozenset({"other"}))).reason
    'unknown_key'
    """
    if call.reason in ("unknown_call", "malformed", "bad_encoding"):
        return call
    return from_params(
        call.kind,
        call.params,
        received=call.received,
        raw=call.raw,
        source=call.source,
        rules=rules,
    )


def _kind_of_path(path: str) -> str:
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else ""


@lru_cache(maxsize=1 << 16)
def _unquote_escaped(text: str) -> str:
    return unquote(text.replace("+", " "), errors="strict")


def _unquote(text: str) -> str:
    """Decode one query-string key or value (``+`` is a space, ``%XX`` UTF-8 bytes).

    Escaped texts are cached: event names and property values repeat across calls.
    """
    if "%" in text:
        return _unquote_escaped(text)
    if "+" in text:
        return text.replace("+", " ")
    return text


def _decode(
    query: str, kind: str, received: int, raw: str, source: str
) -> list[tuple[str, str]] | Call:
    """Decode a query string like ``parse_qsl(keep_blank_values=True)``, strictly UTF-8."""
    try:
        pairs = []
        for part in query.split("&"):
            if part:
                key, _, value = part.partition("=")
                pairs.append((_unquote(key), _unquote(value)))
        return pairs
    except UnicodeDecodeError:
        return _reject(kind, (), {}, received, raw, source, "bad_encoding")


def parse_query(
    text: str,
    *,
    received: int | None = None,
    source: str = "",
    rules: Rules = DEFAULT_RULES,
    kind: str | None = None,
    tenant: str | None = None,
) -> Call:
    """Parse a URL, a path with a query string, or a bare query string.

    The call's kind is the last path segment (any prefix is allowed: ``/km/e``,
    ``https://host/e``); a bare query string needs `kind`. A fragment is ignored.
    Spaces may come as ``+`` or ``%20``.

    Examples
    --------
    >>> parse_query("https://trk.example.com/t/a?_k=K&_p=User+12345&_n=bob%40bob.com").name
    'bob@bob.com'
    >>> parse_query("_k=K&_p=bob", kind="s", received=3).ok
    True
    >>> parse_query("/x?_k=K&_p=bob", received=3).reason
    'unknown_call'
    """
    if received is None:
        received = _now()
    raw = text
    text = text.strip()
    if "#" in text:
        text = text.split("#", 1)[0]
    path, mark, query = text.partition("?")
    if not mark and "/" not in path:
        path, query = "", path
    if kind is None:
        kind = _kind_of_path(path)
    decoded = _decode(query, kind, received, raw, source)
    if isinstance(decoded, Call):
        return decoded
    if tenant is not None:
        decoded.insert(0, ("_k", tenant))
    return from_params(kind, decoded, received=received, raw=raw, source=source, rules=rules)


def parse_form(
    body: bytes | str,
    *,
    kind: str,
    received: int | None = None,
    source: str = "",
    rules: Rules = DEFAULT_RULES,
    query: str = "",
) -> Call:
    """Parse an ``application/x-www-form-urlencoded`` body (a POST), plus its query string.

    Body parameters follow the query string's, so they win on a repeated key.

    Examples
    --------
    >>> parse_form(b"_k=K&_p=bob&_n=Signed%20Up", kind="e", received=1).name
    'Signed Up'
    >>> parse_form(b"_k=K&_p=%ff", kind="s", received=1).reason
    'bad_encoding'
    """
    if received is None:
        received = _now()
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body.decode("utf-8", "backslashreplace")
            return _reject(kind, (), {}, received, raw, source, "bad_encoding")
    else:
        text = body
    raw = f"/{kind}?{query}" if not text else f"/{kind}?{query}{'&' if query else ''}{text}"
    params: list[tuple[str, str]] = []
    for part in (query, text):
        decoded = _decode(part, kind, received, raw, source)
        if isinstance(decoded, Call):
            return decoded
        params.extend(decoded)
    return from_params(kind, params, received=received, raw=raw, source=source, rules=rules)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _encodable(raw: str, params: list[tuple[str, str]]) -> bool:
    """Tell whether every text can be stored as UTF-8 (no lone surrogates)."""
    try:
        raw.encode("utf-8")
        for key, value in params:
            key.encode("utf-8")
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def from_mapping(
    mapping: Mapping[str, Any],
    *,
    kind: str | None = None,
    received: int | None = None,
    source: str = "",
    rules: Rules = DEFAULT_RULES,
) -> Call:
    """Build a call from a Python mapping of parameters.

    The kind comes from `kind` or from the mapping's ``"_path"`` key (``"e"``, ``"/e"``...).
    Values that are not strings are kept as their JSON text (``1`` -> ``"1"``,
    ``True`` -> ``"true"``).

    Examples
    --------
    >>> from_mapping({"_path": "/e", "_k": "K", "_p": "bob", "_n": "Paid", "amount": 5}).properties
    (('amount', 'amount', '5'),)
    """
    if received is None:
        received = _now()
    raw = json.dumps(dict(mapping), ensure_ascii=False, default=str, sort_keys=True)
    params = [(str(k), _text(v)) for k, v in mapping.items() if k != "_path"]
    if not _encodable(raw, params):
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
        tenant = mapping.get("_k")
        known = {"_k": tenant} if isinstance(tenant, str) and _encodable(tenant, []) else {}
        return _reject(kind or "", (), known, received, raw, source, "bad_encoding")
    if kind is None:
        kind = _kind_of_path(_text(mapping.get("_path", "")))
    return from_params(kind, params, received=received, raw=raw, source=source, rules=rules)


_OCTAL_RUN = re.compile(r"(?:\\[0-7]{3})+|\\\\")


def _decode_octal(line: str) -> str:
    r"""Decode octal-escaped UTF-8 (``\303\251``) found in real Kissmetrics dumps."""

    def fix(match: re.Match[str]) -> str:
        run = match.group(0)
        if run == "\\\\":
            return run
        data = bytes(int(run[i + 1 : i + 4], 8) for i in range(0, len(run), 4))
        return json.dumps(data.decode("utf-8"), ensure_ascii=False)[1:-1]

    return _OCTAL_RUN.sub(fix, line) if "\\" in line else line


def parse_km_line(
    line: str,
    *,
    tenant: str | None = None,
    received: int | None = None,
    source: str = "",
    rules: Rules = DEFAULT_RULES,
) -> Call:
    r"""Parse one line of a Kissmetrics Data Export or JSON import file.

    ``_p2`` makes an alias, ``_n`` an event, anything else a property set. ``_t`` is the
    time the call happened (it is applied, as with ``_d=1``); a line without ``_k`` belongs
    to `tenant`.

    Examples
    --------
    >>> call = parse_km_line('{"_p": "bob", "_n": "Caf\\303\\251", "_t": 5}', tenant="K")
    >>> call.kind, call.name, call.t
    ('e', 'Café', 5)
    >>> parse_km_line('{"_p": "bob", "_p2": "b@x.org", "_t": 5}', tenant="K").kind
    'a'
    >>> parse_km_line('{"_p": "bob"', tenant="K", received=1).reason
    'malformed'
    """
    if received is None:
        received = _now()
    raw = line.rstrip("\r\n")
    try:
        data = json.loads(_decode_octal(raw))
    except UnicodeDecodeError:
        return _reject("", (), {}, received, raw, source, "bad_encoding")
    except ValueError:
        return _reject("", (), {}, received, raw, source, "malformed")
    if not isinstance(data, dict):
        return _reject("", (), {}, received, raw, source, "malformed")
    params = [(str(k), _text(v)) for k, v in data.items() if v is not None]
    if not _encodable(raw, params):
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
        known = {"_k": tenant} if tenant is not None else {}
        return _reject("", (), known, received, raw, source, "bad_encoding")
    keys = {k for k, _ in params}
    if "_p2" in keys:
        kind = "a"
        params = [("_n", v) if k == "_p2" else (k, v) for k, v in params if k != "_n"]
    elif "_n" in keys:
        kind = "e"
    else:
        kind = "s"
    if tenant is not None and "_k" not in keys:
        params.insert(0, ("_k", tenant))
    if "_t" in keys and "_d" not in keys:
        params.append(("_d", "1"))
    return from_params(kind, params, received=received, raw=raw, source=source, rules=rules)
