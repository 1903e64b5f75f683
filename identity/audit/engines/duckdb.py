"""The audit on DuckDB: one machine, out of core (a memory limit, a spill directory).

The pipeline, all of it in one DuckDB database (in memory, spilling to `spill_dir`):

1. **Read.** Query-string / URL lines and access logs (plain or gzip) are read by DuckDB's
   CSV reader, one column a line, and parsed and validated in SQL, but only the lines that
   the SQL rules provably decide as identity's own readers do: printable ASCII, ``%XX``
   escapes of printable ASCII, no repeated parameter, ``_t`` a plain decimal number, at most
   :data:`~identity.calls.MAX_PROPERTIES` properties; for an access log, a common or
   combined log line with a plain timestamp and a GET or POST of such a target (its time is
   the call's receive time; a request for another file is skipped, as the reader skips it);
   for Kissmetrics JSON and JSONL, a flat object of printable-ASCII strings and plain
   integers (for JSONL, a ``_path`` that names ``e``, ``s`` or ``a``). Every other line
   (hostile, non-ASCII, odd) and every line of a CSV file is parsed by identity's own parser
   (:func:`identity.io.formats.parser`), so there is one definition of the rules; tests
   check the SQL path against it line by line.
2. **Store.** The accepted calls are folded as the store folds them (SPEC §8): events by
   identity, case-insensitive name, dedupe time and properties, property records, alias
   links by unordered pair (earliest time), quarantined calls by raw text,
   reason and receive time.
3. **People.** Identities are numbered (``row_number`` over the distinct strings: no hash
   collisions) and their components found by randomized contraction
   (:func:`~identity.audit.engines.components.duckdb_components`); a person's id is its
   smallest identity.
4. **Report.** The counts are SQL aggregates; the links come out of DuckDB as NumPy arrays
   and every person's bridges are found at once by
   :func:`identity.audit.bulk_bridges.bulk_bridges` (a compiled depth-first search and
   vector steps; equal, link for link, to the in-memory engine's
   :func:`~identity.audit.bridges.bridges_of`); the riskiest merges' explain chains
   and drawings come from :mod:`identity.inspection` on an in-memory engine holding only
   those people's accepted calls, rebuilt from the ``calls`` table.

DuckDB's ``memory_limit`` bounds DuckDB; the bridge pass holds its arrays, about 100 bytes
a link, outside it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...calls import (
    DEFAULT_RULES,
    MAX_CALL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PROPERTIES,
    MAX_TIME,
    Call,
)
from ...errors import IdentityError
from ...io.formats import Context, FormatOrAuto, parser
from ...io.sources import MAX_LINE, Input, Reader, expand, line_text
from ..bridges import Split
from ..model import (
    EXAMPLES,
    KINDS,
    RETRY_WINDOW,
    TOP,
    Audit,
    Junk,
    KindCount,
    Largest,
    Merge,
    Reason,
    Retry,
)
from .components import duckdb_components
from .memory import HUB_LINKS, MIN_PART
from .report import Queries, report

if TYPE_CHECKING:  # pragma: no cover - typing only
    import duckdb as _duckdb

    from ...engine import Engine

__all__ = ["DuckDBUnavailableError", "audit", "read_calls"]

_DAY = 86_400
_quote = json.encoder.encode_basestring
_BATCH = 20_000


class DuckDBUnavailableError(IdentityError):
    """duckdb (or numpy or scipy, which its bridge pass uses) is not installed."""


_CALLS_DDL = """
CREATE OR REPLACE TABLE calls (
    input INTEGER, line BIGINT, kind VARCHAR, tenant VARCHAR, identity VARCHAR, name VARCHAR,
    t BIGINT, td BIGINT, received BIGINT, raw VARCHAR, reason VARCHAR,
    props STRUCT(k VARCHAR, n VARCHAR, v VARCHAR)[], nkey VARCHAR, shown VARCHAR
)
"""

#: A line the SQL path decides: ``[prefix/]e|s|a?query``, printable ASCII, escapes of
#: printable ASCII only, no fragment, no space (spaces come as ``+`` or ``%20``).
_SIMPLE = (
    r"^(?:[A-Za-z0-9/:._~!$'()*,;=@+-]*/)?[esa]\?"
    r"(?:[A-Za-z0-9._~!$'()*,;=@+/:?&-]|%[2-6][0-9A-Fa-f]|%7[0-9A-Ea-e])*$"
)
#: A simple line whose every parameter is ``key=value`` with no ``=`` or ``&`` in either,
#: not even escaped (``%3D``, ``%26``): its query splits at ``=`` and ``&`` into keys and
#: values by turns, decoded as a whole.
_FLAT_PART = (
    r"(?:[A-Za-z0-9._~!$'()*,;@+/:?-]|%2[0-57-9A-Fa-f]|%3[0-9A-Ca-cE-Fe-f]|%[4-6][0-9A-Fa-f]"
    r"|%7[0-9A-Ea-e])*"
)
_FLAT = (
    r"^(?:[A-Za-z0-9/:._~!$'()*,;=@+-]*/)?[esa]\?"
    rf"{_FLAT_PART}={_FLAT_PART}(?:&{_FLAT_PART}={_FLAT_PART})*$"
)
_NUMBER = r"[0-9]{1,15}(\.[0-9]{0,15})?"
#: The parameters a call reads itself (for ``s``, ``_n`` is a property).
RESERVED = ("_k", "_p", "_n", "_t", "_d")
#: An empty list of (key, value) pairs, typed as ``list_zip`` makes them.
_NO_PAIRS = "list_zip(CAST([] AS VARCHAR[]), CAST([] AS VARCHAR[]))"


def _dec(x: str) -> str:
    """Decode a key or value as ``calls._unquote`` does (``+`` is a space, ``%XX`` a byte)."""
    return (
        f"(CASE WHEN strpos({x}, '%') > 0 THEN url_decode(replace({x}, '+', ' ')) "
        f"ELSE replace({x}, '+', ' ') END)"
    )


def _esc(x: str) -> str:
    """JSON string escapes of printable ASCII (what ``encode_basestring`` does to it)."""
    return f"replace(replace({x}, '\\', '\\\\'), '\"', '\\\"')"


def _is_blocked_ascii(x: str, blocked: Sequence[str]) -> str:
    """Return SQL telling whether printable-ASCII `x` is blocked, as ``Rules.is_blocked``.

    Its comparison form (stripped of spaces, lower-cased, stripped of quotes, stripped of
    spaces) is in `blocked` or all zeros and dashes exactly when `x` is spaces, quotes,
    spaces, a listed identity (any case) or zeros and dashes, spaces, quotes, spaces: one
    regular expression, behind a cheap test of the first and last characters.
    """
    listed = "|".join(re.escape(b) for b in sorted(blocked, key=lambda b: (-len(b), b)) if b)
    pattern = f"""(?i) *["'`]* *(?:{listed}|[0-]*) *["'`]* *""".replace("'", "''")
    return f"({_may_be_junk(x, blocked)} AND regexp_full_match({x}, '{pattern}'))"


def _may_be_junk(x: str, blocked: Sequence[str]) -> str:
    """Return a cheap SQL test that every blocked identity (ASCII) passes: a prefilter.

    A blocked identity's comparison form is in the block list or all zeros and dashes, so
    its first and last characters, ignoring case, are a first or last character of a listed
    identity (or ``0``, ``-``), unless it is padded with spaces or quotes that the form drops.
    """
    pad = " \"'`"
    firsts = {b[0] for b in blocked if b} | set("0-" + pad)
    lasts = {b[-1] for b in blocked if b} | set("0-" + pad)

    def codes(chars: set[str]) -> str:  # either case: the comparison form is lower case
        return ", ".join(str(c) for c in sorted({ord(x) for c in chars for x in (c, c.upper())}))

    return f"({x} = '' OR (ascii({x}) IN ({codes(firsts)}) AND ascii({x}[-1]) IN ({codes(lasts)})))"


#: An access-log line the SQL path decides: common/combined log format, a plain timestamp
#: (``strptime`` checks the date), a GET or POST of a target without spaces, quotes or
#: backslashes, then a status and a size; anything may follow (identity's reader matches
#: only a prefix too). A line this does not match goes to identity's own parser.
_ACCESS = (
    r"^[^ ]+ [^ ]+ [^ \[\]\x22]+ \[([0-9]{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r"/[0-9]{4}:(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] [+-][0-9]{4})\] "
    r"\x22(GET|POST) ([^ \x22\\]+) HTTP/1\.[01]\x22 (?:[0-9]{3}|-) (?:[0-9]+|-)"
)


#: A Kissmetrics JSON line the SQL path decides: one flat object whose keys and values are
#: strings of printable ASCII without escapes, or values that are plain non-negative integers
#: (no sign, fraction, exponent, ``true``/``null`` or nesting), spaces only between tokens.
_KM_TOKEN = r'"[ !#-\[\]-~]*"'
_KM_VALUE = r'(?:"[ !#-\[\]-~]*"|0|[1-9][0-9]{0,17})'
_KM_PAIR = f"({_KM_TOKEN}) *: *({_KM_VALUE})"
_KM_LINE = rf"\{{ *(?:{_KM_TOKEN} *: *{_KM_VALUE} *(?:, *{_KM_TOKEN} *: *{_KM_VALUE} *)*)?\}}"


def _read_sql(path: str, *, gz: bool) -> str:
    """Return the SQL that reads a file's lines into ``_read(line, text)``, blank ones dropped."""
    quoted = path.replace("'", "''")
    return f"""
    CREATE OR REPLACE TEMP TABLE _read AS
    SELECT row_number() OVER () AS line, text FROM read_csv('{quoted}',
        columns = {{'text': 'VARCHAR'}}, header = false, delim = chr(1), quote = '',
        escape = '', auto_detect = false, strict_mode = false, max_line_size = {4 * MAX_LINE},
        compression = '{"gzip" if gz else "none"}');
    DELETE FROM _read WHERE text IS NULL OR text = '' OR (ascii(text) IN (9, 10, 11, 12, 13, 32)
        AND regexp_full_match(text, '[ \t\n\r\x0b\x0c]*'))
    """


#: Lines parsed in SQL at a time: the stages' tables hold a chunk, not a whole 10⁸-line file.
_CHUNK = 4_000_000


def _native_sql(blocked: Sequence[str], fmt: str = "url") -> str:
    """Return the SQL that parses lines of ``_read`` into ``calls`` (the simple lines only).

    Parameters: ``$input, $name, $received, $tenant`` and the lines ``$lo < line <= $hi``
    of ``_read``. Of a url, km or access-log file; the lines it does not decide are
    written to ``_hard(line, text)``, for identity's own parser; access-log lines of files
    that are not tracking calls (``/logo.png``) are dropped, as the reader skips them.
    """
    key = "CASE WHEN strpos(p, '=') > 0 THEN left(p, strpos(p, '=') - 1) ELSE p END"
    value = "CASE WHEN strpos(p, '=') > 0 THEN substr(p, strpos(p, '=') + 1) ELSE '' END"
    n = MAX_NAME_LENGTH
    prop_reason = (
        "list_filter(list_transform(pv, lambda x: CASE WHEN x[1] = '' THEN 'missing_property_name' "
        f"WHEN length(x[1]) > {n} THEN 'name_too_long' "
        f"WHEN length(x[2]) > {DEFAULT_RULES.max_value_length} THEN 'value_too_long' END), "
        "lambda r: r IS NOT NULL)[1]"
    )
    reason = f"""CASE
        WHEN k IS NULL OR k = '' THEN 'missing_key'
        WHEN length(k) > {n} THEN 'control_character'
        WHEN p IS NULL OR p = '' THEN 'missing_person'
        WHEN length(p) > {n} THEN 'person_too_long'
        WHEN kind = 'e' AND (n IS NULL OR n = '') THEN 'missing_event_name'
        WHEN kind = 'e' AND length(n) > {n} THEN 'name_too_long'
        WHEN kind = 'a' AND (n IS NULL OR n = '') THEN 'missing_alias'
        WHEN kind = 'a' AND length(n) > {n} THEN 'alias_too_long'
        WHEN num > {MAX_TIME} THEN 'bad_timestamp'
        WHEN dd = '1' AND num IS NULL THEN 'bad_timestamp'
        WHEN kind = 'a' AND n <> p
            AND ({_is_blocked_ascii("p", blocked)} OR {_is_blocked_ascii("n", blocked)})
            THEN 'blocked_identity'
        WHEN kind <> 'a' AND len(pv) > 0 THEN {prop_reason}
        END"""
    if fmt in ("url", "km", "jsonl"):
        lines = "CREATE OR REPLACE TEMP VIEW _lines AS SELECT line, text, "
        lines += "CAST(NULL AS VARCHAR) AS whole, $received AS received FROM _read "
        lines += "WHERE line > $lo AND line <= $hi"
    else:  # access: the request's target is the url line, the log's time its receive time
        tracking = (
            "regexp_extract(rtrim(split_part(split_part(target, '?', 1), '#', 1), '/'), "
            "'[^/]*$') IN ('e', 's', 'a')"
        )
        decided = f"coalesce(target <> '' AND received BETWEEN 0 AND {MAX_TIME}, false)"
        lines = f"""CREATE OR REPLACE TEMP TABLE _acc AS SELECT line, text AS whole, m.target,
            CAST(epoch(try_strptime(m.stamp, '%d/%b/%Y:%H:%M:%S %z')) AS BIGINT) AS received
        FROM (SELECT line, text, regexp_extract(text, '{_ACCESS.replace("'", "''")}',
            ['stamp', 'method', 'target']) AS m FROM _read WHERE line > $lo AND line <= $hi);
        INSERT INTO _hard SELECT line, whole FROM _acc WHERE NOT ({decided});
        CREATE OR REPLACE TEMP TABLE _lines AS SELECT line, target AS text, whole, received
        FROM _acc WHERE {decided} AND {tracking};
        DROP TABLE _acc"""
    if fmt in ("km", "jsonl"):
        # a JSONL line's length bound is that of the call's text as from_mapping writes it:
        # sorted keys, ", " and ": " between them (at most two characters more a pair), and
        # the default tenant's pair when the line has no _k (its text escaped: at most 6 a
        # character, with its quotes, key and separators 10 more)
        size = "length(text)"
        if fmt == "jsonl":
            size += " + 2 * len(ks) + coalesce(6 * length($tenant) + 10, 0)"
        head = f"""CREATE OR REPLACE TEMP VIEW _a AS
        SELECT line, text, received, list_transform(
            regexp_extract_all(text, '{_KM_PAIR.replace("'", "''")}', 1),
            lambda x: substr(x, 2, length(x) - 2)) AS ks,
            list_transform(regexp_extract_all(text, '{_KM_PAIR.replace("'", "''")}', 2),
                lambda x: CASE WHEN starts_with(x, '"') THEN substr(x, 2, length(x) - 2)
                ELSE x END) AS vs
        FROM _lines
        WHERE regexp_full_match(text, '{_KM_LINE.replace("'", "''")}')
            AND strpos(text, '"_td"') = 0 AND strpos(text, '"_prop:') = 0;
"""
    if fmt == "jsonl":  # the kind is the last part of "_path" ("e", "/e", "/t/e/")
        head += f"""CREATE OR REPLACE TEMP TABLE _b AS
        SELECT line, received, kind,
            list_filter(rk, lambda x: x <> '_path') AS ks,
            list_filter(rv, lambda x, i: rk[i] <> '_path') AS vs
        FROM (SELECT line, text, received, ks AS rk, vs AS rv,
                regexp_extract(rtrim(vs[list_position(ks, '_path')], '/'), '[^/]*$') AS kind
            FROM _a WHERE len(ks) <= {MAX_PROPERTIES} AND list_unique(ks) = len(ks)
                AND {size} <= {MAX_CALL_LENGTH})
        WHERE kind IN ('e', 's', 'a');
"""
    elif fmt == "km":
        head += f"""CREATE OR REPLACE TEMP TABLE _b AS
        SELECT line, received, kind,
            CASE WHEN kind = 'a' THEN list_transform(list_filter(rk, lambda x: x <> '_n'),
                lambda x: CASE WHEN x = '_p2' THEN '_n' ELSE x END) ELSE rk END
            || CASE WHEN t_only THEN ['_d'] ELSE [] END AS ks,
            CASE WHEN kind = 'a' THEN list_filter(rv, lambda x, i: rk[i] <> '_n') ELSE rv END
            || CASE WHEN t_only THEN ['1'] ELSE [] END AS vs
        FROM (SELECT line, text, received, ks AS rk, vs AS rv,
                CASE WHEN list_contains(ks, '_p2') THEN 'a'
                WHEN list_contains(ks, '_n') THEN 'e' ELSE 's' END AS kind,
                list_contains(ks, '_t') AND NOT list_contains(ks, '_d') AS t_only
            FROM _a WHERE len(ks) <= {MAX_PROPERTIES} AND list_unique(ks) = len(ks)
                AND {size} <= {MAX_CALL_LENGTH});
"""
    else:  # three lanes: flat lines without properties, flat lines with them, the rest
        flat = _FLAT.replace("'", "''")
        positions = ", ".join(f"list_position(l, '{k}') AS p{k[1]}" for k in RESERVED)
        turns = " AND ".join(f"coalesce(p{k[1]} % 2, 1) = 1" for k in RESERVED)
        found = " + ".join(f"(p{k[1]} IS NOT NULL)::INT" for k in RESERVED)
        # a list column costs more to store and scan than its parts: only scalars are kept,
        # and the key and value lists of the lines that have properties
        head = f"""CREATE OR REPLACE TEMP TABLE _f AS
        SELECT line, CASE WHEN lane = 2 THEN text END AS text, received, kind, lane,
            CASE WHEN lane = 0 THEN l[pk + 1] END AS k, CASE WHEN lane = 0 THEN l[pp + 1] END AS p,
            CASE WHEN lane = 0 THEN l[pn + 1] END AS n,
            CASE WHEN lane = 0 THEN l[pt + 1] END AS tt,
            CASE WHEN lane = 0 THEN l[pd + 1] END AS dd,
            CASE WHEN lane = 1 THEN list_slice(l, 1, -1, 2) END AS ks,
            CASE WHEN lane = 1 THEN list_slice(l, 2, -1, 2) END AS vs
        FROM (SELECT *, CASE WHEN l IS NULL OR NOT ({turns}) OR len(l) > {2 * MAX_PROPERTIES}
                THEN 2 WHEN len(l) = 2 * ({found}) AND (kind <> 's' OR pn IS NULL) THEN 0
                ELSE 1 END AS lane
        FROM (SELECT *, {positions} FROM (
            SELECT line, text, received, substr(text, strpos(text, '?') - 1, 1) AS kind,
                CASE WHEN regexp_full_match(text, '{flat}') THEN string_split(replace(
                    CASE WHEN strpos(text, '%') > 0 OR strpos(text, '+') > 0
                    THEN url_decode(replace(substr(text, strpos(text, '?') + 1), '+', ' '))
                    ELSE substr(text, strpos(text, '?') + 1) END, '=', '&'), '&') END AS l
            FROM _lines
            WHERE strpos(text, '_td=') = 0 AND strpos(text, '_prop%3A') = 0)));
    CREATE OR REPLACE TEMP VIEW _a AS
        SELECT line, text, received, kind,
            CASE WHEN strpos(text, '&&') > 0 OR strpos(text, '?&') > 0 OR ends_with(text, '&')
                OR ends_with(text, '?')
            THEN list_filter(string_split(substr(text, strpos(text, '?') + 1), '&'),
                lambda x: x <> '')
            ELSE string_split(substr(text, strpos(text, '?') + 1), '&') END AS ps,
            strpos(text, '%') > 0 OR strpos(text, '+') > 0 AS coded
        FROM _f
        WHERE lane = 2 AND regexp_full_match(text, '{_SIMPLE.replace("'", "''")}');
    CREATE OR REPLACE TEMP TABLE _b AS
        SELECT line, received, kind,
            CASE WHEN coded THEN list_transform(ps, lambda p: {_dec(key)})
                ELSE list_transform(ps, lambda p: {key}) END AS ks,
            CASE WHEN coded THEN list_transform(ps, lambda p: {_dec(value)})
                ELSE list_transform(ps, lambda p: {value}) END AS vs
        FROM _a WHERE len(ps) <= {MAX_PROPERTIES}
        UNION ALL SELECT line, received, kind, ks, vs FROM _f WHERE lane = 1;
"""
    # the calls whose keys and values are lists (a line of the fast lane has them at hand)
    listed = f"""SELECT line, received, kind,
            vs[list_position(ks, '_k')] AS k, vs[list_position(ks, '_p')] AS p,
            vs[list_position(ks, '_n')] AS n, vs[list_position(ks, '_t')] AS tt,
            vs[list_position(ks, '_d')] AS dd,
            CASE WHEN kind = 'a' THEN {_NO_PAIRS}
            ELSE list_filter(list_zip(ks, vs), lambda x: NOT list_contains(
                CASE WHEN kind = 'e' THEN ['_k', '_p', '_n', '_t', '_d']
                ELSE ['_k', '_p', '_t', '_d'] END, x[1])) END AS pv
        FROM _b WHERE list_unique(ks) = len(ks)"""
    if fmt in ("url", "access"):
        listed = f"""SELECT line, received, kind, k, p, n, tt, dd, {_NO_PAIRS} AS pv
        FROM _f WHERE lane = 0
        UNION ALL {listed}"""
    return f"""
    {lines};
    {head}
    CREATE OR REPLACE TEMP VIEW _c AS {listed};
    CREATE OR REPLACE TEMP VIEW _d AS
        SELECT *, CAST(CASE WHEN strpos(tt, '.') > 0 THEN left(tt, strpos(tt, '.') - 1)
                ELSE tt END AS BIGINT) AS num,
            CASE WHEN len(pv) = 0 THEN [] ELSE list_sort(list_transform(pv, lambda x: {{
                'k': lower(replace(replace(x[1], ',', ' '), ':', ' ')),
                'n': replace(replace(x[1], ',', ' '), ':', ' '), 'v': x[2]}})) END AS props
        FROM _c WHERE tt IS NULL OR regexp_full_match(tt, '{_NUMBER}');
    INSERT INTO calls SELECT $input, line,
        kind, nullif(k, ''), p,
        CASE WHEN reason IS NULL AND kind = 'e' THEN replace(replace(n, ',', ' '), ':', ' ')
            WHEN reason IS NULL AND kind = 's' THEN NULL ELSE n END,
        CASE WHEN reason IS NULL AND dd = '1' THEN num ELSE received END,
        CASE WHEN reason IS NULL THEN coalesce(num, received) ELSE received END,
        received, NULL,
        reason,
        CASE WHEN reason IS NULL THEN props ELSE [] END,
        CASE WHEN reason IS NULL AND kind = 'e' THEN lower(replace(replace(n, ',', ' '), ':', ' '))
            END,
        CASE WHEN reason IS NULL AND kind = 'e' THEN CASE WHEN len(props) = 0 THEN '{{}}' ELSE
            '{{' || array_to_string(list_transform(props, lambda x: '"' || {_esc("x.n")} || '":"'
            || {_esc("x.v")} || '"'), ',') || '}}' END END
    FROM (SELECT line, kind, k, p, n, dd, num, received, props, {reason} AS reason
        FROM (SELECT * REPLACE (coalesce(k, $tenant) AS k) FROM _d)
        WHERE len(props) <= 1 OR list_unique(list_transform(props, lambda x: x.k)) = len(props));
    UPDATE calls SET raw = coalesce(l.whole, l.text) FROM _lines l
        WHERE calls.input = $input AND calls.line > $lo AND calls.line <= $hi
            AND calls.reason IS NOT NULL AND calls.line = l.line;
    INSERT INTO _hard SELECT line, coalesce(whole, text) FROM _lines
        WHERE line NOT IN (SELECT line FROM calls WHERE input = $input AND line > $lo
            AND line <= $hi);
    DROP VIEW _d;
    DROP VIEW _c;
    DROP TABLE _b;
    DROP VIEW _a;
    DROP TABLE IF EXISTS _f;
    DROP {"VIEW" if fmt in ("url", "km", "jsonl") else "TABLE"} _lines
    """


def _connect(memory_limit: str | None, spill_dir: str | None) -> _duckdb.DuckDBPyConnection:
    try:
        import duckdb
        import numpy  # noqa: F401  (the bridge pass)
        import scipy  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise DuckDBUnavailableError(
            f"the duckdb engine needs duckdb, numpy and scipy ({exc}): "
            "pip install 'identity[duckdb]'"
        ) from None
    config: dict[str, Any] = {"preserve_insertion_order": False}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if spill_dir:
        config["temp_directory"] = spill_dir
    return duckdb.connect(":memory:", config=config)


def _plain_text(path: str) -> bool:
    r"""Tell whether DuckDB's line reader sees exactly the lines identity's reader does.

    That is: valid UTF-8, no carriage return (DuckDB splits lines on it) and no ``\x01``
    (the column delimiter). Lines longer than :data:`~identity.io.sources.MAX_LINE` are
    looked for by :func:`_read_lines`, in SQL.
    """
    opener: Callable[..., Any] = gzip.open if _is_gzip(path) else open
    tail = b""
    with opener(path, "rb") as stream:
        while True:
            chunk = stream.read(1 << 24)
            if not chunk:
                return len(tail) <= MAX_LINE
            if b"\r" in chunk or b"\x01" in chunk:
                return False
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            if data.isascii():  # the common case, checked without decoding
                tail = data[cut:]
            else:
                whole, tail = data[:cut], data[cut:]
                try:
                    whole.decode("utf-8")
                except UnicodeDecodeError:
                    return False
            if len(tail) > MAX_LINE:
                return False


def _read_lines(con: _duckdb.DuckDBPyConnection, path: str) -> bool:
    """Read `path`'s lines into ``_read``; False (and no table) if one is longer than MAX_LINE.

    identity's reader refuses such a line with a preview of its start, which the Python path
    does; DuckDB refuses a line past its ``max_line_size`` with an error.
    """
    import duckdb

    # the lines are numbered in the file's order; past that every row carries its number,
    # and the stages need not keep their rows' order (the audit's connection does not:
    # keeping it costs a parallel insert)
    ((kept,),) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()
    con.execute("SET preserve_insertion_order = true")
    try:
        for statement in _split(_read_sql(path, gz=_is_gzip(path))):
            con.execute(statement)
    except duckdb.InvalidInputException:
        con.execute("DROP TABLE IF EXISTS _read")
        return False
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if kept else 'false'}")
    (longest,) = con.execute("SELECT coalesce(max(strlen(text)), 0) FROM _read").fetchone() or (0,)
    if longest > MAX_LINE:
        con.execute("DROP TABLE _read")
        return False
    return True


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _row(index: int, line: int, call: Call) -> tuple[object, ...]:
    props = [{"k": k, "n": n, "v": v} for k, n, v in call.properties] if call.ok else []
    event = call.ok and call.kind == "e"
    nkey = (call.name or "").casefold() if event else None
    shown = None
    if event:
        pairs = [f"{_quote(n)}:{_quote(v)}" for _, n, v in call.properties]
        shown = "{" + ",".join(pairs) + "}"
    return (
        index, line, call.kind, call.tenant, call.identity, call.name, call.t, call.td,
        call.received, None if call.ok else call.raw, call.reason, props, nkey, shown,
    )  # fmt: skip


def _line_of(source: str) -> int:
    return int(source.rsplit(":", 1)[1])


def read_calls(
    con: _duckdb.DuckDBPyConnection,
    inputs: Sequence[Input],
    *,
    fmt: FormatOrAuto = "auto",
    default_tenant: str | None = None,
    received: int | None = None,
    progress: Callable[[str], None] | None = None,
    native: bool = True,
) -> list[tuple[str, int, str, int, int]]:
    """Read `inputs` into the table ``calls`` of `con`.

    Returns ``(real path or "-", calls, format, received, decided in SQL)`` per input.

    Query-string lines that the SQL rules decide are parsed in DuckDB (unless `native` is
    false); every other line by identity's own parser, as ``identity ingest`` reads it.
    """
    con.execute(_CALLS_DDL)
    read: list[tuple[str, int, str, int, int]] = []
    seen: set[str] = set()
    for index, item in enumerate(inputs):
        # named as `identity ingest` records inputs (the real path; stdin is not recorded),
        # and a file given twice is read once, as ingest skips an input already read
        key = "-" if item.path == "-" else os.path.realpath(item.path)
        if key != "-" and key in seen:
            continue
        seen.add(key)
        reader = Reader(item, fmt=fmt, tenant=default_tenant, received=received)
        found, when = reader.format, reader.received
        path = item.path
        before = _count(con, "calls")
        if (
            native
            and found in ("url", "access", "km", "jsonl")
            and path != "-"
            and _plain_text(path)
            and _read_lines(con, path)
        ):
            reader.close()
            con.execute("CREATE OR REPLACE TABLE _hard (line BIGINT, text VARCHAR)")
            params: dict[str, object] = {
                "input": index, "name": item.name, "received": when, "tenant": default_tenant,
            }  # fmt: skip
            blocked = sorted(DEFAULT_RULES.blocked)
            (last,) = con.execute("SELECT coalesce(max(line), 0) FROM _read").fetchone() or (0,)
            script = list(_split(_native_sql(blocked, fmt=found)))
            for lo in range(0, last, _CHUNK):
                params |= {"lo": lo, "hi": lo + _CHUNK}
                for statement in script:
                    used = {k: v for k, v in params.items() if f"${k}" in statement}
                    if "TEMP VIEW" in statement:  # a view cannot be prepared: inline its ints
                        for k, v in used.items():
                            if not isinstance(v, int):  # only lo, hi and received are used
                                raise TypeError(f"${k} of a view is not an integer: {v!r}")
                            statement = statement.replace(f"${k}", str(v))
                        used = {}
                    con.execute(statement, used)
                if progress is not None and last > _CHUNK:
                    progress(f"{item.name}: {min(lo + _CHUNK, last):,} of {last:,} lines parsed")
            con.execute("DROP TABLE _read")
            native_n = _count(con, "calls") - before
            parse = parser(found, Context(default_tenant, when))
            hard = con.cursor().execute("SELECT line, text FROM _hard ORDER BY line")
            while rows := hard.fetchmany(_BATCH):
                batch = []
                for line, text in rows:
                    data = line_text(text.encode("utf-8"), line, None)
                    if data is None:
                        continue
                    got = parse(data, f"{item.name}:{line}")
                    if got is None:  # an access-log request that is not a tracking call
                        continue
                    for call in (got,) if isinstance(got, Call) else got:
                        batch.append(_row(index, line, call))
                if batch:
                    con.executemany("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            con.execute("DROP TABLE _hard")
        else:
            native_n = 0
            with reader:  # the reader that sniffed it (stdin cannot be read twice)
                batch = []
                for call in reader:
                    batch.append(_row(index, _line_of(call.source), call))
                    if len(batch) >= _BATCH:
                        con.executemany(
                            "INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch
                        )
                        batch = []
                if batch:
                    con.executemany("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        calls = _count(con, "calls") - before
        if key == "-" and reader.content is not None:
            key = f"<stdin {reader.content}>"  # as ingest remembers a whole small stdin
        read.append((key, calls, found, when, native_n))
        if progress is not None:
            progress(f"{item.name}: {calls:,} calls read ({found}, {native_n:,} in SQL)")
    return read


def _split(script: str) -> Iterator[str]:
    for part in script.split(";\n"):
        if part.strip():
            yield part


def _count(con: _duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return 0 if row is None else int(row[0])


# -- the store's tables ----------------------------------------------------------------------

_STORE_SQL = """
CREATE OR REPLACE TEMP VIEW ok AS SELECT * FROM calls WHERE reason IS NULL;
CREATE OR REPLACE TABLE identities AS
SELECT row_number() OVER () AS id, tenant, identity, first_seen, customer_since FROM (
    SELECT tenant, identity, min(t) AS first_seen, min(c) AS customer_since FROM (
        SELECT tenant, identity, t, CASE WHEN kind <> 'a' THEN t END AS c FROM ok
        UNION ALL SELECT tenant, name, t, NULL FROM ok WHERE kind = 'a'
    ) GROUP BY tenant, identity
);
CREATE OR REPLACE TABLE links AS
SELECT least(i.id, j.id) AS a, greatest(i.id, j.id) AS b, min(o.t) AS t, count(*) AS sent
FROM ok o
JOIN identities i ON i.tenant = o.tenant AND i.identity = o.identity
JOIN identities j ON j.tenant = o.tenant AND j.identity = o.name
WHERE o.kind = 'a' AND o.identity <> o.name GROUP BY 1, 2;
CREATE OR REPLACE TEMP TABLE okid AS
SELECT o.kind, o.t, o.td, o.nkey, o.name, o.props, o.shown, i.id AS iid
FROM ok o JOIN identities i ON i.tenant = o.tenant AND i.identity = o.identity
WHERE o.kind <> 'a';
CREATE OR REPLACE TABLE events AS
SELECT iid AS identity, nkey AS name_key, td, m.n AS name, m.t AS t, m.p AS properties,
    sent
FROM (SELECT iid, nkey, td, min({'t': t, 'n': name, 'p': shown}) AS m, count(*) AS sent
      FROM okid WHERE kind = 'e'
      GROUP BY iid, nkey, td, list_transform(props, lambda x: [x.k, x.v]));
CREATE OR REPLACE TABLE properties AS
SELECT iid AS identity, p.k AS name_key, p.v AS value, td, min(t) AS t,
    min({'t': t, 'n': p.n}).n AS name, count(*) AS sent
FROM (SELECT iid, td, t, unnest(props) AS p FROM okid)
GROUP BY iid, p.k, p.v, td;
CREATE OR REPLACE TABLE quarantine AS
SELECT min(tenant) AS tenant, reason, raw, received, count(*) AS sent
FROM calls WHERE reason IS NOT NULL GROUP BY raw, reason, received;
DROP VIEW ok;
DROP TABLE okid
"""


def _store(con: _duckdb.DuckDBPyConnection) -> None:
    """Fold the calls into the store's tables, as identity's write path does (SPEC §8)."""
    for statement in _split(_STORE_SQL):
        con.execute(statement)


#: What the links cost in NumPy and SciPy when components are found in memory (two int64
#: columns, the sparse matrix and its transpose, the labels), rounded up.
_BYTES_A_LINK = 64


def _memory_budget(con: _duckdb.DuckDBPyConnection) -> int:
    """Return DuckDB's memory limit in bytes (its default is 80% of the machine's memory)."""
    ((limit,),) = con.execute(
        "SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'"
    ).fetchall()
    number, unit = str(limit).split()
    scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    scale |= {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    return int(float(number) * scale.get(unit, 1))


def _scipy_components(con: _duckdb.DuckDBPyConnection) -> None:
    """Make ``_roots(node, root)`` from ``_edges`` with SciPy (the links fit in memory)."""
    import numpy as np
    from scipy.sparse import coo_matrix  # type: ignore[import-untyped]
    from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

    found = con.execute("SELECT a, b FROM _edges").fetchnumpy()
    a, b = (np.asarray(found[k], dtype=np.int64) for k in ("a", "b"))
    ((top,),) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM identities").fetchall()
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(top, top)).tocsr()
    _, labels = connected_components(graph, directed=False)
    nodes = np.arange(top, dtype=np.int64)
    root = np.full(labels.max() + 1, top, dtype=np.int64)  # top >= 1: ids start at 1
    np.minimum.at(root, labels, nodes)  # a component's root is its smallest node
    roots = root[labels]
    moved = roots != nodes
    con.register("_np_roots", {"node": nodes[moved], "root": roots[moved]})
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _roots AS SELECT node, root FROM _np_roots")
    finally:
        con.unregister("_np_roots")


def _partition(
    con: _duckdb.DuckDBPyConnection, bound: int, progress: Callable[[str], None] | None
) -> int | None:
    """Make ``member(identity, person)`` and ``person(id, tenant, person, size)`` as of `bound`.

    Components are found by SciPy when the links fit in a quarter of DuckDB's memory limit
    (about 64 bytes a link), else by randomized contraction in SQL, out of core
    (:func:`~identity.audit.engines.components.duckdb_components`); returns its rounds
    (None for SciPy).
    """
    con.execute(f"CREATE OR REPLACE TEMP VIEW _edges AS SELECT a, b FROM links WHERE t <= {bound}")
    ((links,),) = con.execute("SELECT count(*) FROM _edges").fetchall()
    if 0 < links * _BYTES_A_LINK <= _memory_budget(con) // 4:
        _scipy_components(con)
        rounds = None
    else:
        rounds = duckdb_components(con, "_edges", "_roots", progress=progress)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE member AS SELECT i.id AS identity, "
        f"coalesce(r.root, i.id) AS root FROM identities i LEFT JOIN _roots r ON r.node = i.id "
        f"WHERE i.first_seen <= {bound}"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE person AS SELECT m.root AS id, min(i.tenant) AS tenant, "
        "min(i.identity) AS person, count(*) AS size FROM member m "
        "JOIN identities i ON i.id = m.identity GROUP BY m.root"
    )
    con.execute("DROP TABLE _roots")
    return rounds


class _Q:
    """The report's SQL: a tenant filter and an ``as_of`` bound, as in the memory engine."""

    def __init__(
        self, con: _duckdb.DuckDBPyConnection, tenant: str | None, bound: int, names: list[str]
    ) -> None:
        self.con = con
        self.names = names  # the inputs' names, by index (calls.input)
        self.tenant = tenant
        self.bound = bound

    def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        used = {"tenant": self.tenant, "bound": self.bound, **params}
        used = {k: v for k, v in used.items() if f"${k}" in sql}
        return self.con.execute(sql, used).fetchall()


_IN = "($tenant IS NULL OR i.tenant = $tenant)"


def _counts(q: _Q) -> tuple[dict[str, int], int, dict[str, int], tuple[tuple[int, int], ...]]:
    identities: dict[str, int] = {}
    never = 0
    for tenant, n, nev in q.rows(
        "SELECT i.tenant, count(*), count(*) FILTER (WHERE i.customer_since IS NULL OR "
        f"i.customer_since > $bound) FROM identities i WHERE {_IN} AND i.first_seen <= $bound "
        "GROUP BY i.tenant"
    ):
        identities[tenant] = int(n)
        never += int(nev)
    people: dict[str, int] = defaultdict(int)
    sizes: dict[int, int] = defaultdict(int)
    for tenant, size, n in q.rows(
        f"SELECT i.tenant, size, count(*) FROM person i WHERE {_IN} GROUP BY 1, 2"
    ):
        people[tenant] += int(n)
        sizes[int(size)] += int(n)
    return identities, never, people, tuple(sorted(sizes.items()))


def _largest(q: _Q) -> tuple[Largest, ...]:
    rows = q.rows(
        f"""WITH top AS (SELECT id, tenant, person, size FROM person i WHERE {_IN}
            ORDER BY size DESC, tenant, person LIMIT {TOP})
        SELECT top.tenant, top.person, top.size,
            (SELECT count(*) FROM member m JOIN identities i ON i.id = m.identity
             WHERE m.root = top.id AND i.customer_since <= $bound),
            (SELECT count(*) FROM events e JOIN member m ON m.identity = e.identity
             WHERE m.root = top.id AND e.t <= $bound)
        FROM top ORDER BY top.size DESC, top.tenant, top.person"""
    )
    return tuple(Largest(t, p, int(s), int(c), int(e)) for t, p, s, c, e in rows)


def _risks(q: _Q) -> tuple[int, int, list[tuple[int, Split]]]:
    """Count risky bridges and hubs; return the riskiest splits (person row, split).

    The links come out of DuckDB as NumPy arrays and every person's bridges are found at
    once (:func:`~identity.audit.bulk_bridges.bulk_bridges`); the candidates at the top,
    every tie at the cut kept, are ordered by the report's whole order (tenant, person and
    the link's names) in SQL, so that ties are decided by names as the list is.
    """
    import numpy as np

    from ..bulk_bridges import bulk_bridges

    found = q.con.execute(
        "SELECT m.root, l.a, l.b FROM links l JOIN identities i ON i.id = l.a "
        f"JOIN member m ON m.identity = l.a WHERE {_IN} AND l.t <= $bound",
        {"tenant": q.tenant, "bound": q.bound},
    ).fetchnumpy()
    person, a, b = (np.asarray(found[k], dtype=np.int64) for k in ("root", "a", "b"))
    if not len(a):
        return 0, 0, []
    top = int(max(a.max(), b.max())) + 1
    customer = np.zeros(top, dtype=bool)
    ids = q.con.execute(
        f"SELECT id FROM identities WHERE customer_since <= $bound AND id < {top}",
        {"bound": q.bound},
    ).fetchnumpy()["id"]
    customer[np.asarray(ids, dtype=np.int64)] = True
    degree = np.bincount(np.concatenate([a, b]))
    hubs = int((degree >= HUB_LINKS).sum())
    split = bulk_bridges(a, b, customer, person)
    least = np.minimum(split.size_a, split.size_b)
    fewest = np.minimum(split.customers_a, split.customers_b)
    risky = (fewest > 0) | (least >= MIN_PART)
    bridges = int(risky.sum())
    if not bridges:
        return 0, hubs, []
    keep = np.flatnonzero(risky)
    # (least, fewest) as one number, ordered as the pairs are; the TOP-th largest is the cut
    key = least[keep].astype(np.int64) * (int(fewest.max()) + 1) + fewest[keep]
    cut = len(key) - min(TOP, len(key))
    chosen = keep[key >= np.partition(key, cut)[cut]]  # the TOP most even, and their ties
    links = split.links[chosen]
    q.con.register(
        "_candidates",
        {
            "k": np.arange(len(chosen), dtype=np.int64),
            "person": person[links],
            "a": a[links],
            "b": b[links],
            "least": least[chosen],
            "fewest": fewest[chosen],
        },
    )
    try:
        ranked = q.rows(
            "SELECT c.k FROM _candidates c JOIN person p ON p.id = c.person "
            "JOIN identities x ON x.id = c.a JOIN identities y ON y.id = c.b "
            "ORDER BY c.least DESC, c.fewest DESC, p.tenant, p.person, "
            f"least(x.identity, y.identity), greatest(x.identity, y.identity) LIMIT {TOP}"
        )
    finally:
        q.con.unregister("_candidates")
    best = []
    for (k,) in ranked:
        i = chosen[k]
        best.append(
            (
                int(person[split.links[i]]),
                Split(
                    int(a[split.links[i]]),
                    int(b[split.links[i]]),
                    (int(split.size_a[i]), int(split.size_b[i])),
                    (int(split.customers_a[i]), int(split.customers_b[i])),
                ),
            )
        )
    return bridges, hubs, best


def _retries(q: _Q) -> tuple[int, tuple[Retry, ...]]:
    rows = q.rows(
        f"""SELECT tenant, identity, name, previous, td, count(*) OVER () FROM (
            SELECT i.tenant, i.identity, e.name, e.td, lag(e.td) OVER (PARTITION BY
            e.identity, e.name_key, e.properties ORDER BY e.td) AS previous FROM events e
            JOIN identities i ON i.id = e.identity WHERE {_IN} AND e.t <= $bound)
        WHERE td - previous <= {RETRY_WINDOW} ORDER BY tenant, identity, td LIMIT {EXAMPLES}"""
    )
    count = rows[0][5] if rows else 0  # every retry is counted before the examples are cut
    return int(count), tuple(Retry(t, i, n, int(p), int(td)) for t, i, n, p, td, _ in rows)


def _junk(q: _Q) -> tuple[int, tuple[Junk, ...]]:
    is_blocked = DEFAULT_RULES.is_blocked
    # identities hold no control characters: an ASCII one is printable
    ascii_blocked = _is_blocked_ascii("i.identity", sorted(DEFAULT_RULES.blocked))
    candidates = q.rows(
        f"SELECT i.id, i.tenant, i.identity, p.person FROM (SELECT * FROM identities i "
        f"WHERE {_IN} AND i.first_seen <= $bound AND (strlen(i.identity) <> length(i.identity) "
        f"OR {ascii_blocked})) i "
        f"JOIN member m ON m.identity = i.id JOIN person p ON p.id = m.root"
    )
    junk = [row for row in candidates if is_blocked(row[2])]
    if not junk:
        return 0, ()
    ids = ",".join(str(r[0]) for r in junk)
    events = dict(
        q.rows(
            f"SELECT identity, count(*) FROM events WHERE identity IN ({ids}) AND t <= $bound "
            "GROUP BY identity"
        )
    )
    examples = sorted(
        (Junk(t, name, person, int(events.get(row, 0))) for row, t, name, person in junk),
        key=lambda j: (-j.events, j.tenant, j.identity),
    )
    return len(junk), tuple(examples[:EXAMPLES])


def _scan(
    q: _Q,
) -> tuple[
    tuple[KindCount, ...], dict[str, int], dict[str, int], dict[str, int], dict[int, dict[str, int]]
]:
    received: dict[str, int] = defaultdict(int)
    stored: dict[str, int] = defaultdict(int)
    days: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    events: dict[str, int] = defaultdict(int)
    quarantined: dict[str, int] = defaultdict(int)
    tables = [("event", "events", "x.identity"), ("property", "properties", "x.identity"),
              ("alias", "links", "x.a")]  # fmt: skip
    for kind, table, identity in tables:
        if kind == "event" or q.tenant is not None:  # events are counted by tenant too
            sql = (
                f"SELECT i.tenant, x.t // {_DAY}, count(*), sum(x.sent) FROM {table} x JOIN "
                f"identities i ON i.id = {identity} WHERE {_IN} AND x.t <= $bound GROUP BY 1, 2"
            )
        else:
            sql = (
                f"SELECT NULL, x.t // {_DAY}, count(*), sum(x.sent) FROM {table} x "
                "WHERE x.t <= $bound GROUP BY 2"
            )
        for tenant, day, n, sent in q.rows(sql):
            stored[kind] += int(n)
            received[kind] += int(sent)
            days[int(day)][kind] += int(sent)
            if kind == "event":
                events[tenant] += int(n)
    reasons: dict[str, int] = defaultdict(int)
    for tenant, reason, day, calls in q.rows(
        f"SELECT i.tenant, i.reason, i.received // {_DAY}, sum(i.sent) FROM quarantine i "
        f"WHERE {_IN} AND i.received <= $bound GROUP BY 1, 2, 3"
    ):
        reasons[reason] += int(calls)
        days[int(day)]["quarantined"] += int(calls)
        if tenant is not None:
            quarantined[tenant] += int(calls)
    kinds = tuple(KindCount(k, received[k], stored[k]) for k in KINDS)
    return kinds, reasons, events, quarantined, days


def _quarantine(q: _Q, reasons: dict[str, int]) -> tuple[Reason, ...]:
    found = []
    for reason, calls in reasons.items():
        examples = q.rows(
            "SELECT DISTINCT i.raw FROM quarantine i WHERE ($tenant IS NULL OR i.tenant = "
            "$tenant) AND i.received <= $bound AND i.reason = $reason ORDER BY i.raw "
            f"LIMIT {EXAMPLES}",
            reason=reason,
        )
        found.append(Reason(reason, calls, tuple(r[0] for r in examples)))
    found.sort(key=lambda r: (-r.calls, r.reason))
    return tuple(found)


def _people_engine(q: _Q, persons: Sequence[int]) -> Engine:
    """Return an in-memory engine holding the accepted calls of `persons`' members only."""
    from ...engine import Engine

    engine = Engine()
    listed = ",".join(str(p) for p in persons)
    cursor = q.con.execute(
        f"""WITH names AS (SELECT i.tenant, i.identity FROM member m
            JOIN identities i ON i.id = m.identity WHERE m.root IN ({listed}))
        SELECT c.kind, c.tenant, c.identity, c.name, c.props, c.t, c.td, c.received, c.raw,
            c.input, c.line FROM calls c WHERE c.reason IS NULL AND (c.tenant, c.identity) IN
            (SELECT (tenant, identity) FROM names)
        ORDER BY c.input, c.line"""
    )
    while rows := cursor.fetchmany(_BATCH):
        batch = [
            Call(
                kind,
                tenant,
                identity,
                name,
                tuple((p["k"], p["n"], p["v"]) for p in props),
                t,
                td,
                received,
                raw or "",
                f"{q.names[index]}:{line}",  # the source, as the readers name it
            )
            for kind, tenant, identity, name, props, t, td, received, raw, index, line in rows
        ]
        engine.apply_batch(batch)
    return engine


def _merges(q: _Q, best: list[tuple[int, Split]], as_of: int | None) -> tuple[Merge, ...]:
    from .memory import merge_of

    if not best:
        return ()
    rows = {x for _, s in best for x in (s.a, s.b)}
    names = dict(
        q.rows(f"SELECT id, identity FROM identities WHERE id IN ({','.join(map(str, rows))})")
    )
    persons = {
        row: (tenant, person, size)
        for row, tenant, person, size in q.rows(
            "SELECT id, tenant, person, size FROM person "
            f"WHERE id IN ({','.join(str(p) for p, _ in best)})"
        )
    }
    found = []
    for row, split in best:
        tenant, person, size = persons[row]
        if names[split.a] > names[split.b]:
            split = split.flipped()
        found.append((tenant, person, int(size), names[split.a], names[split.b], split, row))
    # (tenant, person, a) can tie (one identity, two bridges): b breaks the tie
    found.sort(key=lambda f: (-min(f[5].sizes), -min(f[5].customers), f[0], f[1], f[3], f[4]))
    top = found[:TOP]
    engine = _people_engine(q, sorted({f[6] for f in top}))
    merges = tuple(
        merge_of(engine, tenant, person, size, split, (a, b), as_of)
        for tenant, person, size, a, b, split, _ in top
    )
    engine.close()
    return merges


_QUERIES = Queries(
    counts=_counts, risks=_risks, retries=_retries, junk=_junk, scan=_scan,
    largest=_largest, merges=_merges, quarantine=_quarantine,
)  # fmt: skip


def audit(
    paths: Sequence[str],
    *,
    fmt: FormatOrAuto = "auto",
    tenant: str | None = None,
    as_of: int | None = None,
    default_tenant: str | None = None,
    received: int | None = None,
    memory_limit: str | None = None,
    spill_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Audit:
    """Audit files on DuckDB: the same :class:`~identity.audit.model.Audit` as the memory engine.

    Parameters
    ----------
    paths : sequence of str
        Files (plain or gzip) and Data Export folders, as ``identity ingest`` takes them.
    fmt : str
        ``"auto"`` (sniffed per input) or one of the line formats.
    tenant : str, optional
        Report on this tenant only.
    as_of : int, optional
        Only calls with ``t <= as_of`` (quarantined calls: received by then).
    default_tenant : str, optional
        The tenant of calls that carry no ``_k`` (``identity ingest --tenant``).
    received : int, optional
        Receive time of calls that carry none (default: each file's modification time).
    memory_limit : str, optional
        DuckDB's memory limit (``"256MB"``, ``"2GB"``); beyond it DuckDB spills to disk.
    spill_dir : str, optional
        Where DuckDB spills (default: a temporary directory, removed afterwards).
    progress : callable, optional
        Called with a line at each step.

    Returns
    -------
    Audit

    Raises
    ------
    InputError
        A path that does not exist or cannot be read (as ``identity ingest``).
    DuckDBUnavailableError
        duckdb is not installed.
    """
    inputs = expand(paths)
    with tempfile.TemporaryDirectory(prefix="identity-duckdb-") as tmp:
        con = _connect(memory_limit, spill_dir or tmp)
        try:
            read = read_calls(
                con, inputs, fmt=fmt, default_tenant=default_tenant, received=received,
                progress=progress,
            )  # fmt: skip
            _store(con)
            if progress is not None:
                progress("calls folded (duplicates, links, identities)")
            bound = (1 << 63) - 1 if as_of is None else as_of
            rounds = _partition(con, bound, progress)
            if progress is not None:
                how = "memory (SciPy)" if rounds is None else f"{rounds} rounds"
                progress(f"people: components in {how}")
            q = _Q(con, tenant, bound, [item.name for item in inputs])
            say = progress or (lambda _: None)
            sources = [(name, n) for name, n, *_ in read]
            return report(_QUERIES, q, tenant=tenant, as_of=as_of, read=sources, say=say)
        finally:
            con.close()
