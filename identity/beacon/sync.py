"""Pipelined durability for group commit: one fsync of the write-ahead log for many batches.

With ``synchronous=FULL`` SQLite syncs the log inside every ``COMMIT``, and the one writer
waits for the disk before it can begin the next transaction. The beacon's writer instead
commits with ``synchronous=NORMAL`` (each commit consistent, and safe from a killed
process) and hands the batch to a :class:`Syncer`, whose thread syncs the log once for every
batch committed since its last sync and only then releases them: a request is still
answered only after its call is on the disk, but the disk's latency is shared by all the
batches committed meanwhile, and the writer goes on committing while the disk works.

Standard library only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Syncer"]

_log = logging.getLogger("identity.beacon")

B = TypeVar("B")


class Syncer(Generic[B]):
    """A thread that makes committed batches durable, many per sync, then releases them.

    Parameters
    ----------
    path : str
        The file to sync: the database's write-ahead log (``DB-wal``).
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
    ...     syncer = Syncer(log.name, lambda batch, failed: released.append((batch, failed)))
    ...     syncer.put("batch 1")
    ...     syncer.close()
    >>> released
    [('batch 1', False)]
    """

    def __init__(
        self,
        path: str,
        release: Callable[[B, bool], None],
        idle: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._release = release
        self._idle = idle
        #: True while a sync is under way (batches handed over now wait for the next one).
        self.busy = False
        self._fd: int | None = None
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[B] = []
        self._closing = False
        self.syncs = 0
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
        """Sync and release what was handed over, stop the thread, close the file."""
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
                failed = not self._sync()
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
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _sync(self) -> bool:
        """Sync the log; return whether it worked."""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            getattr(os, "fdatasync", os.fsync)(self._fd)
        except OSError:
            _log.exception("identity beacon: cannot sync %s; the batch is answered 503", self.path)
            return False
        self.syncs += 1
        return True
