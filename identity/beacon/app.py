"""The beacon: a WSGI app that takes Kissmetrics tracking calls over HTTP (standard library only).

``GET`` or ``POST`` ``/e``, ``/s`` and ``/a`` (under any path prefix, such as ``/km/e``) are
parsed into :class:`~identity.calls.Call` values in the request's thread (or, with
:meth:`Beacon.start`, in the server's event loop) and handed to one
:class:`~identity.beacon.writer.Writer` thread, which commits them in groups with
:meth:`Engine.apply_batch <identity.engine.Engine.apply_batch>`: one transaction and one fsync
for many requests. A request is answered only once its call is committed and on the disk:
``200`` with a transparent 1x1 GIF (SPEC §12), also for calls that were quarantined (SPEC §4),
or ``503`` when the commit (or the sync) failed, so that the client retries. ``/healthz``
answers ``ok`` for load balancers (``503`` while stopping, or while a commit has taken longer
than ``commit_timeout``); other paths get ``404``, other methods ``405``, an unexpected error
``500``, each with a short text body and never a traceback.

Examples
--------
>>> from wsgiref.util import setup_testing_defaults
>>> from identity import Engine
>>> app = make_app(Engine())
>>> environ = {"PATH_INFO": "/km/e", "QUERY_STRING": "_k=K&_p=bob&_n=Signed+Up&plan=pro"}
>>> setup_testing_defaults(environ)
>>> answers = []
>>> body = b"".join(app(environ, lambda status, headers: answers.append((status, headers))))
>>> answers[0][0], dict(answers[0][1])["Content-Type"], body == GIF
('200 OK', 'image/gif', True)
>>> app.writer.engine.person("K", "bob").properties
(('plan', 'pro'),)
>>> app.close()
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from ..calls import DEFAULT_RULES, KINDS, Call, Reason, Rules, parse_form, rejected, tenant_hint
from ..engine import Engine
from ..errors import ConfigurationError
from .writer import Writer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "GIF",
    "SOURCE",
    "Beacon",
    "Response",
    "Writer",
    "app_from_env",
    "make_app",
    "rules_for_keys",
]

#: The answer to every tracking call: a 43-byte transparent 1x1 GIF.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

#: The ``source`` recorded with calls that came through the beacon.
SOURCE = "beacon"

#: How much of an oversized or broken request is kept in the quarantine, in characters.
PREVIEW = 1024

_FORM_TYPES = frozenset({"", "application/x-www-form-urlencoded", "text/plain"})
_NO_CACHE = [("Cache-Control", "no-cache, no-store"), ("Pragma", "no-cache")]
_CLF_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_log = logging.getLogger("identity.beacon")

Response = tuple[str, list[tuple[str, str]], bytes]


def _text(status: str, message: str, *extra: tuple[str, str]) -> Response:
    body = message.encode("utf-8") + b"\n"
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
        *_NO_CACHE,
        *extra,
    ]
    return status, headers, body


_GIF_RESPONSE: Response = (
    "200 OK",
    [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *_NO_CACHE],
    GIF,
)
_RETRY = ("Retry-After", "1")
_NOT_COMMITTED: Response = _text("503 Service Unavailable", "not committed; retry", _RETRY)


def _transcode(text: str) -> str | None:
    """Turn a WSGI (latin-1) string back into UTF-8 text; None when it is not UTF-8."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeEncodeError:
        return text  # the server already gave real text
    except UnicodeDecodeError:
        return None


def _shown(text: str) -> str:
    """Turn a WSGI (latin-1) string into text for the quarantine, bytes escaped as needed."""
    try:
        return text.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text


def _read(stream: Any, size: int) -> tuple[bytes, bool]:
    """Read `size` bytes; return them and whether the stream ended (or broke) before."""
    chunks: list[bytes] = []
    got = 0
    try:
        while got < size:
            chunk = stream.read(size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except Exception:  # the client went away while sending
        return b"".join(chunks), True
    return b"".join(chunks), got < size


def _body(
    environ: WSGIEnvironment, limit: int
) -> tuple[bytes, int, Literal["too_large", "incomplete"] | None]:
    """Read a request body, at most `limit` bytes of it.

    Returns the bytes read, the body's size when known, and a problem: None,
    ``"too_large"`` (only a preview was read) or ``"incomplete"`` (the client stopped).
    """
    stream = environ["wsgi.input"]
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    if length_text.isdigit():
        length = int(length_text)
        if length > limit:
            data, _ = _read(stream, min(PREVIEW, limit))
            return data, length, "too_large"
        data, short = _read(stream, length)
        return data, length, "incomplete" if short else None
    if environ.get("wsgi.input_terminated"):
        data, _ = _read(stream, limit + 1)
        if len(data) > limit:
            return data[:PREVIEW], len(data), "too_large"
        return data, len(data), None
    return b"", 0, None


def _clf_escape(text: str) -> str:
    r"""Escape a field of a Combined Log Format line like Apache does (``\\"``, ``\\xNN``).

    Examples
    --------
    >>> _clf_escape('GET /e?_p=caf\xc3\xa9&q="x" HTTP/1.1')
    'GET /e?_p=caf\\xc3\\xa9&q=\\"x\\" HTTP/1.1'
    """
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        if char in '"\\':
            return "\\" + char
        data = char.encode("latin-1") if ord(char) < 256 else char.encode("utf-8")
        return "".join(f"\\x{byte:02x}" for byte in data)

    return _CLF_UNSAFE.sub(escape, text)


@functools.lru_cache(maxsize=4)
def _clf_time(when: int) -> str:
    """Return a Combined Log Format time, UTC, locale-free.

    Examples
    --------
    >>> _clf_time(1262304000)
    '[01/Jan/2010:00:00:00 +0000]'
    """
    t = time.gmtime(when)
    return (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
    )


def _target(environ: WSGIEnvironment) -> str:
    """Return the request target as the client sent it (or rebuilt from the environ)."""
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        return str(uri)
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    try:
        target = quote(path.encode("latin-1"), safe="/;=,:@!$&'()*+~")
    except UnicodeEncodeError:
        target = quote(path, safe="/;=,:@!$&'()*+~")
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


class Beacon:
    """The WSGI application (build it with :func:`make_app`).

    Attributes
    ----------
    writer : Writer
        Commits the calls.
    max_body, max_query : int
        Largest request body and query string accepted, in bytes; larger ones are quarantined
        as ``too_large`` (a preview of them is kept) and still answered with the GIF.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        owns_writer: bool,
        max_body: int,
        max_query: int,
        commit_timeout: float,
        access_log: IO[str] | None,
        clock: Callable[[], float],
    ) -> None:
        if max_body < 0 or max_query < 0:
            raise ConfigurationError("max_body and max_query must be at least 0")
        self.writer = writer
        self.max_body = max_body
        self.max_query = max_query
        self.commit_timeout = commit_timeout
        self.access_log = access_log
        self._owns_writer = owns_writer
        self._clock = clock
        self._rules: Rules = writer.engine.rules
        self._log_lock = threading.Lock()
        self._lock = threading.Lock()
        self._in_flight = 0
        # The lines of tracking calls are written by the writer thread, a batch at a time
        # (one write, one flush) after its commit and before its requests are answered; a
        # writer another app already logs through keeps per-request lines.
        self._batch_log = access_log is not None and writer.on_commit is None
        if self._batch_log:
            writer.on_commit = self._log_batch

    @property
    def in_flight(self) -> int:
        """Number of requests being handled right now."""
        return self._in_flight

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting calls and commit those received (when the app made its writer)."""
        if self._owns_writer:
            self.writer.close(timeout)

    def __enter__(self) -> Beacon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request (WSGI)."""
        arrival = self._clock()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        with self._lock:
            self._in_flight += 1
        logged_body: str | None = ""
        try:
            status, headers, body, logged_body = self._handle(
                environ, method, arrival, int(arrival)
            )
        except Exception:
            _log.exception(
                "identity beacon: %s %r failed", method, str(environ.get("PATH_INFO", ""))
            )
            status, headers, body = _text("500 Internal Server Error", "internal error")
        finally:
            with self._lock:
                self._in_flight -= 1
        if method == "HEAD":
            body = b""
        if self.access_log is not None and logged_body is not None:
            self._log_access(environ, method, arrival, status, len(body), logged_body)
        start_response(status, list(headers))  # a copy: servers and middleware may add to it
        return [body] if body else []

    def _handle(
        self, environ: WSGIEnvironment, method: str, arrival: float, received: int
    ) -> tuple[str, list[tuple[str, str]], bytes, str | None]:
        """Answer a request.

        The last item is the body text for the request's access-log line, or None when the
        writer thread logs it (:meth:`_log_batch`).
        """
        path = str(environ.get("PATH_INFO") or environ.get("SCRIPT_NAME") or "")
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if kind == "healthz":
            if method not in ("GET", "HEAD"):
                return (*_text("405 Method Not Allowed", "method not allowed", _ALLOW_READ), "")
            if not self.writer.accepting:
                return (*_text("503 Service Unavailable", "stopping"), "")
            if self.writer.committing_for() > self.commit_timeout:
                return (*_text("503 Service Unavailable", "commit stalled"), "")
            return (*_text("200 OK", "ok"), "")
        if kind not in KINDS:
            return (*_text("404 Not Found", "not found"), "")
        if method not in ("GET", "HEAD", "POST"):
            return (*_text("405 Method Not Allowed", "method not allowed", _ALLOW_CALLS), "")
        if method == "HEAD":
            return (*_GIF_RESPONSE, "")
        writer = self.writer
        writer.announce()
        try:
            call, logged_body = self._call(environ, method, kind, received)
        except BaseException:
            writer.withdraw()
            raise
        note = self._log_parts(environ, method, arrival, logged_body) if self._batch_log else None
        ticket = writer.submit(call, announced=True, note=note)
        logged = None if ticket is not None and note is not None else logged_body
        if ticket is None or not ticket.wait(self.commit_timeout):
            return (*_NOT_COMMITTED, logged)
        return (*_GIF_RESPONSE, logged)

    def start(self, environ: WSGIEnvironment, answer: Callable[[Response], None]) -> bool:
        """Take a ``GET`` tracking call without a thread waiting for its commit.

        For servers that can answer a request later from another thread (``identity
        serve``): the call is parsed here and handed to the writer, and `answer` is called
        with the response, ``(status, headers, body)``, from the writer's (or the syncer's)
        thread once the call is committed and on the disk (the GIF), or once its commit
        failed (``503``). As with :meth:`__call__`, the call's access-log line is written
        before `answer` is called. `answer` must not block.

        Parameters
        ----------
        environ : dict
            The request's WSGI environ.
        answer : callable
            Called exactly once when this returns True, never when it returns False.

        Returns
        -------
        bool
            False when the request is not a ``GET`` of a tracking call, when the writer is
            closed, or when the access log is not written by the writer: then nothing was
            done, and the request must be answered by calling the app as usual.
        """
        if environ.get("REQUEST_METHOD") != "GET" or (
            self.access_log is not None and not self._batch_log
        ):
            return False
        path = str(environ.get("PATH_INFO") or environ.get("SCRIPT_NAME") or "")
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if kind not in KINDS:
            return False
        arrival = self._clock()
        try:
            call, logged_body = self._call(environ, "GET", kind, int(arrival))
            note = None
            if self._batch_log:
                note = self._log_parts(environ, "GET", arrival, logged_body)
        except Exception:  # the app's own path answers it (500) and logs why
            return False
        lock = self._lock

        def then(stored: bool) -> None:
            with lock:
                self._in_flight -= 1
            answer(_GIF_RESPONSE if stored else _NOT_COMMITTED)

        with lock:
            self._in_flight += 1
        if self.writer.send(call, then, note=note):
            return True
        with lock:
            self._in_flight -= 1
        return False

    def _call(
        self, environ: WSGIEnvironment, method: str, kind: str, received: int
    ) -> tuple[Call, str]:
        """Build the request's call; also return the body text to show in the access log."""
        raw_query = str(environ.get("QUERY_STRING") or "")
        if len(raw_query) > self.max_query:
            raw = f"/{kind}?{_shown(raw_query[:PREVIEW])}"
            note = f"... [query of {len(raw_query)} bytes]"
            return self._refused(raw, "too_large", received, note), ""
        query = _transcode(raw_query)
        if query is None:
            return self._refused(f"/{kind}?{_shown(raw_query)}", "bad_encoding", received), ""
        rules = self._rules
        if method != "POST":
            return parse_form(
                "", kind=kind, query=query, received=received, source=SOURCE, rules=rules
            ), ""
        data, size, problem = _body(environ, self.max_body)
        content_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if problem is None and content_type in _FORM_TYPES:
            call = parse_form(
                data, kind=kind, query=query, received=received, source=SOURCE, rules=rules
            )
            return call, data.decode("latin-1")
        shown = data[:PREVIEW].decode("utf-8", "backslashreplace")
        raw = f"/{kind}?{query}{'&' if query and shown else ''}{shown}"
        if problem == "too_large":
            return self._refused(raw, problem, received, f"... [body of {size} bytes]"), ""
        if problem == "incomplete":
            note = f"... [{len(data)} of {size} bytes]"
            return self._refused(raw, problem, received, note), ""
        return self._refused(raw, "malformed", received, f" [{content_type} body]"), ""

    def _refused(self, raw: str, reason: Reason, received: int, note: str = "") -> Call:
        """Return a call quarantined for `reason`: `raw` (plus `note`), tenant if seen."""
        tenant = tenant_hint(raw)  # before the note is added
        return rejected(raw + note, reason, received=received, source=SOURCE, tenant=tenant)

    def _log_parts(
        self, environ: WSGIEnvironment, method: str, arrival: float, body: str
    ) -> tuple[str, str]:
        """Return a Combined Log Format line without its status and size: (before, after).

        A POST's form body joins the query string, so that replaying the log (``identity
        ingest``) replays every call.
        """
        target = _target(environ)
        if body:
            target += ("&" if "?" in target else "?") + body
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.0")
        request = _clf_escape(f"{method} {target} {protocol}")
        before = (
            f"{environ.get('REMOTE_ADDR') or '-'} - "
            f"{_clf_escape(str(environ.get('REMOTE_USER') or '-'))} {_clf_time(int(arrival))} "
            f'"{request}" '
        )
        after = (
            f' "{_clf_escape(str(environ.get("HTTP_REFERER") or "-"))}" '
            f'"{_clf_escape(str(environ.get("HTTP_USER_AGENT") or "-"))}"\n'
        )
        return before, after

    def _write_log(self, text: str) -> None:
        """Write and flush `text` to the access log; a broken log never fails a request."""
        stream = self.access_log
        if stream is None:  # pragma: no cover - checked by the callers
            return
        try:
            with self._log_lock:
                stream.write(text)
                stream.flush()  # the log is replayable: a line must survive a kill -9
        except (OSError, ValueError):  # a closed or broken log must not fail the request
            _log.warning("identity beacon: cannot write the access log", exc_info=True)

    def _log_batch(self, notes: Sequence[object], failed: frozenset[int]) -> None:
        """Log a committed batch's calls, one write and one flush (the writer's hook).

        Runs in the writer thread before any request of the batch is answered, so that every
        answered call is in the log even when the process is killed; each line carries the
        answer its request gets (``200`` and the GIF, or ``503`` when the commit failed).
        """
        lines = []
        for index, note in enumerate(notes):
            if isinstance(note, tuple):
                lines.append(
                    note[0] + (_LOGGED_FAILED if index in failed else _LOGGED_OK) + note[1]
                )
        if lines:
            self._write_log("".join(lines))

    def _log_access(
        self,
        environ: WSGIEnvironment,
        method: str,
        arrival: float,
        status: str,
        sent: int,
        body: str,
    ) -> None:
        """Write one Combined Log Format line, and flush it.

        The line is written and flushed to the operating system before the request is
        answered, so every answered request is in the log even when the process is killed
        (it reaches the disk with the system's own write-back). Tracking calls are logged by
        :meth:`_log_batch` instead, a batch at a time.
        """
        before, after = self._log_parts(environ, method, arrival, body)
        self._write_log(f"{before}{status[:3]} {sent or '-'}{after}")


_LOGGED_OK = f"200 {len(GIF)}"
_LOGGED_FAILED = f"503 {len(_NOT_COMMITTED[2])}"
_ALLOW_CALLS = ("Allow", "GET, HEAD, POST")
_ALLOW_READ = ("Allow", "GET, HEAD")


def make_app(
    engine_or_writer: Engine | Writer,
    *,
    max_body: int = 65536,
    max_query: int = 8192,
    batch_size: int = 256,
    max_wait: float = 0.005,
    commit_timeout: float = 30.0,
    access_log: IO[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Beacon:
    """Build the beacon's WSGI application over an engine.

    Parameters
    ----------
    engine_or_writer : Engine or Writer
        Where calls are committed. Given an :class:`~identity.engine.Engine`, the app starts
        its own :class:`Writer` (with `batch_size` and `max_wait`) and :meth:`Beacon.close`
        stops it; given a :class:`Writer`, the app shares it and leaves it running.
    max_body : int
        Largest ``POST`` body read, in bytes (at most this much is read from ``wsgi.input``).
    max_query : int
        Largest query string accepted, in bytes.
    batch_size, max_wait : int, float
        Group commit: most calls a transaction, longest wait in seconds for a batch to fill.
    commit_timeout : float
        Longest a request waits for its commit before answering ``503``.
    access_log : text stream, optional
        Where to write one Combined Log Format line per request; each line is flushed
        before its request is answered.
    clock : callable
        Returns the time in seconds; a call's receive time is its integer part on arrival.

    Returns
    -------
    Beacon
        The WSGI application; call :meth:`Beacon.close` to commit what is pending and stop.

    Examples
    --------
    >>> from wsgiref.util import setup_testing_defaults
    >>> app = make_app(Engine(), clock=lambda: 1262304000.5)
    >>> environ = {"PATH_INFO": "/s", "QUERY_STRING": "_k=K&_p=bob&gender=male"}
    >>> setup_testing_defaults(environ)
    >>> status = []
    >>> len(b"".join(app(environ, lambda s, h: status.append(s)))), status
    (43, ['200 OK'])
    >>> app.writer.engine.property_history("K", "bob")[0].t
    1262304000
    >>> app.close()
    """
    if isinstance(engine_or_writer, Writer):
        writer, owns = engine_or_writer, False
    else:
        writer, owns = Writer(engine_or_writer, batch_size=batch_size, max_wait=max_wait), True
    return Beacon(
        writer,
        owns_writer=owns,
        max_body=max_body,
        max_query=max_query,
        commit_timeout=commit_timeout,
        access_log=access_log,
        clock=clock,
    )


def rules_for_keys(text: str | None) -> Rules:
    """Return the rules for a comma-separated allow-list of API keys (None: any key).

    Examples
    --------
    >>> sorted(rules_for_keys("K1, K2").allowed_keys or ())
    ['K1', 'K2']
    """
    if text is None:
        return DEFAULT_RULES
    keys = frozenset(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ConfigurationError("the allow-list of API keys is empty")
    return Rules(allowed_keys=keys)


def app_from_env(environ: Mapping[str, str] | None = None) -> Beacon:
    r"""Build the app from environment variables, for WSGI servers such as gunicorn.

    ``IDENTITY_DB`` (required) is the database; ``IDENTITY_KEYS`` an optional comma-separated
    allow-list of API keys; ``IDENTITY_BATCH_SIZE`` and ``IDENTITY_MAX_WAIT_MS`` tune group
    commit; ``IDENTITY_ACCESS_LOG=-`` writes an access log to stderr (a WSGI server usually
    keeps its own). The writer is closed (pending calls committed) when the process exits.

    Run it with one worker process (SQLite has one writer) and many threads::

        IDENTITY_DB=identity.db gunicorn -w 1 -k gthread --threads 32 \
            -b 127.0.0.1:8080 'identity.beacon:app_from_env()'

    Raises
    ------
    ConfigurationError
        ``IDENTITY_DB`` is not set, or a number is not one.

    Examples
    --------
    >>> app = app_from_env({"IDENTITY_DB": ":memory:", "IDENTITY_KEYS": "K1"})
    >>> app.writer.engine.rules.allowed_keys
    frozenset({'K1'})
    >>> app.close()
    """
    env = os.environ if environ is None else environ
    path = env.get("IDENTITY_DB")
    if not path:
        raise ConfigurationError("set IDENTITY_DB to the identity database file")
    try:
        batch_size = int(env.get("IDENTITY_BATCH_SIZE", "256"))
        max_wait = float(env.get("IDENTITY_MAX_WAIT_MS", "5")) / 1000
    except ValueError as exc:
        raise ConfigurationError(
            f"bad IDENTITY_BATCH_SIZE or IDENTITY_MAX_WAIT_MS: {exc}"
        ) from None
    engine = Engine(path, rules=rules_for_keys(env.get("IDENTITY_KEYS")))
    log = sys.stderr if env.get("IDENTITY_ACCESS_LOG") == "-" else None
    app = make_app(engine, batch_size=batch_size, max_wait=max_wait, access_log=log)
    atexit.register(app.close)
    return app
