r"""Readers: turn input files into tracking calls, streaming, with provenance.

A :class:`Reader` yields :class:`~identity.calls.Call` values, one or more per line, each
with its receive time and where it came from (``access.log:1234``). Memory stays bounded
whatever the input's size: lines are read one at a time, and a line longer than
:data:`MAX_LINE` bytes is refused without being held whole. Bad data never raises: an
undecodable line becomes a ``bad_encoding`` call and a line that is not of the format a
``malformed`` one, both quarantined with the raw line (SPEC §4).

Formats (:data:`FORMATS`):

``url``
    one URL, path or query string per line: ``/e?_k=K&_p=bob&_n=Signed+Up``.
``km``
    Kissmetrics JSON lines: a Data Export revision or a JSON import file.
``jsonl``
    JSON objects of call parameters with a ``"_path"`` key (``"e"``, ``"s"`` or ``"a"``).
``access``
    web-server access logs in Common or Combined Log Format (Apache, nginx, the beacon):
    GET or POST requests to ``/e``, ``/s`` or ``/a``; the log's time is the receive time.
``csv``
    the Kissmetrics CSV import layout: Identity, Timestamp, Event, ``Prop:NAME``, Alias.

A folder is a Kissmetrics Data Export (``index.csv`` and ``revisions/N.json``, read in
index order, one input per revision); ``.gz`` files (and gzip on stdin) are read
transparently; ``-`` is stdin. With ``fmt="auto"`` the format is sniffed from the first
lines.

Examples
--------
>>> import io
>>> log = io.BytesIO(
...     b'10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /km/e?_k=K&_p=bob&_n=Paid HTTP/1.1"'
...     b' 200 43 "-" "curl/8"\r\n'
...     b'10.0.0.1 - - [10/Oct/2000:13:55:37 -0700] "GET /logo.png HTTP/1.1" 200 512\n'
... )
>>> reader = Reader("access.log", stream=log)
>>> [(c.kind, c.identity, c.name, c.received, c.source) for c in reader]
[('e', 'bob', 'Paid', 971211336, 'access.log:1')]
>>> reader.format, reader.sniffed, reader.skipped
('access', True, 1)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO

from ..calls import DEFAULT_RULES, Call, Rules, valid_time
from ..errors import ConfigurationError, InputError
from .formats import (
    BOM,
    DEDUPE_TIME_KEY,
    FORMATS,
    NOT_LOGGED,
    Context,
    Format,
    FormatOrAuto,
    Layout,
    Parse,
    csv_header,
    parser,
    refuse,
    shown,
    sniff,
)

__all__ = [
    "DEDUPE_TIME_KEY",
    "FORMATS",
    "MAX_LINE",
    "NOT_LOGGED",
    "Input",
    "Reader",
    "expand",
    "fingerprint",
    "grew_from",
    "line_text",
    "parse_line",
    "sniff",
]

#: Longest line read, in bytes; a longer one is quarantined as ``malformed`` (a preview).
MAX_LINE = 1 << 20

_PREVIEW = 4096
_HEAD_LINES = 5
_HEAD_BYTES = 64 * 1024
_FINGERPRINT_BYTES = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_INTEGER = re.compile(r"-?\d+").fullmatch


@dataclass(frozen=True, slots=True)
class Input:
    """One input to read: a file (plain or gzip), stdin (``"-"``), or one export revision.

    Attributes
    ----------
    name : str
        How the input is shown, and the prefix of every call's source (``name:line``).
    path : str
        The file to open, or ``"-"`` for stdin.
    fmt : str
        ``"auto"``, or the format this input is known to have (a revision is ``km``).
    received : int or None
        Receive time of its calls that carry none (an export revision's latest
        timestamp); None for the file's modification time.
    """

    name: str
    path: str
    fmt: FormatOrAuto = "auto"
    received: int | None = None


# -- finding inputs ------------------------------------------------------------------


def expand(paths: Iterable[str]) -> list[Input]:
    """Return the inputs named by `paths`: files, ``-``, and Data Export folders.

    A folder must be a Kissmetrics Data Export: its ``index.csv`` lists the revision files
    in the order to read them (without one, ``revisions/N.json`` are read by N).

    Raises
    ------
    InputError
        A path that does not exist, or a folder that is not a Data Export (or lists a
        revision that is missing).

    Examples
    --------
    >>> expand(["-"])
    [Input(name='-', path='-', fmt='auto', received=None)]
    >>> expand(["no/such/file"])
    Traceback (most recent call last):
    ...
    identity.errors.InputError: no/such/file: no such file
    """
    found: list[Input] = []
    for path in paths:
        if path == "-":
            found.append(Input("-", "-"))
        elif os.path.isdir(path):
            found.extend(_revisions(path))
        elif os.path.isfile(path):
            found.append(Input(path, path))
        else:
            raise InputError(path, "no such file")
    return found


def _revisions(folder: str) -> list[Input]:
    index = os.path.join(folder, "index.csv")
    if not os.path.isfile(index):
        directory = os.path.join(folder, "revisions")
        if not os.path.isdir(directory):
            raise InputError(folder, "not a Kissmetrics Data Export (no index.csv, no revisions/)")
        names = [n for n in os.listdir(directory) if re.fullmatch(r"\d+\.json(\.gz)?", n)]
        names.sort(key=lambda n: int(n.split(".", 1)[0]))
        return [Input(os.path.join(directory, n), os.path.join(directory, n), "km") for n in names]
    found = []
    try:
        with open(index, encoding="utf-8-sig", newline="") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(index, f"cannot read: {exc}") from None
    for row in rows:
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].casefold() == "filename":
            continue
        path = _revision_path(folder, cells[0])
        if path is None:
            raise InputError(index, f"lists {cells[0]!r}, which is not in the folder")
        text = cells[2] if len(cells) > 2 else ""
        latest = int(text) if len(text) <= 20 and _INTEGER(text) else None
        if latest is not None and not valid_time(latest):
            latest = None  # a time no call can have: the revision's mtime instead
        found.append(Input(path, path, "km", latest))
    return found


def _revision_path(folder: str, name: str) -> str | None:
    candidates = [name] if os.path.isabs(name) else []
    candidates += [os.path.join(folder, name), os.path.join(folder, "revisions", name)]
    return next((c for c in candidates if os.path.isfile(c)), None)


# -- fingerprints (resumable ingest) ---------------------------------------------------


def fingerprint(path: str) -> str:
    """Return a content fingerprint of a file: its size and a hash of its first 64 KiB.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> fingerprint(f.name)[:2]
    '3:'
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        digest = hashlib.blake2b(stream.read(_FINGERPRINT_BYTES), digest_size=16).hexdigest()
    return f"{size}:{digest}"


def grew_from(path: str, old: str) -> bool:
    """Tell whether the file at `path` is the file fingerprinted `old` with lines appended.

    True when the file is larger now and starts with the same bytes (as far as the old
    fingerprint hashed them): an access log that grew since it was last read.
    """
    size_text, _, digest = old.partition(":")
    if not size_text.isdigit():
        return False
    old_size = int(size_text)
    with open(path, "rb") as stream:
        if os.fstat(stream.fileno()).st_size <= old_size:
            return False
        head = stream.read(min(old_size, _FINGERPRINT_BYTES))
    return hashlib.blake2b(head, digest_size=16).hexdigest() == digest


# -- the reader ------------------------------------------------------------------------


def _read_lines(stream: IO[bytes]) -> Iterator[tuple[bytes, int, bool]]:
    """Yield ``(line, bytes consumed, ended with a line break)``.

    A line longer than :data:`MAX_LINE` is consumed in pieces and yielded as a preview.
    """
    readline = stream.readline
    while True:
        data = readline(MAX_LINE)
        if not data:
            return
        if data[-1:] == b"\n":
            yield data, len(data), True
        elif len(data) < MAX_LINE:
            yield data, len(data), False
        else:
            size, more = len(data), data
            while more and more[-1:] != b"\n":
                more = readline(MAX_LINE)
                size += len(more)
            yield data[:_PREVIEW], size, more[-1:] == b"\n"


class Reader:
    """The calls of one input, streamed in bounded memory.

    Parameters
    ----------
    source : Input or str
        What to read (a path, ``"-"``, or an :class:`Input`).
    fmt : str
        ``"auto"`` (sniff from the first lines) or one of :data:`FORMATS`.
    tenant : str, optional
        API key of calls that carry no ``_k`` (export and CSV lines carry none).
    received : int, optional
        Receive time of calls that carry none (default: the input's own, else the file's
        modification time, else now). Access-log lines carry their own.
    rules : Rules
        Validation rules (use the engine's).
    start : int
        Where to resume: a byte offset for a plain file, a number of lines for gzip and
        streams (a :attr:`position` read earlier).
    stream : binary file, optional
        Read this instead of opening ``source`` (for stdin and tests).

    Attributes
    ----------
    format : str
        The format read; `sniffed` tells whether it was guessed.
    position : int
        Where every call yielded so far ends: resuming at it loses and repeats nothing but
        the calls of a line whose calls were not all yielded.
    line : int
        Lines read so far (the number of the last one).
    skipped : int
        Lines that are not tracking calls (access logs: other paths and methods).
    compressed : bool
        Whether the input is gzip (positions then count lines, not bytes).
    size : int or None
        The file's size in bytes (None for a stream).

    Raises
    ------
    InputError
        The input cannot be opened or read (not for bad lines: those are quarantined), or it
        is a CSV file without `tenant` or whose header is not a Kissmetrics CSV header.
    ConfigurationError
        An unknown `fmt`.

    Notes
    -----
    Memory is O(1) in the number of lines: one line (at most :data:`MAX_LINE` bytes) is
    held at a time, plus the first few lines for sniffing. Resuming a plain file counts the
    line breaks before `start` (a sequential read at disk speed); gzip re-reads and skips.
    """

    def __init__(
        self,
        source: Input | str,
        *,
        fmt: FormatOrAuto = "auto",
        tenant: str | None = None,
        received: int | None = None,
        rules: Rules = DEFAULT_RULES,
        start: int = 0,
        stream: IO[bytes] | None = None,
    ) -> None:
        if isinstance(source, str):
            source = Input(source, source)
        if fmt != "auto" and fmt not in FORMATS:
            raise ConfigurationError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        if source.fmt != "auto" and fmt not in ("auto", source.fmt):
            raise InputError(source.name, f"holds {source.fmt} lines, cannot be read as {fmt}")
        self.name = source.name
        self.skipped = 0
        self.line = 0
        self.position = start
        self._file: IO[bytes] | None = None
        self._read = 0
        self._raw, self.size = self._open(source, stream)
        try:
            self._prepare(source, fmt, tenant, received, rules, start)
        except BaseException:
            self.close()
            raise

    def _open(self, source: Input, stream: IO[bytes] | None) -> tuple[IO[bytes], int | None]:
        if stream is None and source.path == "-":
            stream = sys.stdin.buffer
        if stream is not None:
            if not hasattr(stream, "peek"):
                stream = io.BufferedReader(stream)  # type: ignore[type-var]
            return stream, None
        try:
            self._file = open(source.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise InputError(source.name, exc.strerror or str(exc)) from None
        return self._file, os.fstat(self._file.fileno()).st_size

    def _prepare(
        self,
        source: Input,
        fmt: FormatOrAuto,
        tenant: str | None,
        received: int | None,
        rules: Rules,
        start: int,
    ) -> None:
        raw = self._raw
        self.compressed = raw.peek(2)[:2] == _GZIP_MAGIC  # type: ignore[attr-defined]
        self._stream: IO[bytes] = (
            gzip.GzipFile(fileobj=raw) if self.compressed else raw  # type: ignore[assignment]
        )
        self._lines = self._guarded(_read_lines(self._stream))
        head: list[tuple[bytes, int, bool]] = []
        size = 0
        stream = self._file is None
        ended = True
        for item in self._lines:
            head.append(item)
            size += item[1]
            if size >= _HEAD_BYTES or (
                not stream and sum(1 for h in head if h[0].strip()) >= _HEAD_LINES
            ):
                ended = False
                break
        #: A stream read whole within its first 64 KiB: its :func:`fingerprint`, as a file
        #: of the same bytes has it (None otherwise, and for files: fingerprint them).
        self.content: str | None = None
        if stream and ended and not self.compressed:
            data = b"".join(h[0] for h in head)
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            self.content = f"{len(data)}:{digest}"
        if source.fmt != "auto":
            fmt = source.fmt
        self.sniffed = fmt == "auto"
        self.format: Format = sniff([h[0] for h in head]) if fmt == "auto" else fmt
        if received is None:
            received = source.received
        if received is None:
            received = int(os.path.getmtime(source.path) if self._file else time.time())
        ctx = self._ctx = Context(tenant, received, rules)
        self._header = 0
        layout = None
        if self.format == "csv":
            if tenant is None:
                problem = "a Kissmetrics CSV file carries no API key: give the tenant (--tenant)"
                raise InputError(self.name, problem)
            layout = self._layout(head)
        self._layout_found = layout
        self._parse = parser(self.format, ctx, layout)
        self._head = head
        if start:
            self._seek(start)

    def _layout(self, head: list[tuple[bytes, int, bool]]) -> Layout | None:
        for number, (data, _, _) in enumerate(head, 1):
            data = data.removeprefix(BOM) if number == 1 else data
            if not data.strip():
                continue
            try:
                layout = csv_header(data.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError:
                layout = None
            if not isinstance(layout, Layout):
                problem = layout or "no Identity column: not a Kissmetrics CSV import file"
                raise InputError(self.name, f"line {number}: {problem}")
            self._header = number
            return layout
        return None

    def _seek(self, start: int) -> None:
        """Resume after `start` bytes (plain file) or lines (gzip, stream)."""
        if self._file is not None and not self.compressed:
            self._file.seek(0)
            left, lines = start, 0
            while left > 0:
                chunk = self._file.read(min(left, 1 << 20))
                if not chunk:
                    break
                lines += chunk.count(b"\n")
                left -= len(chunk)
            self.line = lines
            self._head = []
            self._lines = self._guarded(_read_lines(self._file))
            return
        skip = start
        while skip > 0 and self._head:
            self._head.pop(0)
            skip -= 1
            self.line += 1
        for _ in range(skip) if skip > 0 else ():
            if next(self._lines, None) is None:
                break
            self.line += 1

    def _guarded(
        self, lines: Iterator[tuple[bytes, int, bool]]
    ) -> Iterator[tuple[bytes, int, bool]]:
        """Turn a damaged gzip stream or a read error into an :class:`InputError`."""
        try:
            yield from lines
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            problem = f"damaged gzip data after line {self.line}: {exc}"
            raise InputError(self.name, problem) from None
        except OSError as exc:
            raise InputError(self.name, f"cannot read after line {self.line}: {exc}") from None

    @property
    def received(self) -> int:
        """Receive time given to the calls that carry none."""
        return self._ctx.received

    @received.setter
    def received(self, when: int) -> None:
        self._ctx = replace(self._ctx, received=when)
        self._parse = parser(self.format, self._ctx, self._layout_found)

    @property
    def consumed(self) -> int | None:
        """Bytes of the file read so far (compressed bytes for gzip); None for a stream."""
        if self._file is None:
            return None
        return self._read if self._file.closed else self._file.tell()

    def close(self) -> None:
        """Close the file (not a stream given by the caller); iterating to the end does."""
        if self._file is not None and not self._file.closed:
            self._read = self._file.tell()
            self._file.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Call]:
        parse, name, header, ctx = self._parse, self.name, self._header, self._ctx
        by_lines = self.compressed or self._file is None
        offset = self.position if not by_lines else 0
        number = self.line
        head, self._head = self._head, []
        for data, size, ended in _chain(head, self._lines):
            number += 1
            self.line = number
            begin = offset
            offset += size
            after = (number if ended else number - 1) if by_lines else (offset if ended else begin)
            overlong = size > len(data)
            text = line_text(data, number, header)
            if text is None:
                self.position = after
                continue
            result = parse_line(text, f"{name}:{number}", parse, ctx, overlong=overlong)
            if result is None:
                self.skipped += 1
                self.position = after
            elif isinstance(result, Call):
                self.position = after
                yield result
            elif result:
                yield from result[:-1]
                self.position = after
                yield result[-1]
            else:
                self.position = after
        self.close()


def line_text(data: bytes, number: int, header: int | None) -> bytes | None:
    r"""Return line `number` of an input as its parser sees it, or None when it holds no call.

    A BOM is dropped from the first line and the line break from every line; blank lines and
    the CSV header line (`header`) hold no call. Every engine that reads lines itself calls
    this (and :func:`parse_line`), so that they all read a line as :class:`Reader` does.

    Examples
    --------
    >>> line_text(b"\xef\xbb\xbf/e?_p=a\r\n", 1, None), line_text(b" \n", 2, None)
    (b'/e?_p=a', None)
    """
    if number == 1 and data.startswith(BOM):
        data = data[3:]
    data = data.rstrip(b"\r\n")
    if number == header or not data or data.isspace():
        return None
    return data


def parse_line(
    data: bytes, source: str, parse: Parse, ctx: Context, *, overlong: bool = False
) -> Call | tuple[Call, ...] | None:
    """Parse one line (:func:`line_text`'s); a line too long to read whole is ``malformed``.

    `data` of an overlong line is its first bytes only; it is kept as a preview.
    """
    if overlong:
        return refuse(
            shown(data) + "...", "malformed", received=ctx.received, source=source,
            tenant=ctx.tenant,
        )  # fmt: skip
    return parse(data, source)


def _chain(
    head: list[tuple[bytes, int, bool]], rest: Iterator[tuple[bytes, int, bool]]
) -> Iterator[tuple[bytes, int, bool]]:
    yield from head
    yield from rest
