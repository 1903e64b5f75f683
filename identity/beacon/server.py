"""Serve the beacon with waitress, and stop it gracefully (``identity serve``).

waitress is an optional dependency (``pip install 'identity[serve]'``), imported only when
:func:`serve` runs. On SIGTERM or Ctrl-C the server stops accepting connections, commits every
call it received, lets the waiting requests answer, and returns.

Why waitress, with its own channel class
----------------------------------------
A complete request that reached the server is data: it must be stored or quarantined whatever
the client does next. Stock waitress does not promise that for pipelined requests. The
official kissmetrics-php client writes several requests on one keep-alive connection and
closes the socket without reading the answers; waitress parses them, serves the first, and
once a write to the closed socket fails (or it reads the end of the stream) it marks the
channel disconnected, never runs the requests it had queued behind, and closes the socket
with unread requests still in the kernel's buffer. No row, no quarantine entry, no log line.

Rather than writing an HTTP server, :func:`serve` keeps waitress (mature parsing, limits,
timeouts, thread pool) and gives it a channel class (:func:`reliable_channel`) that changes
exactly that: before a connection is closed for any reason, every byte the client sent is read
(bounded) and parsed, and every complete request is run through the application, which
commits its call before it writes an answer (SPEC §12). When the client has gone, the answer
is discarded. The one exception is HTTP's own: requests that follow one that ends the
connection (``Connection: close``, HTTP/1.0 without keep-alive, or a request waitress could
not parse, after which the framing cannot be trusted) are not processed (RFC 9112 §9.6), and a
warning says how many were refused.

Tracking calls without request threads
--------------------------------------
A ``GET`` of a tracking call on a keep-alive HTTP/1.1 connection does not go to waitress's
request threads (:meth:`ReliableChannel.serve_fast`): the event loop parses it and hands it to
the writer (:meth:`Beacon.start <identity.beacon.app.Beacon.start>`), and the thread that
committed and synced its round writes the answer into the connection's buffer and wakes the
loop once per round. When the loop reads the call after which every connection waits for its
answer, it commits, syncs and answers that round itself (:meth:`Writer.lead
<identity.beacon.writer.Writer.lead>`), unless rounds are slow. The promise is unchanged: no
answer before the call is committed and its log synced (a failed sync answers ``503``).
Everything else (``POST``, ``HEAD``, ``/healthz``, errors, a connection that ends) takes
waitress's request threads and the WSGI app, as before.
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from ..engine import Engine
from ..errors import ConfigurationError
from .app import Beacon, Response, make_app

__all__ = ["reliable_channel", "serve"]

#: Most bytes read from a connection that is being closed (what the client sent unread).
DRAIN_LIMIT = 1 << 20

_log = logging.getLogger("identity.beacon")


def _ends_connection(request: Any) -> bool:
    """Whether HTTP says nothing after `request` may be processed on its connection."""
    if request.error is not None:
        return True  # waitress could not parse it: the next request's framing is unknown
    tokens = {t.strip().lower() for t in str(request.headers.get("CONNECTION", "")).split(",")}
    if request.version == "1.1":
        return "close" in tokens
    return "keep-alive" not in tokens


def _first_line(request: Any) -> str:
    return f"{request.command} {request.path}"[:200]


class _Answers:
    """HTTP/1.1 answers as bytes, as waitress would write them (cached for the second).

    Used only by the thread that answers calls without a request thread (the writer's or the
    syncer's), so it takes no lock.
    """

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self._second = -1
        self._date = ""
        self._cache: dict[tuple[str, bytes], bytes] = {}
        self._http_date: Callable[[float], str] = importlib.import_module(
            "waitress.utilities"
        ).build_http_date

    def __call__(self, response: Response) -> bytes:
        status, headers, body = response
        now = int(time.time())
        if now != self._second:
            self._second, self._date, self._cache = now, self._http_date(now), {}
        key = (status, body)
        data = self._cache.get(key)
        if data is None:
            lines = sorted([*headers, ("Server", self.ident), ("Date", self._date)], key=_name)
            head = "".join(f"{name}: {value}\r\n" for name, value in lines)
            data = f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + body
            self._cache[key] = data
        return data


def _name(header: tuple[str, str]) -> str:
    return header[0]


def _never() -> bool:
    return False


@functools.cache
def reliable_channel() -> type[Any]:
    """Return waitress's ``HTTPChannel`` made to run every complete request it received.

    A subclass, built on first use so that waitress stays optional. Differences from
    ``waitress.channel.HTTPChannel`` (waitress 3):

    - :meth:`handle_close` (the one place a channel's socket is closed) first reads what the
      client sent and the channel has not read yet (at most :data:`DRAIN_LIMIT` bytes), and
      queues its complete requests.
    - :meth:`service` runs every queued request through the application, also after the client
      has gone or a write failed (the answer is then discarded, the call is committed), except
      after a request that ends the connection by HTTP's rules.
    - While the server is stopping (:meth:`stop_reading`), it reads no more from its socket
      (what was sent is still drained and processed when the channel is closed).

    Returns
    -------
    type
        The channel class, to set as the server's ``channel_class``.

    Raises
    ------
    ImportError
        waitress is not installed.
    """
    channel_module: Any = importlib.import_module("waitress.channel")
    disconnected: type[Exception] = channel_module.ClientDisconnected
    buffer_class: type[Any] = importlib.import_module("waitress.buffers").OverflowableBuffer

    class ReliableChannel(channel_module.HTTPChannel):  # type: ignore[misc]
        """An HTTP channel that loses no complete request (see :func:`reliable_channel`)."""

        # waitress's own attributes, as this class uses them
        request: Any
        requests: list[Any]
        current_outbuf_count: int

        #: The client is gone or its answers cannot be sent: serve on, discard answers.
        orphaned = False
        #: A request ended the connection: nothing after it is processed.
        ended = False
        #: The socket was read to its end before closing.
        drained = False

        def serve_fast(self) -> bool:
            """Hand the first queued request to the beacon with no request thread (see below).

            A ``GET`` of a tracking call on a keep-alive HTTP/1.1 connection is parsed in
            the calling thread (the event loop's, or the one that answered the previous
            request) and handed to the writer; the thread that makes its batch durable then
            writes the answer and schedules the connection's next request. Everything else
            (and this request, when the beacon declines it) goes to waitress's request
            threads, as before. Returns whether the request was taken. The caller holds
            ``requests_lock``.
            """
            beacon: Beacon | None = getattr(self.server, "identity_beacon", None)
            if beacon is None or self.ended or not self.requests:
                return False
            request = self.requests[0]
            if (
                request.command != "GET"
                or request.version != "1.1"
                or _ends_connection(request)
                or self.total_outbufs_len > self.adj.send_bytes
            ):
                return False
            environ = self.task_class(self, request).get_environment()
            return beacon.start(environ, functools.partial(self._answer_fast, request))

        def _answer_fast(self, request: Any, response: Response) -> None:
            """Write the answer of a request :meth:`serve_fast` took; serve the next one.

            Runs in the thread that made the call durable. Never blocks on the client: the
            answer goes to the channel's buffer, and the event loop sends it.
            """
            data: bytes = self.server.identity_answers(response)
            with self.outbuf_lock:
                if self.connected and not self.orphaned:
                    if self.current_outbuf_count >= self.adj.outbuf_high_watermark:
                        self.outbufs.append(buffer_class(self.adj.outbuf_overflow))
                        self.current_outbuf_count = 0
                    self.outbufs[-1].append(data)
                    self.total_outbufs_len += len(data)
                    # as waitress does: the next answer starts a new buffer (the event loop
                    # may flush this one without the lock once no request is queued)
                    self.current_outbuf_count = self.adj.outbuf_high_watermark
            request.close()
            with self.requests_lock:
                if self.requests and self.requests[0] is request:
                    self.requests.pop(0)
                if not self.connected:
                    self.orphaned = True
                    self.close_when_flushed = True
                self._serve_next()
            # the event loop is woken once for the whole batch (Writer.after_release)
            self.last_activity = time.time()

        def _serve_next(self) -> None:
            """Queue the next request after an answer (under ``requests_lock``).

            With none queued, send the ``100 Continue`` a request still being received awaits.
            """
            if self.requests:
                self.server.add_task(self)
            elif (
                self.connected
                and not self.orphaned
                and not self.ended
                and self.request is not None
                and self.request.expect_continue
                and self.request.headers_finished
                and not self.sent_continue
            ):
                self.send_continue()

        def handle_read(self) -> None:
            super().handle_read()
            lead = getattr(self.server, "identity_lead", None)
            if lead is not None:
                lead()  # the call just read may complete a round (Writer.lead)

        def stop_reading(self) -> None:
            """Read no more from the socket (the server is stopping); in the loop's thread.

            An instance attribute rather than a test in :meth:`readable`, which the event
            loop calls for every connection on every turn.
            """
            self.readable = _never

        def handle_close(self) -> None:
            if not self.drained:
                self.drained = True
                try:
                    self._drain()
                except Exception:  # pragma: no cover - never keep a socket open for this
                    _log.exception("identity beacon: reading a closing connection failed")
            super().handle_close()

        def write_soon(self, data: Any) -> int:
            if self.orphaned:
                raise disconnected
            return int(super().write_soon(data))

        def _drain(self) -> None:
            """Read what the client sent that is still unread; queue its complete requests."""
            sock = self.socket
            if sock is None:
                return
            chunks: list[bytes] = []
            total = 0
            while total < DRAIN_LIMIT:
                try:
                    data = sock.recv(self.adj.recv_bytes)
                except OSError:  # nothing more for now (EAGAIN), or the connection broke
                    break
                if not data:
                    break
                chunks.append(data)
                total += len(data)
            if total >= DRAIN_LIMIT:
                _log.warning(
                    "identity beacon: %s: stopped reading a closing connection after %d bytes",
                    self.addr,
                    total,
                )
            with self.requests_lock:
                if chunks:
                    self._parse(b"".join(chunks))
                partial = self.request
                self.request = None
            if partial is not None and (partial.header_plus or partial.headers_finished):
                _log.warning(
                    "identity beacon: %s: a request cut short (%d bytes received) "
                    "was not processed",
                    self.addr,
                    partial.header_bytes_received + partial.body_bytes_received,
                )

        def _parse(self, data: bytes) -> None:
            """Parse `data` into requests and queue them (as ``received`` does, closing or not).

            The caller holds ``requests_lock``.
            """
            while data:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                request = self.request
                used = request.received(data)
                if request.completed:
                    self.request = None
                    if not request.empty:
                        self._queue(request)
                elif used <= 0:  # pragma: no cover - the parser always makes progress
                    break
                if used >= len(data):
                    break
                data = data[used:]

        def _queue(self, request: Any) -> None:
            if self.ended:
                self._refuse([request])
                return
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)

        def _refuse(self, requests: list[Any]) -> None:
            if not requests:
                return
            _log.warning(
                "identity beacon: %s: %d request(s) sent after one that closed the connection "
                "were not processed (RFC 9112), first: %s",
                self.addr,
                len(requests),
                _first_line(requests[0]),
            )
            for request in requests:
                request.close()

        def service(self) -> None:
            """Run the first queued request, and schedule the next one (also when orphaned)."""
            request = self.requests[0]
            ends = _ends_connection(request)
            if request.error is not None:
                task = self.error_task_class(self, request)
            else:
                task = self.task_class(self, request)
            try:
                task.service()  # the beacon commits the call before it writes anything
            except disconnected:
                task.close_on_finish = True
            except Exception:
                self.logger.exception("Exception while serving %s", request.path)
                task.close_on_finish = True
            if not ends and not task.close_on_finish and len(self.requests) > 1:
                self._flush_outbufs_below_high_watermark()
            if self.current_outbuf_count > 0:
                # as waitress does: the next answer starts a new buffer
                self.current_outbuf_count = self.adj.outbuf_high_watermark
            request.close()
            with self.requests_lock:
                self.requests.pop(0)
                if ends:
                    self.ended = True
                    self._refuse(self.requests)
                    self.requests = []
                    self.close_when_flushed = True
                elif task.close_on_finish or not self.connected:
                    # Answers can no longer be delivered in order: close the connection
                    # (once what was written is flushed) but serve what was received.
                    self.orphaned = True
                    self.close_when_flushed = True
                self._serve_next()
            if self.connected:
                self.server.pull_trigger()
            self.last_activity = time.time()

    return ReliableChannel


def serve(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 32,
    batch_size: int = 256,
    max_wait: float = 0.005,
    max_body: int = 65536,
    max_query: int = 8192,
    access_log: IO[str] | None = sys.stderr,
    messages: IO[str] = sys.stderr,
    stop_timeout: float = 10.0,
) -> dict[str, int]:
    """Serve the beacon with waitress until SIGTERM or Ctrl-C, then stop gracefully.

    On the signal the server stops accepting connections and reading new requests, runs every
    request it has received (also those a client sent and then hung up on), commits their
    calls and answers them, then returns. A second signal stops at once (calls received are
    still committed). Needs the ``serve`` extra (``pip install 'identity[serve]'``).

    Parameters
    ----------
    engine : Engine
        Where calls are committed; the caller closes it.
    host, port : str, int
        Where to listen (``port=0``: any free port). The address is printed to `messages`
        as ``identity: serving on http://HOST:PORT``.
    threads : int
        Request threads: how many requests can wait for a commit at once.
    batch_size, max_wait, max_body, max_query
        As in :func:`~identity.beacon.app.make_app`.
    access_log : text stream, optional
        Combined Log Format access log (default: stderr), flushed after every line.
    messages : text stream
        Where to say where it listens and what it committed.
    stop_timeout : float
        Longest time, in seconds, a graceful stop waits, in all, for the requests received
        to be served, committed and answered; then the server stops anyway (requests still
        waiting for a commit are not answered, so their clients retry).

    Returns
    -------
    dict
        The writer's counts: ``calls``, ``batches``, ``failed``.

    Raises
    ------
    ConfigurationError
        waitress is not installed.
    """
    try:
        waitress_server = importlib.import_module("waitress.server")
        wasyncore = importlib.import_module("waitress.wasyncore")
        channel_class = reliable_channel()
    except ImportError:
        raise ConfigurationError(
            "identity serve needs waitress: pip install 'identity[serve]'"
        ) from None
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="%(name)s: %(levelname)s: %(message)s")
    # Every thread busy is how group commit runs, not a problem: keep only errors.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = make_app(
        engine,
        batch_size=batch_size,
        max_wait=max_wait,
        max_body=max_body,
        max_query=max_query,
        access_log=access_log,
    )
    try:
        server = waitress_server.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="identity",
            max_request_body_size=max(max_body * 16, 1 << 20),
        )
    except BaseException:
        app.close()
        raise
    server.channel_class = channel_class
    server.identity_stopping = False
    # Tracking calls skip waitress's request threads (ReliableChannel.serve_fast): a request
    # scheduled on a channel is first offered to the beacon, and goes to a request thread
    # only when the beacon declines it.
    server.identity_beacon = app
    server.identity_answers = _Answers(str(server.adj.ident))
    dispatch = server.add_task

    def add_task(channel: Any) -> None:
        serve_fast = getattr(channel, "serve_fast", None)
        if serve_fast is None or not serve_fast():
            dispatch(channel)

    server.add_task = add_task

    def expecting() -> bool:
        """Whether a connection has no request in the server (its next call may come)."""
        return any(not channel.requests for channel in list(server.active_channels.values()))

    app.writer.expecting = expecting
    app.writer.after_release = server.pull_trigger  # once a batch's answers are written
    app.writer.leader = threading.get_ident()  # the event loop's thread (server.run below)
    server.identity_lead = app.writer.lead
    print(
        f"identity: serving on http://{server.effective_host}:{server.effective_port} "
        f"(db {engine.path}; Ctrl-C or SIGTERM to stop)",
        file=messages,
        flush=True,
    )
    stopping = threading.Event()
    stop_by = [float("inf")]  # when a graceful stop must be over (time.monotonic)

    def left() -> float:
        return max(0.0, stop_by[0] - time.monotonic())

    def in_loop(action: Callable[[], None]) -> None:
        """Run `action` in the server's event-loop thread and wait for it (1 s at most)."""
        done = threading.Event()

        def thunk() -> None:
            try:
                action()
            finally:
                done.set()

        server.trigger.pull_trigger(thunk)
        done.wait(1.0)

    def settle(channels: list[Any], *, flushed: bool) -> None:
        """Wait (until the stop's deadline) until `channels` have served what they received."""
        while left() > 0 and (
            getattr(server.task_dispatcher, "queue", None)
            or app.in_flight
            or any(ch.requests for ch in channels)
            or (flushed and any(ch.total_outbufs_len for ch in channels if ch.connected))
        ):
            time.sleep(0.01)

    def stop_reading() -> None:
        wasyncore.dispatcher.close(server)  # stop accepting connections
        server.identity_stopping = True
        for channel in list(server.active_channels.values()):
            channel.stop_reading()  # channels read no more new requests

    def close_channels() -> None:
        for channel in list(server.active_channels.values()):
            channel.handle_close()  # reads what the client sent first, and queues it

    def close_everything() -> None:
        for dispatcher in list(getattr(server, "_map", {}).values()):
            dispatcher.close()

    def graceful(signum: int) -> None:
        print(f"identity: {signal.Signals(signum).name}: stopping", file=messages, flush=True)
        in_loop(stop_reading)
        channels = list(server.active_channels.values())
        settle(channels, flushed=True)  # every request received is served and answered
        in_loop(close_channels)
        settle(channels, flushed=False)  # and what was drained from the closed sockets
        app.close(left())  # commit what is left; later requests get 503
        in_loop(close_everything)

    def on_signal(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()  # the work is done in a thread: a handler must not block the loop
        stop_by[0] = time.monotonic() + stop_timeout
        threading.Thread(
            target=graceful, args=(signum,), name="identity-shutdown", daemon=True
        ).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        app.close(min(left(), stop_timeout))
        server.task_dispatcher.shutdown(timeout=min(left(), 5.0))
        if getattr(server, "socket", None) is not None:
            server.close()
    counts = app.writer.stats()
    print(
        f"identity: stopped: {counts['calls']} calls committed in {counts['batches']} "
        f"batches, {counts['failed']} not committed",
        file=messages,
        flush=True,
    )
    return counts
