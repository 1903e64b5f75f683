"""Group commit: one thread writes calls from many requests to an engine, many per transaction.

SQLite has one writer. Request threads hand their parsed :class:`~identity.calls.Call` to a
:class:`Writer` and wait (or hand it over with a callback, :meth:`Writer.send`); its thread
commits whatever has gathered with one :meth:`Engine.apply_batch
<identity.engine.Engine.apply_batch>` (one transaction), syncs the log once for the round
(:mod:`identity.beacon.sync`), and only then wakes the requests, which may then say their call
is stored. Standard library only.

Examples
--------
>>> from identity import Engine
>>> from identity.calls import parse_query
>>> with Writer(Engine()) as writer:
...     writer.commit(parse_query("/e?_k=K&_p=bob&_n=Paid", received=1))
True
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..calls import Call
from ..engine import Engine
from ..errors import ConfigurationError
from .sync import LogSync

__all__ = ["OnCommit", "Then", "Ticket", "Writer"]

#: What the writer thread calls once a batch's transaction is over, before it wakes the batch's
#: requests: the notes handed to :meth:`Writer.submit` (None where none was given), and the
#: indexes of the calls whose commit failed.
OnCommit = Callable[[Sequence[object], frozenset[int]], None]

#: What :meth:`Writer.send` calls once its call's batch is over: with True once the call is
#: committed (and synced), False when it is not.
Then = Callable[[bool], None]

_log = logging.getLogger("identity.beacon")

#: Longest round (commit and sync, seconds) after which the event loop still leads the next.
LEAD_LIMIT = 0.02

#: Calls committed between two checkpoints of the log by the writer (about 2 MiB of log).
CHECKPOINT_CALLS = 1024


class _Batch:
    """Calls that will share one transaction, with a held lock or a callback per call.

    One lock per waiting request means one futex wake per request when the batch is
    committed, not a herd of threads re-taking one shared condition; a call handed over with
    :meth:`Writer.send` has no thread waiting at all: its callback runs instead.
    """

    __slots__ = ("calls", "failed", "first", "notes", "thens", "waiters")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.waiters: list[threading.Lock] = []
        self.thens: list[tuple[int, Then]] = []
        self.notes: list[object] = []
        self.failed: frozenset[int] = frozenset()
        self.first = 0.0

    def add(self, call: Call, note: object = None) -> threading.Lock:
        """Add `call`; return the held lock released once the batch is committed."""
        waiter = threading.Lock()
        waiter.acquire()
        self.calls.append(call)
        self.waiters.append(waiter)
        self.notes.append(note)
        return waiter

    def add_then(self, call: Call, note: object, then: Then) -> None:
        """Add `call`; `then` is called with whether it is stored once the batch is over."""
        self.thens.append((len(self.calls), then))
        self.calls.append(call)
        self.notes.append(note)

    def finish(self, failed: frozenset[int]) -> None:
        """Record which calls failed, wake every waiting request, run the callbacks."""
        self.failed = failed
        for waiter in self.waiters:
            waiter.release()
        for index, then in self.thens:
            try:
                then(index not in failed)
            except Exception:
                _log.exception("identity beacon: answering a committed call failed")


class Ticket:
    """A call handed to the writer (:meth:`Writer.submit`): wait on it for its commit."""

    __slots__ = ("_batch", "_index", "_waiter")

    def __init__(self, batch: _Batch, index: int, waiter: threading.Lock) -> None:
        self._batch, self._index, self._waiter = batch, index, waiter

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Wait until the call's batch is committed; return whether the call is stored.

        False when the commit failed or `timeout` seconds passed (the call may still be
        committed later).
        """
        if not self._waiter.acquire(timeout=-1 if timeout is None else timeout):
            _log.error("identity beacon: no commit after %s s", timeout)
            return False
        return self._index not in self._batch.failed


class Writer:
    """The one thread that writes to an engine: group commit of calls from many requests.

    Parameters
    ----------
    engine : Engine
        The engine to write to. While the writer runs, nothing else may write to it.
    batch_size : int
        Most calls committed in one transaction.
    max_wait : float
        Longest time, in seconds, the first call of a batch waits for others to join it. The
        writer waits only while requests that have announced a call (:meth:`announce`) have
        not yet handed it over, so a lone request is committed at once.
    on_commit : callable, optional
        Called by the writer thread with the batch's notes (see :meth:`submit`) and the
        indexes of its failed calls once the transaction is over and before any request of
        the batch is woken: the beacon writes a batch's access-log lines there, with one
        write and one flush, so that every answered call is logged. Settable later as
        :attr:`on_commit`, before the first call. An exception it raises is logged, never
        fails the batch.

    Notes
    -----
    Requests call :meth:`commit`, which blocks until the call's batch is committed; the
    writer commits a batch with one :meth:`Engine.apply_batch
    <identity.engine.Engine.apply_batch>` (one transaction, one fsync). The engine never fails
    a batch for one bad call (it quarantines that call as ``rejected_by_store`` and commits the
    rest), so when :meth:`~identity.engine.Engine.apply_batch` raises, the database could not
    do its work (a :class:`~identity.errors.StoreError`: locked, read-only, full, damaged):
    every call of the batch is reported failed (the beacon answers ``503`` so that clients
    retry), the transaction is rolled back, and the writer goes on with the next batch.
    :meth:`close` stops accepting calls, commits those received, and joins the thread.

    Examples
    --------
    >>> from identity.calls import parse_query
    >>> writer = Writer(Engine())
    >>> writer.commit(parse_query("/a?_k=K&_p=anon-1&_n=bob", received=1))
    True
    >>> writer.close()
    >>> writer.commit(parse_query("/a?_k=K&_p=anon-2&_n=bob", received=1))
    False
    >>> writer.stats()["calls"], writer.engine.same_person("K", "bob", "anon-1")
    (1, True)
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 256,
        max_wait: float = 0.005,
        on_commit: OnCommit | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {batch_size}")
        if max_wait < 0:
            raise ConfigurationError(f"max_wait must be at least 0, not {max_wait}")
        self.engine = engine
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.on_commit = on_commit
        self._cond = threading.Condition(threading.Lock())
        self._open = _Batch()
        self._ready: deque[_Batch] = deque()
        self._announced = 0
        self._closing = False
        #: "idle": waiting for a call; "filling": waiting for announced calls; "paced":
        #: waiting for the calls the server expects (a call wakes it once none is expected, or
        #: when its batch is full); "led": the leader commits a round; "busy": committing and
        #: syncing
        self._state = "busy"
        self._counts = {"calls": 0, "batches": 0, "failed": 0}
        self._committing_since: float | None = None
        #: Returns whether calls not handed over yet are on their way (set by the server:
        #: some connection has no request waiting); a paced commit waits for them.
        self.expecting: Callable[[], bool] | None = None
        #: Called (by the thread that released them) once a batch's calls are released: the
        #: server wakes its event loop there, once, to send the answers :meth:`send`'s
        #: callbacks wrote.
        self.after_release: Callable[[], None] | None = None
        store = engine.store
        self._sync: LogSync | None = None
        self._uncheckpointed = 0  # calls committed since the writer's last checkpoint
        #: The thread that may lead rounds (:meth:`lead`; set by the server: its event loop).
        self.leader: int | None = None
        self._complete = False  # a paced round is complete, for the leader to take
        self._leading = False  # the leader is committing a round
        self._last_round = 0.0  # how long the last round's commit and sync took, in seconds
        if store.durable and store.path not in ("", ":memory:") and not store.readonly:
            # durability moves from SQLite's COMMIT to one sync a round (identity.beacon.sync)
            store.conn.execute("PRAGMA synchronous=NORMAL")
            log = LogSync(f"{store.path}-wal", max_delay=max_wait)
            self._sync = log
        self._thread = threading.Thread(target=self._run, name="identity-writer", daemon=True)
        self._thread.start()

    @property
    def _syncer(self) -> LogSync | None:
        """The log's syncer (None: COMMIT syncs); the name tests/test_perf_store.py uses."""
        return self._sync

    @property
    def accepting(self) -> bool:
        """Whether calls are still accepted (not closed, and the thread is alive)."""
        return not self._closing and self._thread.is_alive()

    def announce(self) -> None:
        """Say that a call is on its way (so a batch waits for it up to `max_wait`).

        Every :meth:`announce` must be followed by ``commit(..., announced=True)`` or by
        :meth:`withdraw`.
        """
        with self._cond:
            self._announced += 1

    def withdraw(self) -> None:
        """Take back an :meth:`announce` whose call will not come."""
        with self._cond:
            self._announced -= 1
            if self._state == "filling" and self._announced <= 0:
                self._cond.notify()

    def commit(self, call: Call, *, announced: bool = False, timeout: float | None = 30.0) -> bool:
        """Hand `call` to the writer and wait until its batch is committed.

        Parameters
        ----------
        call : Call
            Validated with the engine's rules (quarantined calls are committed too).
        announced : bool
            Whether :meth:`announce` was called for this call.
        timeout : float or None
            Longest wait in seconds; when it passes, the answer is False (the call may still be
            committed later).

        Returns
        -------
        bool
            True once the call is committed; False when the writer is closed, the commit
            failed or `timeout` passed. Never raises for a failed commit.
        """
        ticket = self.submit(call, announced=announced)
        return ticket is not None and ticket.wait(timeout)

    def submit(self, call: Call, *, announced: bool = False, note: object = None) -> Ticket | None:
        """Hand `call` to the writer without waiting; None when the writer is closed.

        `note` travels with the call to :attr:`on_commit` (the beacon's access-log line).
        """
        with self._cond:
            if announced:
                self._announced -= 1
            if self._closing:
                return None
            batch = self._open
            index = len(batch.calls)
            waiter = batch.add(call, note)
            self._added(batch, index)
        return Ticket(batch, index, waiter)

    def send(self, call: Call, then: Then, *, note: object = None) -> bool:
        """Hand `call` to the writer with a callback instead of a waiting thread.

        Parameters
        ----------
        call : Call
            As for :meth:`commit`.
        then : callable
            Called once the call's batch is over, in the writer's thread,
            after :attr:`on_commit`: ``then(True)`` once the call is committed and on the
            disk, ``then(False)`` when it is not. It must not block; an exception it raises
            is logged.
        note : object, optional
            As for :meth:`submit`.

        Returns
        -------
        bool
            False when the writer is closed (`then` is never called), else True.
        """
        with self._cond:
            if self._closing:
                return False
            batch = self._open
            index = len(batch.calls)
            batch.add_then(call, note, then)
            self._added(batch, index)
        return True

    def _added(self, batch: _Batch, index: int) -> None:
        """Account for the call just added at `index` of the open batch (lock held)."""
        if not index:
            batch.first = time.monotonic()
        full = index + 1 >= self.batch_size
        if full:
            self._ready.append(batch)
            self._open = _Batch()
        state = self._state
        if state == "paced" and not full and not self._expected():
            if self.leader is not None and threading.get_ident() == self.leader:
                self._complete = True  # the leader commits it (lead), sooner than a wake
            else:
                self._cond.notify()
        elif (
            state == "idle"
            or (state == "filling" and (full or self._announced <= 0))
            or (state == "paced" and full)
        ):
            self._cond.notify()

    def lead(self) -> None:
        """Commit and sync a complete paced round in the calling thread, then answer it.

        The server's event loop calls this after reading from a connection: when the call
        it just handed over was the last one expected (every connection waits for its
        answer, so the loop has nothing else to read meanwhile), committing it here spares
        two thread wake-ups (the writer's, and the loop's to send the answers), which on a
        busy machine cost milliseconds each. Does nothing otherwise, or when called from
        another thread than :attr:`leader`, or while rounds are slow (the last one took
        more than :data:`LEAD_LIMIT`: a slow disk or a stuck call must block the writer's
        thread, not the event loop).
        """
        if not self._complete or threading.get_ident() != self.leader:
            return
        if self._last_round > LEAD_LIMIT:
            with self._cond:
                self._complete = False
                self._cond.notify()  # the writer's thread commits it
            return
        with self._cond:
            self._complete = False
            if self._leading or self._closing or self._state not in ("paced", "idle"):
                return
            batches = self._claim()
            if not batches:
                return
            self._leading = True
        try:
            self._commit_round(batches)
        except BaseException:  # pragma: no cover - a bug: answer 503 rather than hang
            _log.exception("identity beacon: a round failed")
            for batch in batches:
                with contextlib.suppress(Exception):
                    self._finish(batch, frozenset(range(len(batch.calls))))
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify()  # the writer takes what arrived meanwhile

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting calls, commit every call received, and join the thread.

        Idempotent. The engine stays open (its owner closes it).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def committing_for(self) -> float:
        """Return how long, in seconds, the batch being committed has taken so far (0: none).

        A commit that takes longer than requests are willing to wait means the writer is stuck
        (on the disk, or on a call the engine cannot finish): the beacon's ``/healthz`` then
        answers ``503``, so that a load balancer sends the traffic elsewhere.
        """
        since = self._committing_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def stats(self) -> dict[str, int]:
        """Return counts so far: ``calls`` committed, ``batches`` committed, ``failed`` calls."""
        with self._cond:
            return dict(self._counts)

    def _take(self) -> list[_Batch] | None:
        """Wait for the next round of batches to commit and sync (None: closed and drained).

        The writer holds a round while requests that announced a call are still parsing it
        (it is "filling", at most `max_wait` after the first call) and, when the sync is
        paced (:mod:`identity.beacon.sync`), while :attr:`expecting` says more calls are on
        their way ("paced", at most until :meth:`~identity.beacon.sync.LogSync.hold_until`).
        Calls that arrive while a round is being committed and synced wait for the next one.
        """
        sync = self._sync
        with self._cond:
            while not self._ready and not self._closing:
                if self._leading:  # the leader is committing a round: wait for it
                    self._state = "led"
                    self._cond.wait()
                    continue
                now = time.monotonic()
                expecting = self.expecting
                paced = sync is not None and sync.delay > 0 and expecting is not None
                until = sync.hold_until() if paced and sync is not None else now
                if not self._open.calls:
                    # asleep until a call comes; while paced, the first calls do not wake it
                    # (only the one after which none is expected, or the end of the pace)
                    self._state = "paced" if until > now else "idle"
                    self._cond.wait(until - now if until > now else None)
                    continue
                if self._announced > 0:
                    self._state = "filling"
                    until = self._open.first + self.max_wait
                elif paced and expecting is not None and expecting():
                    self._state = "paced"
                else:
                    break
                if until <= now:
                    break
                self._cond.wait(until - now)
            while self._leading:  # closing, or a full batch: let the leader's round end
                self._cond.wait()
            self._state = "busy"
            if self._closing and not self._ready and not self._open.calls:
                return None
            return self._claim()

    def _claim(self) -> list[_Batch]:
        """Take every batch there is, for a round (lock held)."""
        self._complete = False
        batches = list(self._ready)
        self._ready.clear()
        if self._open.calls:
            batches.append(self._open)
            self._open = _Batch()
        return batches

    def _run(self) -> None:
        batches: list[_Batch] | None = None
        try:
            while True:
                batches = self._take()
                if batches is None:
                    self._stop_syncing()
                    return
                self._commit_round(batches)
                batches = None
        except BaseException:  # pragma: no cover - a bug in the loop itself
            _log.exception("identity beacon: the writer thread stopped")
            with self._cond:
                self._closing = True
                pending = list(batches or [])
                pending += [*self._ready, self._open]
                self._ready.clear()
            for stranded in pending:
                failed = frozenset(range(len(stranded.calls)))
                if self.on_commit is not None:
                    with contextlib.suppress(Exception):
                        self.on_commit(stranded.notes, failed)
                self._finish(stranded, failed)

    def _apply(self, calls: list[Call]) -> None:
        try:
            self.engine.apply_batch(calls)
        except BaseException:
            # Whatever failed, leave no transaction open (Store.transaction does not roll back
            # when COMMIT itself fails), so that the next batch can begin.
            conn = self.engine.store.conn
            if conn.in_transaction:
                try:
                    conn.rollback()
                except sqlite3.Error:  # pragma: no cover - nothing more can be done
                    _log.exception("identity beacon: rollback failed")
            raise

    def _commit_round(self, batches: list[_Batch]) -> None:
        """Commit `batches` (a transaction each), sync the log once, then release them."""
        started = self._committing_since = time.monotonic()
        try:
            outcomes = [self._commit(batch) for batch in batches]
            sync = self._sync
            if sync is not None and any(not failed for failed in outcomes) and not sync.sync():
                # not on the disk: no call of the round may be acknowledged
                outcomes = [frozenset(range(len(batch.calls))) for batch in batches]
        finally:
            self._last_round = time.monotonic() - started
            self._committing_since = None
        for batch, failed in zip(batches, outcomes, strict=True):
            self._release(batch, failed)
        if self._sync is not None:
            self._uncheckpointed += sum(len(batch.calls) for batch in batches)
            if self._uncheckpointed >= CHECKPOINT_CALLS:
                self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the log into the database and start it over (between rounds, answers sent).

        A log written over from its start keeps its size, and syncing it then writes data
        only; a log that grows makes every sync also commit the file system's journal (the
        new size), which on a busy disk is most of the sync's time.
        """
        self._uncheckpointed = 0
        try:
            self.engine.store.checkpoint("RESTART")
        except Exception:  # the log is then only longer: nothing is lost
            _log.warning("identity beacon: checkpoint failed", exc_info=True)

    def _commit(self, batch: _Batch) -> frozenset[int]:
        """Commit one batch; return the indexes of its calls that failed (all or none)."""
        calls = batch.calls
        try:
            self._apply(calls)
        except Exception:
            # The engine already quarantines a call it cannot store: a failure here is the
            # database's, and no call of the batch may be acknowledged.
            _log.exception(
                "identity beacon: commit of %d calls failed; they are answered 503", len(calls)
            )
            return frozenset(range(len(calls)))
        return frozenset()

    def _expected(self) -> bool:
        """Whether the server expects more calls (a paced commit waits for them)."""
        expecting = self.expecting
        return expecting is not None and expecting()

    def _stop_syncing(self) -> None:
        """Give durability back to SQLite's COMMIT, and close the log's descriptor."""
        if self._sync is None:
            return
        self._sync.close()
        with contextlib.suppress(sqlite3.Error):  # a closed engine needs nothing more
            self.engine.store.conn.execute("PRAGMA synchronous=FULL")

    def _release(self, batch: _Batch, failed: frozenset[int]) -> None:
        """Count the batch, run the commit hook (the access log), wake its requests."""
        with self._cond:
            if failed:
                self._counts["failed"] += len(failed)
            else:
                self._counts["calls"] += len(batch.calls)
                self._counts["batches"] += 1
        on_commit = self.on_commit
        if on_commit is not None:
            try:
                on_commit(batch.notes, failed)
            except Exception:
                _log.exception("identity beacon: the commit hook failed")
        self._finish(batch, failed)

    def _finish(self, batch: _Batch, failed: frozenset[int]) -> None:
        """Wake the batch's requests, run its callbacks, then :attr:`after_release`."""
        batch.finish(failed)
        after = self.after_release
        if after is not None and batch.thens:
            try:
                after()
            except Exception:
                _log.exception("identity beacon: the release hook failed")
