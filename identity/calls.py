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
import reprlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal, get_args
from urllib.parse import unquote

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_BLOCKED",
    "DEFAULT_RULES",
    "KINDS",
    "MAX_CALL_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_NUMBER_LENGTH",
    "MAX_PROPERTIES",
    "MAX_TIME",
    "MIN_TIME",
    "REASONS",
    "Call",
    "Kind",
    "Reason",
    "Rules",
    "from_mapping",
    "from_params",
    "name_key",
    "normalise_name",
    "parse_form",
    "parse_km_line",
    "parse_query",
    "read_json",
    "rejected",
    "tenant_hint",
    "valid_time",
    "validate",
]

#: The three calls, by path: record an event, set properties, alias two identities.
Kind = Literal["e", "s", "a"]
KINDS: frozenset[str] = frozenset(get_args(Kind))

#: Identities, event names and property names longer than this are refused (KM).
MAX_NAME_LENGTH = 255

#: The earliest and latest time accepted, in UTC seconds (1970-01-01T00:00:00Z and
#: 9999-12-31T23:59:59Z): a ``_t`` outside is ``bad_timestamp``, never an overflow.
MIN_TIME = 0
MAX_TIME = 253_402_300_799

#: Longest ``_t`` text read as a number, in characters (longer: not a number).
MAX_NUMBER_LENGTH = 64

#: Most properties one ``/e`` or ``/s`` call may set (more: ``too_many_properties``).
MAX_PROPERTIES = 1000

#: Longest call accepted from a line, a form body or a mapping, in characters
#: (longer: ``too_large``).
MAX_CALL_LENGTH = 1 << 20

#: Deepest nesting of a JSON line (objects and arrays; deeper: ``malformed``). Properties
#: are flat; a nested value is kept as its JSON text.
MAX_JSON_DEPTH = 32

#: Every quarantine reason, in the order the checks run (the first failing check wins).
Reason = Literal[
    "unknown_call",
    "malformed",
    "too_large",
    "incomplete",
    "post_body_not_logged",
    "bad_encoding",
    "control_character",
    "missing_key",
    "unknown_key",
    "missing_person",
    "person_too_long",
    "missing_event_name",
    "missing_alias",
    "name_too_long",
    "alias_too_long",
    "bad_timestamp",
    "too_many_properties",
    "missing_property_name",
    "value_too_long",
    "blocked_identity",
    "rejected_by_store",
]
REASONS: tuple[Reason, ...] = get_args(Reason)

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
#: C0 and C1 control characters (NUL included), refused in tenants, identities and names.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OUT_OF_RANGE = -(2**63)


def _has_control(text: str) -> bool:
    """Tell whether `text` holds a control character (``isprintable`` is the fast path)."""
    return not text.isprintable() and _CONTROL.search(text) is not None


# what _as_int returns for a number outside [MIN_TIME, MAX_TIME]
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
        compiled = self._compiled
        return bool(compiled) and any(p.fullmatch(folded) for p in compiled)

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
    reason: Reason | None = None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the call is accepted (not quarantined)."""
        return self.reason is None


def _now() -> int:
    return int(time.time())


def _check_received(received: int) -> None:
    """Refuse a receive time the caller got wrong (it is a clock, not tracking data)."""
    if not MIN_TIME <= received <= MAX_TIME:
        raise ConfigurationError(
            f"received must be UTC seconds from {MIN_TIME} to {MAX_TIME}, not {received}"
        )


_TENANT_QUERY = re.compile(r"(?:^|[?&])_k=([^&#]*)")
_TENANT_JSON = re.compile(r'"_k"\s*:\s*"((?:[^"\\]|\\.){1,1024}?)"')


def tenant_hint(text: str) -> str | None:
    """Return the ``_k`` a refused call plainly carries (query string or JSON), or None.

    Used for calls quarantined before they could be parsed (``bad_encoding``,
    ``malformed``), so that ``identity quarantine --tenant`` still finds them.

    Examples
    --------
    >>> tenant_hint("/e?_k=K1&_p=%ff"), tenant_hint('{"_k": "K2", "_p": '), tenant_hint("x")
    ('K1', 'K2', None)
    """
    match = _TENANT_QUERY.search(text)
    if match is not None:
        try:
            found = unquote(match.group(1).replace("+", " "), errors="strict")
        except UnicodeDecodeError:
            return None
    else:
        match = _TENANT_JSON.search(text)
        if match is None:
            return None
        try:
            found = json.loads(f'"{match.group(1)}"')
        except ValueError:
            return None
    return _storable(found)


def _storable(tenant: Any) -> str | None:
    """Return `tenant` when it can be stored as a quarantined call's tenant, else None."""
    if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_NAME_LENGTH:
        return None
    if _has_control(tenant) or not _encodable(tenant, []):
        return None
    return tenant


_BRACKETS = re.compile(r"[^\[\]{}]+")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(r"\{\}|\[\]")


def read_json(text: str) -> tuple[Any, Reason | None]:
    """Parse one JSON line at bounded cost: ``(value, None)``, or ``(None, reason)``.

    The reason is ``too_large`` (more than :data:`MAX_CALL_LENGTH` characters) or
    ``malformed`` (not JSON, or nested deeper than :data:`MAX_JSON_DEPTH`).

    Examples
    --------
    >>> read_json('{"_p": "bob"}'), read_json("[" * 1000 + "]" * 1000), read_json("{")
    (({'_p': 'bob'}, None), (None, 'malformed'), (None, 'malformed'))
    """
    if len(text) > MAX_CALL_LENGTH:
        return None, "too_large"
    if _too_deep(text):
        return None, "malformed"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, "malformed"


def _too_deep(text: str) -> bool:
    """Tell whether JSON `text` nests objects and arrays deeper than :data:`MAX_JSON_DEPTH`.

    Linear passes over the text (no recursion): strings are removed, then innermost pairs
    of brackets, once per level.
    """
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return False
    brackets = _BRACKETS.sub("", _JSON_STRING.sub("", text))
    for _ in range(MAX_JSON_DEPTH):
        brackets, removed = _INNERMOST.subn("", brackets)
        if not brackets or not removed:
            return False
    return bool(brackets)


def valid_time(t: int) -> bool:
    """Tell whether `t` is a time identity accepts (:data:`MIN_TIME` to :data:`MAX_TIME`).

    Examples
    --------
    >>> valid_time(1262304000), valid_time(-1), valid_time(10**30)
    (True, False, False)
    """
    return MIN_TIME <= t <= MAX_TIME


def _as_int(value: str) -> int | None:
    """Parse a ``_t`` at bounded cost: its integer part, None when it is not a number.

    A number outside :data:`MIN_TIME` .. :data:`MAX_TIME` gives ``_OUT_OF_RANGE``. The text
    is at most :data:`MAX_NUMBER_LENGTH` characters, and an exponent is checked before any
    integer is built from it (``1e100000000`` costs as little as ``1``).
    """
    if len(value) > MAX_NUMBER_LENGTH:
        return None
    if value.isdigit() and value.isascii():
        number = int(value)
    elif not _NUMBER.fullmatch(value):
        return None
    else:
        try:
            exact = Decimal(value)
        except (InvalidOperation, ValueError):  # pragma: no cover - the regex guards
            return None
        if exact.adjusted() > 18:  # at least 10**19: far out of range, never built
            return _OUT_OF_RANGE
        number = 0 if exact.adjusted() < 0 else int(exact)
    return number if MIN_TIME <= number <= MAX_TIME else _OUT_OF_RANGE


def _reject(
    kind: str,
    params: tuple[tuple[str, str], ...],
    values: Mapping[str, str],
    received: int,
    raw: str,
    source: str,
    reason: Reason,
) -> Call:
    if not _encodable(raw, []):  # kept verbatim, but the store holds UTF-8 only
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
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


_UNPARSED: frozenset[Reason] = frozenset({"malformed", "bad_encoding", "too_large", "incomplete"})


def rejected(
    raw: str, reason: Reason, *, received: int, source: str = "", tenant: str | None = None
) -> Call:
    """Return a call refused before it could be parsed (e.g. ``bad_encoding``).

    Examples
    --------
    >>> rejected("/e?_p=%ff", "bad_encoding", received=1).ok
    False
    """
    _check_received(received)
    tenant = _storable(tenant)
    if tenant is None and reason in _UNPARSED:
        tenant = tenant_hint(raw)
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
    else:
        _check_received(received)
    params = tuple(params)
    if raw is None:
        raw = json.dumps({"_path": kind, **dict(params)}, ensure_ascii=False)
    values = dict(params)
    if not raw.isascii() and not _encodable(raw, params):  # a lone surrogate from a str
        return _reject(kind, (), _tenant_only(values), received, raw, source, "bad_encoding")
    if kind not in KINDS:
        return _reject(kind, params, values, received, raw, source, "unknown_call")
    reason = _check_common(kind, values, rules)
    if reason is not None:
        return _reject(kind, params, values, received, raw, source, reason)
    stamp = values.get("_t")
    number = _as_int(stamp) if stamp is not None else None
    if number == _OUT_OF_RANGE:
        return _reject(kind, params, values, received, raw, source, "bad_timestamp")
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
        count = 0
        for key, value in params:
            if key in reserved:
                continue
            count += 1
            if count > MAX_PROPERTIES:
                return _reject(kind, params, values, received, raw, source, "too_many_properties")
            if not key:
                return _reject(kind, params, values, received, raw, source, "missing_property_name")
            if len(key) > MAX_NAME_LENGTH:
                return _reject(kind, params, values, received, raw, source, "name_too_long")
            if _has_control(key):
                return _reject(kind, params, values, received, raw, source, "control_character")
            if len(value) > rules.max_value_length:
                return _reject(kind, params, values, received, raw, source, "value_too_long")
            shown = normalise_name(key)
            folded = shown.casefold()
            props.pop(folded, None)
            props[folded] = (folded, shown, value)
        properties = tuple(sorted(props.values()))
    # positional: a third cheaper than by keyword, and this runs for every accepted call
    return Call(
        kind, values["_k"], identity, name, properties, t, td, received, raw, source, None, params
    )


def _tenant_only(values: Mapping[str, str]) -> dict[str, str]:
    tenant = _storable(values.get("_k"))
    return {} if tenant is None else {"_k": tenant}


def _check_common(kind: str, values: Mapping[str, str], rules: Rules) -> Reason | None:
    tenant = values.get("_k")
    if not tenant:
        return "missing_key"
    if len(tenant) > MAX_NAME_LENGTH or _has_control(tenant):
        return "unknown_key" if rules.allowed_keys is not None else "control_character"
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
    if _has_control(person) or (kind != "s" and other and _has_control(other)):
        return "control_character"
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


#: ``%XX`` of every ASCII character, upper and lower case: what `_unquote_ascii` decodes.
_ASCII_ESCAPES = {
    **{f"{code:02X}": chr(code) for code in range(128)},
    **{f"{code:02x}": chr(code) for code in range(128)},
}


def _unquote_ascii(text: str) -> str | None:
    """Decode `text` whose every ``%`` starts an escaped ASCII character; else None.

    The same result as :func:`urllib.parse.unquote` for those texts, at a fraction of its
    cost (one look-up per escape): most escapes in tracking calls are ``%40``, ``%2F``...

    Examples
    --------
    >>> _unquote_ascii("bob%40example.com"), _unquote_ascii("caf%C3%A9"), _unquote_ascii("5%")
    ('bob@example.com', None, None)
    """
    first, *rest = text.split("%")
    decoded = [first]
    escapes = _ASCII_ESCAPES
    for part in rest:
        char = escapes.get(part[:2])
        if char is None:  # a UTF-8 byte, or a "%" that escapes nothing: unquote's rules
            return None
        decoded.append(char)
        decoded.append(part[2:])
    return "".join(decoded)


@lru_cache(maxsize=1 << 16)
def _unquote_escaped(text: str) -> str:
    text = text.replace("+", " ")
    decoded = _unquote_ascii(text)
    return unquote(text, errors="strict") if decoded is None else decoded


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
    query: str, kind: str, received: int, raw: str, source: str, tenant: str | None = None
) -> list[tuple[str, str]] | Call:
    """Decode a query string like ``parse_qsl(keep_blank_values=True)``, strictly UTF-8."""
    try:
        pairs: list[tuple[str, str]] = []
        append = pairs.append
        for part in query.split("&"):
            if part:
                key, _, value = part.partition("=")
                # inlined `_unquote`: most keys and many values are plain
                if "%" in key or "+" in key:
                    key = _unquote(key)
                if "%" in value:
                    value = _unquote_escaped(value)
                elif "+" in value:
                    value = value.replace("+", " ")
                append((key, value))
        return pairs
    except UnicodeDecodeError:
        return _unparsed(kind, received, raw, source, "bad_encoding", tenant)


def _unparsed(
    kind: str, received: int, raw: str, source: str, reason: Reason, tenant: str | None
) -> Call:
    """Return a call refused before its parameters could be read, with its tenant if seen."""
    found = tenant_hint(raw) or _storable(tenant)
    return _reject(kind, (), {} if found is None else {"_k": found}, received, raw, source, reason)


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
    if len(text) > MAX_CALL_LENGTH:
        raw = text[:4096] + f"... [{len(text)} characters]"
        return _unparsed(kind or "", received, raw, source, "too_large", tenant)
    text = text.strip()
    if "#" in text:
        text = text.split("#", 1)[0]
    path, mark, query = text.partition("?")
    if not mark and "/" not in path:
        path, query = "", path
    if kind is None:
        kind = _kind_of_path(path)
    decoded = _decode(query, kind, received, raw, source, tenant)
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
    if len(body) + len(query) > MAX_CALL_LENGTH:
        raw = f"/{kind}?{query[:4096]}... [{len(body) + len(query)} characters]"
        return _unparsed(kind, received, raw, source, "too_large", None)
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = f"/{kind}?{query}{'&' if query else ''}"
            raw += body.decode("utf-8", "backslashreplace")
            return _unparsed(kind, received, raw, source, "bad_encoding", None)
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


def _encodable(raw: str, params: Iterable[tuple[str, str]]) -> bool:
    """Tell whether every text can be stored as UTF-8 (no lone surrogates)."""
    try:
        raw.encode("utf-8")
        for key, value in params:
            key.encode("utf-8")
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PREVIEW_REPR = reprlib.Repr()
_PREVIEW_REPR.maxlevel, _PREVIEW_REPR.maxdict, _PREVIEW_REPR.maxstring = 3, 1000, 1000


def _str_or_none(mapping: Mapping[str, Any]) -> str | None:
    tenant = mapping.get("_k")
    return tenant if isinstance(tenant, str) else None


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
    try:
        raw = json.dumps(dict(mapping), ensure_ascii=False, default=str, sort_keys=True)
        params = [(str(k), _text(v)) for k, v in mapping.items() if k != "_path"]
        path = _text(mapping.get("_path", ""))
    except (RecursionError, ValueError, TypeError):  # too deep, circular, unsortable keys
        raw = _PREVIEW_REPR.repr(dict(mapping))
        return _unparsed(kind or "", received, raw, source, "malformed", _str_or_none(mapping))
    if len(raw) > MAX_CALL_LENGTH:
        raw = raw[:4096] + f"... [{len(raw)} characters]"
        return _unparsed(kind or "", received, raw, source, "too_large", _str_or_none(mapping))
    if _too_deep(raw):
        return _unparsed(kind or "", received, raw, source, "malformed", _str_or_none(mapping))
    if not _encodable(raw, params):
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
        tenant = mapping.get("_k")
        known = {"_k": tenant} if isinstance(tenant, str) and _encodable(tenant, []) else {}
        return _reject(kind or "", (), known, received, raw, source, "bad_encoding")
    if kind is None:
        kind = _kind_of_path(path)
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
    if len(raw) > MAX_CALL_LENGTH:
        raw = raw[:4096] + f"... [{len(raw)} characters]"
        return _unparsed("", received, raw, source, "too_large", tenant)
    try:
        data, problem = read_json(_decode_octal(raw))
    except UnicodeDecodeError:
        return _unparsed("", received, raw, source, "bad_encoding", tenant)
    if problem is not None:
        return _unparsed("", received, raw, source, problem, tenant)
    if not isinstance(data, dict):
        return _unparsed("", received, raw, source, "malformed", tenant)
    params = [(str(k), _text(v)) for k, v in data.items() if v is not None]
    if not _encodable(raw, params):
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
        own = data.get("_k")
        if isinstance(own, str) and _encodable(own, []):
            tenant = own
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
