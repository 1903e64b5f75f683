r"""Line formats: how one line of each kind of input becomes tracking calls.

A :data:`Parse` function takes one line (bytes, without its line break) and its source
(``file:line``) and returns a :class:`~identity.calls.Call`, several (a CSV row with an
alias and an event), or None for a line that is not a tracking call (an access-log request
for a static file). It never raises for bad data: an undecodable line is a ``bad_encoding``
call, a line that is not of its format a ``malformed`` one (SPEC §4). :func:`parser` returns
the function of a format; :func:`sniff` guesses the format of an input from its first lines.

Examples
--------
>>> parse = parser("access", Context(tenant=None, received=0))
>>> line = b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /t/s?_k=K&_p=bob&x=1 HTTP/1.1" 200 43'
>>> call = parse(line, "access.log:1")
>>> call.kind, call.properties, call.received
('s', (('x', 'x', '1'),), 971211336)
>>> parse(b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /logo.png HTTP/1.1" 200 9', "") is None
True
"""

from __future__ import annotations

import csv
import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final, Literal, get_args

from ..calls import (
    DEFAULT_RULES,
    Call,
    Reason,
    Rules,
    from_mapping,
    from_params,
    parse_km_line,
    parse_query,
    read_json,
    rejected,
    tenant_hint,
    valid_time,
)

__all__ = [
    "BOM",
    "DEDUPE_TIME_KEY",
    "ESCAPE",
    "ESCAPED",
    "FORMATS",
    "NOT_LOGGED",
    "Context",
    "Format",
    "FormatOrAuto",
    "Layout",
    "Parse",
    "csv_header",
    "parser",
    "refuse",
    "shown",
    "sniff",
]

#: The line formats :func:`parser` knows.
Format = Literal["url", "km", "jsonl", "access", "csv"]
FORMATS: tuple[Format, ...] = get_args(Format)
#: What a reader is asked to read: a format, or ``"auto"`` (sniffed from the first lines).
FormatOrAuto = Literal["auto"] | Format

#: Quarantine reason of a POST access-log line whose parameters were in the unlogged body.
NOT_LOGGED: Final = "post_body_not_logged"

#: Extension key of ``km`` and ``url`` lines written by ``identity export``: the dedupe time
#: ``td`` of a call whose ``_t`` was sent without ``_d=1`` (``_t`` is then the event time).
DEDUPE_TIME_KEY = "_td"

#: Prefix of a property name that a line written by ``identity export`` could not carry as
#: it is (``_prop:_p2`` is the property ``_p2``); names never contain ``:`` (SPEC §5), so
#: the prefix cannot be a real name.
ESCAPE = "_prop:"

#: Property names that are escaped with :data:`ESCAPE` where a format would misread them.
#: (``_k``, ``_p``, ``_t`` and ``_d`` are never property names: every call takes them.)
ESCAPED = frozenset({"_p2", "_n", "_path", DEDUPE_TIME_KEY})

#: A UTF-8 byte order mark, as spreadsheet programs write at the start of CSV files.
BOM = b"\xef\xbb\xbf"

_TRACKING = (b"e", b"s", b"a")
_JSON_STARTS = frozenset(b'{["-0123456789tfn')
_INTEGER = re.compile(r"-?\d+").fullmatch

#: A parser turns one line (without its line break) into calls; None skips the line.
Parse = Callable[[bytes, str], "Call | tuple[Call, ...] | None"]


# -- sniffing --------------------------------------------------------------------------

_LOG_LINE = re.compile(
    rb'\S+ \S+ (?:.*?) \[(?P<time>[^\]]{1,40})\] "(?P<request>[^"\\]*(?:\\.[^"\\]*)*)" '
    rb"(?:\d{3}|-) (?:\d+|-)",
    re.DOTALL,
)


def sniff(lines: Sequence[bytes]) -> Format:
    r"""Guess the format of an input from its first lines.

    Parameters
    ----------
    lines : sequence of bytes
        The first few lines, raw.

    Returns
    -------
    str
        One of :data:`FORMATS`; ``url`` when nothing else fits.

    Examples
    --------
    >>> sniff([b'{"_p": "bob", "_n": "Paid", "_t": 1}'])
    'km'
    >>> sniff([b'{"_path": "e", "_k": "K", "_p": "bob", "_n": "Paid"}'])
    'jsonl'
    >>> sniff([b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /e?_p=a HTTP/1.0" 200 43'])
    'access'
    >>> sniff([b"\xef\xbb\xbfIdentity,Timestamp,Event,Prop:Plan"])
    'csv'
    >>> sniff([b"/e?_k=K&_p=bob&_n=Paid"])
    'url'
    """
    json_like = False
    for line in lines:
        data = line.removeprefix(BOM).strip()
        if not data:
            continue
        if data[0] in _JSON_STARTS:
            try:
                value, _ = read_json(data.decode("utf-8"))
            except UnicodeDecodeError:
                value = None
            if isinstance(value, dict):
                return "jsonl" if "_path" in value else "km"
            if data[:1] in b"{[" or value is not None:
                json_like = True  # an array, a string, a number: JSON, but not a call
                continue
        if _LOG_LINE.match(data):
            return "access"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if csv_header(text) is not None:
            return "csv"
        if "=" in text or "?" in text:
            return "url"
    return "km" if json_like else "url"


# -- CSV layout ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Column positions of a Kissmetrics CSV import file."""

    width: int
    identity: int
    timestamp: int | None
    event: int | None
    alias: int | None
    properties: tuple[tuple[int, str], ...]


def csv_header(text: str) -> Layout | str | None:
    """Return the layout of a CSV header line; a problem (str) or None when not a header."""
    cells = _split_csv(text)
    if cells is None:
        return None
    columns: dict[str, int] = {}
    properties = []
    problem = None
    for i, cell in enumerate(c.strip() for c in cells):
        folded = cell.casefold()
        if folded.startswith("prop:") and cell[5:].strip():
            properties.append((i, cell[5:].strip()))
        elif folded in ("identity", "timestamp", "event", "alias") and folded not in columns:
            columns[folded] = i
        elif problem is None:
            problem = f"column {cell!r} is not Identity, Timestamp, Event, Alias or Prop:NAME"
    if "identity" not in columns:
        return None
    if problem is not None:
        return problem
    return Layout(
        len(cells),
        columns["identity"],
        columns.get("timestamp"),
        columns.get("event"),
        columns.get("alias"),
        tuple(properties),
    )


def _split_csv(text: str) -> list[str] | None:
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration):
        return None


# -- access logs -----------------------------------------------------------------------

_MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)


_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()


@lru_cache(maxsize=1024)
def _log_day(text: bytes) -> int | None:
    """Return a log date ``10/Oct/2000`` as days since 1970-01-01, or None."""
    month = _MONTHS.get(text[3:6])
    if month is None or text[2:3] != b"/" or text[6:7] != b"/":
        return None
    try:
        return datetime.date(int(text[7:11]), month, int(text[0:2])).toordinal() - _EPOCH_DAY
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _log_time(text: bytes) -> int | None:
    """Return a log time ``10/Oct/2000:13:55:36 -0700`` as UTC seconds, or None.

    Examples
    --------
    >>> _log_time(b"10/Oct/2000:13:55:36 -0700"), _log_time(b"31/Feb/2000:00:00:00 +0000")
    (971211336, None)
    """
    if len(text) != 26 or text[20:21] != b" " or text[21:22] not in (b"+", b"-"):
        return None
    day = _log_day(text[:11])
    if day is None or text[11:12] != b":" or text[14:15] != b":" or text[17:18] != b":":
        return None
    try:
        hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
        offset = int(text[22:24]) * 3600 + int(text[24:26]) * 60
    except ValueError:
        return None
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second <= 60):
        return None
    stamp = day * 86_400 + hour * 3600 + minute * 60 + second
    return stamp - offset if text[21:22] == b"+" else stamp + offset


def _unescape(field: bytes) -> bytes:
    r"""Undo a log's escapes of the request field (``\"``, ``\\``, ``\xNN``)."""

    def fix(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return bytes((int(code[1:], 16),)) if len(code) == 3 else code

    return _ESCAPE.sub(fix, field)


def _target(request: bytes) -> tuple[bytes, bytes]:
    """Split a request line into method and target (the protocol dropped)."""
    method, _, rest = request.partition(b" ")
    cut = rest.rfind(b" ")
    if cut >= 0 and rest.startswith(b"HTTP/", cut + 1):
        rest = rest[:cut]
    return method, rest


# -- parsers, one per format -----------------------------------------------------------


def shown(data: bytes) -> str:
    """Return a line as text, undecodable bytes escaped (how a refused line is kept)."""
    return data.decode("utf-8", "backslashreplace")


#: Calls the extensions are applied to: accepted ones, and those with one property too many
#: when ``_td`` was counted as a property (an exported call with the most properties).
_EXTENSIBLE: frozenset[Reason | None] = frozenset({None, "too_many_properties"})


def _with_extensions(call: Call, rules: Rules) -> Call:
    """Apply the extensions ``identity export`` writes to a call read from a line.

    :data:`DEDUPE_TIME_KEY`: ``_t`` is then the event time and ``_td`` the dedupe time (the
    call was sent with ``_t=td`` but without ``_d=1``, and received at ``_t``).
    :data:`ESCAPE`: ``_prop:_p2`` is a property named ``_p2``, which the line could not
    carry under its own name (SPEC §1 gives it another meaning).
    """
    if call.kind not in ("e", "s") or call.reason not in _EXTENSIBLE:
        return call
    params = list(call.params)
    received = call.received
    values = dict(params)
    t, td = values.get("_t"), values.get(DEDUPE_TIME_KEY)
    if t is not None and td is not None and _INTEGER(t) and _INTEGER(td):
        params = [
            (k, td if k == "_t" else v) for k, v in params if k not in (DEDUPE_TIME_KEY, "_d")
        ]
        received = int(t)
    elif not any(k.startswith(ESCAPE) for k, _ in params):
        return call
    params = [(_unescaped(k), v) for k, v in params]
    return from_params(
        call.kind, params, received=received, raw=call.raw, source=call.source, rules=rules
    )


def _unescaped(key: str) -> str:
    if key.startswith(ESCAPE) and key[len(ESCAPE) :] in ESCAPED:
        return key[len(ESCAPE) :]
    return key


@dataclass(frozen=True, slots=True)
class Context:
    """What a parser needs beyond the line.

    Attributes
    ----------
    tenant : str or None
        API key of calls that carry no ``_k``.
    received : int
        Receive time of calls that carry none (access-log lines carry their own).
    rules : Rules
        Validation rules.
    """

    tenant: str | None
    received: int
    rules: Rules = DEFAULT_RULES


def refuse(text: str, reason: Reason, *, received: int, source: str, tenant: str | None) -> Call:
    """Return a line refused whole: its own ``_k`` when it plainly carries one, else `tenant`.

    Examples
    --------
    >>> refuse('{"_k": "K1", "_p": ', "malformed", received=1, source="", tenant="K").tenant
    'K1'
    """
    own = tenant_hint(text)
    return rejected(text, reason, received=received, source=source, tenant=own or tenant)


def _undecodable(data: bytes, source: str, ctx: Context) -> Call:
    return refuse(
        shown(data), "bad_encoding", received=ctx.received, source=source, tenant=ctx.tenant
    )


def _url_parser(ctx: Context) -> Parse:
    tenant, received, rules = ctx.tenant, ctx.received, ctx.rules

    def parse(data: bytes, source: str) -> Call:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _undecodable(data, source, ctx)
        call = parse_query(text, received=received, source=source, rules=rules, tenant=tenant)
        if ("_td=" in text or "_prop%3A" in text) and call.reason in _EXTENSIBLE:
            call = _with_extensions(call, rules)
        return call

    return parse


def _km_parser(ctx: Context) -> Parse:
    tenant, received, rules = ctx.tenant, ctx.received, ctx.rules

    def parse(data: bytes, source: str) -> Call:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _undecodable(data, source, ctx)
        call = parse_km_line(text, tenant=tenant, received=received, source=source, rules=rules)
        if ('"_td"' in text or '"_prop:' in text) and call.reason in _EXTENSIBLE:
            call = _with_extensions(call, rules)
        return call

    return parse


def _jsonl_parser(ctx: Context) -> Parse:
    tenant, received, rules = ctx.tenant, ctx.received, ctx.rules

    def parse(data: bytes, source: str) -> Call:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _undecodable(data, source, ctx)
        value, problem = read_json(text)
        if not isinstance(value, dict):
            reason = problem or "malformed"
            return refuse(text, reason, received=received, source=source, tenant=tenant)
        if tenant is not None and "_k" not in value:
            value = {"_k": tenant, **value}
        call = from_mapping(value, received=received, source=source, rules=rules)
        return call if call.reason is None else replace(call, raw=text)

    return parse


def _access_parser(ctx: Context) -> Parse:
    tenant, received, rules = ctx.tenant, ctx.received, ctx.rules
    match_line = _LOG_LINE.match

    def parse(data: bytes, source: str) -> Call | None:
        match = match_line(data)
        when = None if match is None else _log_time(match.group("time"))
        if match is None or when is None or not valid_time(when):
            return refuse(shown(data), "malformed", received=received, source=source, tenant=tenant)
        request = match.group("request")
        if b"\\" in request:
            request = _unescape(request)
        method, target = _target(request)
        if method not in (b"GET", b"POST"):
            return None
        path = target.partition(b"?")[0].partition(b"#")[0]
        if path.rstrip(b"/").rpartition(b"/")[2] not in _TRACKING:
            return None
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            return refuse(shown(data), "bad_encoding", received=when, source=source, tenant=tenant)
        if method == b"POST" and b"?" not in target:
            return refuse(shown(data), NOT_LOGGED, received=when, source=source, tenant=tenant)
        call = parse_query(text, received=when, source=source, rules=rules, tenant=tenant)
        return call if call.reason is None else replace(call, raw=shown(data))

    return parse


def _csv_parser(ctx: Context, layout: Layout) -> Parse:
    tenant, received, rules = ctx.tenant, ctx.received, ctx.rules
    key = [] if tenant is None else [("_k", tenant)]

    def parse(data: bytes, source: str) -> Call | tuple[Call, ...]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _undecodable(data, source, ctx)
        cells = _split_csv(text)
        if cells is None or len(cells) > layout.width:
            return refuse(text, "malformed", received=received, source=source, tenant=tenant)
        cells += [""] * (layout.width - len(cells))
        person = [*key, ("_p", cells[layout.identity])]
        stamp = "" if layout.timestamp is None else cells[layout.timestamp].strip()
        timing = [("_t", stamp), ("_d", "1")] if stamp else []
        alias = "" if layout.alias is None else cells[layout.alias]
        props = [(name, cells[i]) for i, name in layout.properties if cells[i] != ""]
        calls = []

        def build(kind: str, params: list[tuple[str, str]]) -> None:
            calls.append(
                from_params(kind, params, received=received, raw=text, source=source, rules=rules)
            )

        if alias:
            build("a", [*person, ("_n", alias), *timing])
        if layout.event is not None:
            event = cells[layout.event]
            if event or props or not alias:
                build("e", [*person, ("_n", event), *timing, *props])
        elif props or not alias:
            build("s", [*person, *timing, *props])
        return tuple(calls)

    return parse


def parser(fmt: Format, ctx: Context, layout: Layout | None = None) -> Parse:
    """Return the line parser of format `fmt` (``csv`` needs the header's `layout`).

    Examples
    --------
    >>> parse = parser("km", Context(tenant="K", received=5))
    >>> parse(b'{"_p": "bob", "_p2": "b@x.org", "_t": 3}', "export.json:1").name
    'b@x.org'
    >>> parse(b'{"_p": "bob", "_n": ', "export.json:2").reason
    'malformed'
    """
    if fmt == "csv":
        if layout is None:
            return _malformed_parser(ctx)
        return _csv_parser(ctx, layout)
    makers = {
        "url": _url_parser,
        "km": _km_parser,
        "jsonl": _jsonl_parser,
        "access": _access_parser,
    }
    return makers[fmt](ctx)


def _malformed_parser(ctx: Context) -> Parse:
    def parse(data: bytes, source: str) -> Call:
        return refuse(
            shown(data), "malformed", received=ctx.received, source=source, tenant=ctx.tenant
        )

    return parse
