r"""Resumable ingest: read inputs into an engine, remembering how far each one was read.

The database's ``inputs`` table keeps, per input file (by real path), a content fingerprint
(size and a hash of the first 64 KiB) and how far the file was read: a byte offset, or a
line count for gzip. That position is written in the same transaction as the batch of calls
that got there, so it never runs ahead of the data, nor behind it by more than one batch.
Hence:

- a run killed at any moment and started again goes on after its last committed batch and
  ends in the state of one uninterrupted run;
- a finished file is not read again (``force`` reads it anyway: the duplicates collapse,
  SPEC §8);
- a file that grew since (an access log) is read on from where it ended; a file replaced by
  other content is read from the start.

Stdin is read whole every time (it has no fingerprint).

Examples
--------
>>> import os, tempfile
>>> from identity import Engine
>>> from identity.io.sources import Input
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "calls.txt")
>>> with open(path, "w") as f:
...     _ = f.write("/e?_k=K&_p=bob&_n=Paid&_t=5\n/a?_k=K&_p=bob&_n=b@x.org\n")
>>> engine = Engine()
>>> with Ingest(engine, Input(path, path)) as job:
...     print(job.status, job.run().accepted)
new 2
>>> with Ingest(engine, Input(path, path)) as job:
...     print(job.status, job.note())
done already ingested (2 calls); nothing to do (--force reads it again)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from itertools import islice
from typing import Literal, get_args

from ..batch import collector_paused
from ..engine import DEFAULT_BATCH_SIZE, Engine
from ..errors import ConfigurationError
from ..records import Summary
from ..store import Store
from .formats import FormatOrAuto
from .sources import Input, Reader, fingerprint, grew_from

__all__ = ["STATUSES", "Ingest", "Status"]

#: What an :class:`Ingest` found about its input before reading it.
Status = Literal["new", "resumed", "grown", "changed", "forced", "done", "stream"]
STATUSES: tuple[Status, ...] = get_args(Status)


class Ingest:
    """One input's resumable ingest into an engine.

    Parameters
    ----------
    engine : Engine
        Where the calls go (its rules validate them).
    source : Input
        What to read.
    fmt, tenant, received
        As for :class:`~identity.io.sources.Reader`.
    force : bool
        Read the input from the start even if it was read before.

    Attributes
    ----------
    status : str
        One of :data:`STATUSES`: ``new`` (never read), ``resumed`` (an interrupted run goes
        on), ``grown`` (read before, lines appended since), ``changed`` (other content at
        that path: read from the start), ``forced``, ``done`` (nothing to read), ``stream``
        (stdin: not resumable).
    reader : Reader or None
        The reader (None when `status` is ``done``).
    committed : int
        Calls of this input committed before this run.
    summary : Summary
        What this run did so far.
    """

    def __init__(
        self,
        engine: Engine,
        source: Input,
        *,
        fmt: FormatOrAuto = "auto",
        tenant: str | None = None,
        received: int | None = None,
        force: bool = False,
    ) -> None:
        self.engine = engine
        self.source = source
        self.summary = Summary()
        self.key: str | None = None
        self.fingerprint = ""
        self.status, start, self.committed = "stream", 0, 0
        if source.path != "-":
            self.key = os.path.realpath(source.path)
            self.fingerprint = fingerprint(source.path)
            self.status, start, self.committed = self._plan(force)
        self.reader: Reader | None = None
        if self.status != "done":
            self.reader = reader = Reader(
                source,
                fmt=fmt,
                tenant=tenant,
                received=received,
                rules=engine.rules,
                start=start,
            )
            if self.key is None and reader.content is not None:
                # stdin read whole in its first 64 KiB: remembered by its content only
                self.key, self.fingerprint = f"<stdin {reader.content}>", reader.content
            content = self.fingerprint or None
            if received is None and source.received is None and content is not None:
                # the same content read again (a copy, stdin, --force) gets the receive time
                # it got the first time: its calls without _t are duplicates, not new calls
                remembered = engine.store.received_for(content)
                if remembered is not None:
                    reader.received = remembered

    def _plan(self, force: bool) -> tuple[str, int, int]:
        """Return (status, where to start, calls committed before) from the ``inputs`` row."""
        assert self.key is not None
        state = self.engine.store.input_state(self.key)
        if state is None:
            return "new", 0, 0
        if force:
            return "forced", 0, 0
        old, position, calls, finished = state
        if old == self.fingerprint:
            return ("done" if finished else "resumed"), position, calls
        if grew_from(self.source.path, old):
            return "grown", position, calls
        return "changed", 0, 0

    def note(self) -> str | None:
        """Say what the ingest found about its input (None when there is nothing to say)."""
        reader = self.reader
        if self.status == "done":
            return (
                f"already ingested ({self.committed} calls); nothing to do (--force reads it again)"
            )
        if reader is None:  # pragma: no cover - only "done" has no reader
            return None
        if self.status == "resumed":
            return f"resuming after line {reader.line} ({self.committed} calls already committed)"
        if self.status == "grown":
            return f"grew since it was read: reading on after line {reader.line}"
        if self.status == "changed":
            return "other content than when it was read: reading it from the start"
        return None

    def run(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[Ingest], None] | None = None,
    ) -> Summary:
        """Read the input to its end, one transaction per batch, recording the position.

        Parameters
        ----------
        batch_size : int
            Calls per transaction.
        on_batch : callable, optional
            Called with this ingest after each committed batch (progress).

        Returns
        -------
        Summary
            What this run did (also kept in :attr:`summary`).
        """
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {batch_size}")
        reader = self.reader
        if reader is None:
            return self.summary
        engine = self.engine
        calls = iter(reader)
        total = self.committed
        while True:
            with collector_paused():  # a batch makes no garbage cycles: nothing to scan
                batch = list(islice(calls, batch_size))
                finished = len(batch) < batch_size
                total += len(batch)
                record = self._recorder(reader.position, total, finished)
                if batch:
                    self.summary.add(engine.apply_batch(batch, after=record))
                elif record is not None:
                    with engine.store.transaction():
                        record(engine.store)
                del batch
            if on_batch is not None:
                on_batch(self)
            if finished:
                return self.summary

    def _recorder(
        self, position: int, calls: int, finished: bool
    ) -> Callable[[Store], None] | None:
        key = self.key
        if key is None:
            return None
        fingerprint = self.fingerprint
        received = None if self.reader is None else self.reader.received

        def record(store: Store) -> None:
            store.record_input(
                key,
                fingerprint,
                position,
                calls,
                finished=finished,
                updated=int(time.time()),
                received=received,
            )

        return record

    def close(self) -> None:
        """Close the input."""
        if self.reader is not None:
            self.reader.close()

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
