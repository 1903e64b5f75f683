"""Serve the beacon with waitress, and stop it gracefully (``identity serve``).

waitress is an optional dependency (``pip install 'identity[serve]'``), imported only when
:func:`serve` runs. On SIGTERM or Ctrl-C the server stops accepting connections, commits every
call it received, lets the waiting requests answer, and returns.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from .beacon import make_app
from .engine import Engine
from .errors import ConfigurationError

__all__ = ["serve"]


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
) -> dict[str, int]:
    """Serve the beacon with waitress until SIGTERM or Ctrl-C, then stop gracefully.

    On the signal the server stops accepting connections, commits every call received and
    answers the requests waiting for it, then returns. A second signal stops at once (calls
    received are still committed). Needs the ``serve`` extra (``pip install
    'identity[serve]'``).

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
        As in :func:`make_app`.
    access_log : text stream, optional
        Combined Log Format access log (default: stderr).
    messages : text stream
        Where to say where it listens and what it committed.

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
    print(
        f"identity: serving on http://{server.effective_host}:{server.effective_port} "
        f"(db {engine.path}; Ctrl-C or SIGTERM to stop)",
        file=messages,
        flush=True,
    )
    stopping = threading.Event()

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

    def close_everything() -> None:
        for channel in list(server.active_channels.values()):
            channel.close()
        for dispatcher in list(getattr(server, "_map", {}).values()):
            dispatcher.close()

    def graceful(signum: int) -> None:
        print(f"identity: {signal.Signals(signum).name}: stopping", file=messages, flush=True)
        in_loop(lambda: wasyncore.dispatcher.close(server))  # stop accepting connections
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and getattr(server.task_dispatcher, "queue", None):
            time.sleep(0.01)  # requests read but not yet handed to the app: let them in
        app.close()  # commit what was received; waiting requests get their answers
        deadline = time.monotonic() + 10.0
        while app.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        while time.monotonic() < deadline and any(
            getattr(ch, "total_outbufs_len", 0) for ch in list(server.active_channels.values())
        ):
            time.sleep(0.01)
        in_loop(close_everything)

    def on_signal(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()  # the work is done in a thread: a handler must not block the loop
        threading.Thread(
            target=graceful, args=(signum,), name="identity-shutdown", daemon=True
        ).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        app.close()
        server.task_dispatcher.shutdown(timeout=5)
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
