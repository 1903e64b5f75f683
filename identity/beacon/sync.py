"""Pipelined durability for group commit: one paced fsync of the WAL for many batches.

With ``synchronous=FULL`` SQLite syncs the log inside every ``COMMIT``, and the one writer
waits for the disk before it can begin the next transaction. The beacon's writer instead
commits with ``synchronous=NORMAL`` (each commit consistent, and safe from a killed
process) and hands the batch to a :class:`Syncer`, whose thread syncs the log
(:meth:`LogSync.sync`, one ``fdatasync``) once for every batch committed since its last sync
and only then releases them: a request is still answered only after its call is on the
disk, but the disk's latency is shared by all the batches committed meanwhile, and the
writer goes on committing while the disk works.

Pacing. A disk that takes the same time for a sync issued now as for one issued a little
later (a virtual disk that rate-limits flushes, as this project's benchmark machine has: one
flush per 4 ms, however early it is issued) is better synced late: the calls that arrive
meanwhile share the sync. After each sync, :class:`LogSync` compares how long it took with
the shortest sync it has seen lately; when syncs take longer than that, the writer holds its
next commit (and so the next sync) back, until :attr:`LogSync.delay` after the previous sync
ended (:meth:`LogSync.hold_until`; the delay is at most ``max_delay``), and the hold shrinks
again when syncs do not wait. A hold ends early once no more calls are on their way (the
server says every connection waits for its answer), so a lone request is never held, and a
disk whose syncs cost what they cost is not waited for.

Standard library only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LogSync", "Syncer"]

B = TypeVar("B")

_log = logging.getLogger("identity.beacon")

#: A sync this much longer than twice the shortest one seen (seconds) counts as held back.
_SLACK = 0.0002
#: How fast the hold shrinks, in seconds per sync that was not held back.
_SHRINK = 0.0002


class LogSync:
    """Sync a write-ahead log, and learn how long to hold the next sync (see above).

    Parameters
    ----------
    path : str
        The file to sync: the database's write-ahead log (``DB-wal``).
    max_delay : float
        Longest hold, in seconds after the previous sync ended.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as log:
    ...     syncer = LogSync(log.name, max_delay=0.005)
    ...     ok = syncer.sync()
    ...     syncer.close()
    >>> ok, syncer.syncs
    (True, 1)
    """

    def __init__(self, path: str, *, max_delay: float) -> None:
        self.path = path
        self.max_delay = max_delay
        #: How long, in seconds after the previous sync ended, the next one may be held.
        self.delay = 0.0
        #: When the previous sync ended (``time.monotonic()``).
        self.last_end = 0.0
        #: Syncs done.
        self.syncs = 0
        self._shortest = float("inf")  # the shortest sync seen lately, in seconds
        self._fd: int | None = None

    def hold_until(self) -> float:
        """Return the latest time (``time.monotonic()``) the next sync is worth holding for."""
        return self.last_end + self.delay

    def sync(self) -> bool:
        """Sync the log (the GIL is released meanwhile); return whether it worked."""
        started = time.monotonic()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            getattr(os, "fdatasync", os.fsync)(self._fd)
        except OSError:
            _log.exception("identity beacon: cannot sync %s; the batch is answered 503", self.path)
            self.last_end = time.monotonic()
            return False
        ended = self.last_end = time.monotonic()
        self.syncs += 1
        self._pace(ended - started)
        return True

    def _pace(self, took: float) -> None:
        """Adapt the hold to how long the sync that just ended took, in seconds."""
        # the shortest sync, forgotten slowly (so that a disk that became slower is learnt)
        shortest = self._shortest = min(self._shortest * 1.01 + 1e-6, took)
        excess = took - 2 * shortest - _SLACK
        if excess > 0:  # the disk made this sync wait: issuing it later would have cost nothing
            self.delay = min(self.max_delay, self.delay + excess / 2)
        else:
            self.delay = max(0.0, self.delay - _SHRINK)

    def close(self) -> None:
        """Close the log's file descriptor (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Syncer(Generic[B]):
    """A thread that makes committed batches durable, many per sync, then releases them.

    With it the writer goes on committing while the disk works (pipelined durability): a
    batch committed during a sync waits for the next one.

    Parameters
    ----------
    log : LogSync
        What to sync, and the pace.
    release : callable
        Called in the syncer's thread with each batch, in commit order, and whether its
        sync failed (then the batch's calls must not be acknowledged).
    idle : callable, optional
        Called after each round of syncing and releasing (the writer, which holds back its
        next commit while a sync is under way, since that commit would wait for the next
        sync anyway, and so gathers bigger batches).

    Examples
    --------
    >>> import tempfile
    >>> released = []
    >>> with tempfile.NamedTemporaryFile() as log:
    ...     syncer = Syncer(LogSync(log.name, max_delay=0), lambda *done: released.append(done))
    ...     syncer.put("batch 1")
    ...     syncer.close()
    >>> released
    [('batch 1', False)]
    """

    def __init__(
        self,
        log: LogSync,
        release: Callable[[B, bool], None],
        idle: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self._release = release
        self._idle = idle
        #: True while a sync is under way (batches handed over now wait for the next one).
        self.busy = False
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[B] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="identity-sync", daemon=True)
        self._thread.start()

    def put(self, batch: B) -> None:
        """Hand over a committed batch; it is released after the next sync."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the syncer is closed")
            self._queue.append(batch)
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Sync and release what was handed over, stop the thread, close the log."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batches, self._queue = self._queue, []
                    self.busy = True
                failed = not self.log.sync()
                for batch in batches:
                    try:
                        self._release(batch, failed)
                    except Exception:  # pragma: no cover - a bug in the caller's release
                        _log.exception("identity beacon: releasing a batch failed")
                with self._cond:
                    self.busy = bool(self._queue)
                if self._idle is not None:
                    self._idle()
        finally:
            self.log.close()
