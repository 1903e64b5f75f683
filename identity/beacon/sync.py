"""Durability for group commit: one paced fsync of the write-ahead log for many calls.

With ``synchronous=FULL`` SQLite syncs the log inside every ``COMMIT``. The beacon's writer
instead commits with ``synchronous=NORMAL`` (each commit consistent, and safe from a killed
process), then makes the round durable with one :meth:`LogSync.sync` (one ``fdatasync`` of
the log, the GIL released meanwhile) and only then answers the round's calls: a request is
still answered only after its call is on the disk, and the disk's latency is shared by every
call of the round. Calls that arrive during a sync gather for the next round.

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
import time

__all__ = ["LogSync"]

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
