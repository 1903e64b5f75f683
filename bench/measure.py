"""Measuring on shared, noisy machines: CPU and wall time over repeats, memory, child processes.

Figures are medians over repeats, and the things compared are run round-robin (A B C A B C ...)
so that a burst of load from another process hits every one of them, not one. CPU time
(`time.process_time`) is the primary figure: it does not count the time other processes take
the CPU away; wall time (`time.perf_counter`) is kept beside it.

Memory is measured two ways: `traced` (tracemalloc, Python allocations only: exact bytes a
structure holds and the peak while building it) for in-memory structures, and `max_rss` (the
kernel's peak resident set of a process) for whole processes, which is why big measurements run
in a child process each (`run_child`): the peak is then that measurement's own.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The repository root: children get it on ``PYTHONPATH``, so ``bench`` and ``identity`` import.
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Timing:
    """CPU and wall seconds of each repeat of one measurement."""

    cpu: tuple[float, ...]
    wall: tuple[float, ...]

    @property
    def cpu_median(self) -> float:
        """Median CPU seconds."""
        return statistics.median(self.cpu)

    @property
    def wall_median(self) -> float:
        """Median wall seconds."""
        return statistics.median(self.wall)

    def as_dict(self) -> dict[str, Any]:
        """Return the timing as plain data (for ``--json``)."""
        return {
            "cpu_s": list(self.cpu),
            "wall_s": list(self.wall),
            "cpu_median_s": self.cpu_median,
            "wall_median_s": self.wall_median,
        }


def clock() -> tuple[float, float]:
    """Return ``(process_time, perf_counter)`` now."""
    return time.process_time(), time.perf_counter()


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Run `fn` once after a full garbage collection; return its result, CPU and wall seconds."""
    gc.collect()
    cpu, wall = clock()
    result = fn()
    cpu_end, wall_end = clock()
    return result, cpu_end - cpu, wall_end - wall


@dataclass
class RoundRobin:
    """Run several measurements in turns, `repeat` times each, keeping every result.

    Examples
    --------
    >>> rr = RoundRobin(repeat=3)
    >>> timings = rr.run({"sum": lambda: sum(range(100)), "max": lambda: max(range(100))})
    >>> sorted(timings), len(timings["sum"].cpu), rr.results["max"]
    (['max', 'sum'], 3, 99)
    """

    repeat: int = 3
    #: The last result of each measurement, by name.
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, subjects: Mapping[str, Callable[[], Any]]) -> dict[str, Timing]:
        """Time each of `subjects`, round-robin; return their timings by name."""
        cpu: dict[str, list[float]] = {name: [] for name in subjects}
        wall: dict[str, list[float]] = {name: [] for name in subjects}
        for _ in range(self.repeat):
            for name, fn in subjects.items():
                self.results[name] = None  # let the previous result go before the next run
                result, c, w = timed(fn)
                self.results[name] = result
                cpu[name].append(c)
                wall[name].append(w)
        return {name: Timing(tuple(cpu[name]), tuple(wall[name])) for name in subjects}


@dataclass(frozen=True, slots=True)
class Traced:
    """Python memory of one call, by tracemalloc."""

    #: Bytes allocated during the call and still alive after it (what its result holds).
    retained: int
    #: Highest traced bytes at any moment during the call (over the memory before it).
    peak: int


def traced(fn: Callable[[], T]) -> tuple[T, Traced]:
    """Run `fn` under tracemalloc; return its result and the memory it retained and peaked at.

    Only allocations made during the call count: objects that existed before it (the input
    identities, say) are not part of what it retains. tracemalloc slows Python down several
    times: never time a traced call.

    Examples
    --------
    >>> data, mem = traced(lambda: [0] * 1000)
    >>> mem.retained >= 8000, mem.peak >= mem.retained
    (True, True)
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        result = fn()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, Traced(retained=current - before, peak=peak - before)


def max_rss() -> int:
    """Return the peak resident set size of this process so far, in bytes.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this
    process's own memory image. ``getrusage(RUSAGE_SELF).ru_maxrss``, the fallback elsewhere,
    is not enough on Linux: it keeps the peak of the process that spawned this one across
    ``exec``, so a child started by a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_now() -> dict[str, int]:
    """Return this process's resident memory now, in bytes, split as Linux reports it.

    ``VmRSS`` (all), ``RssAnon`` (private: the heap, SQLite's page cache) and ``RssFile``
    (file-backed: shared libraries and memory-mapped database pages, which the kernel can
    drop at will). Empty where ``/proc`` is missing.
    """
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    found[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return found


def child_env() -> dict[str, str]:
    """Return the environment of a child: this one with the repository first on PYTHONPATH."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}"
    return env


class ChildError(RuntimeError):
    """A child measurement failed; the message holds the end of its stderr."""

    def __init__(self, what: str, status: int, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"child measurement {what!r} exited with status {status}:\n{tail}")
        self.what, self.status, self.stderr = what, status, stderr


def run_child(what: str, params: Mapping[str, Any], *, timeout: float | None = None) -> Any:
    """Run the measurement `what` of `bench.child` in a fresh interpreter; return its JSON.

    Each child is a new process (not a fork), so its peak RSS is its own measurement's.

    Raises
    ------
    ChildError
        If the child exits with an error.
    """
    argv = [sys.executable, "-m", "bench.child", what, json.dumps(dict(params))]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ChildError(what, proc.returncode, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


_OPAQUE = (type, type(os), type(len), type(timed))


def deep_size(obj: object, *, skip: tuple[type, ...] = (str,)) -> int:
    """Return the bytes of `obj` and everything it reaches, by `sys.getsizeof`.

    Follows dicts (keys and values), lists, tuples, sets, `__dict__` and `__slots__`; counts
    each object once; does not count objects of the types in `skip` (by default the identity
    strings, so that structures holding the same strings compare on their own cost), nor
    classes, modules and functions. Allocator rounding is not counted: use it to compare
    structures with each other, and `traced` for exact bytes.

    Examples
    --------
    >>> deep_size([1000, 1000]) == deep_size([1000]) + 8
    True
    >>> deep_size({"a": "b"}) == sys.getsizeof({"a": "b"})  # the strings are skipped
    True
    """
    seen: set[int] = set()
    stack: list[object] = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (*skip, *_OPAQUE)):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        else:
            if hasattr(item, "__dict__"):
                stack.append(vars(item))
            for cls in type(item).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(item, name):
                        stack.append(getattr(item, name))
    return total
