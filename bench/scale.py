"""``python -m bench scale``: ingest a big workload into a file database, as a user would.

Three steps per size, each its own process so that its figures are its own:

1. ``python -m bench generate --calls N --shape issue2 -o FILE`` writes the lines;
2. ``python -m identity.cli ingest FILE --db DB`` (the ``identity ingest`` command) applies
   them, run under ``/usr/bin/time -v`` when it exists (peak RSS, CPU and wall time from the
   kernel), else timed with `os.wait4` (the same figures from ``getrusage`` of the child);
3. ``python -m identity.cli check --db DB`` verifies the result (`run` with ``check=True``);
4. the floor (`bench.subjects.floor_ingest`: each line parsed with ``parse_qsl`` and written
   with one ``executemany`` into a table indexed on (tenant, identity)) on the same lines, in
   a child process of its own (`run` with ``floor=True``), so that the ingest's share of the
   floor's calls per CPU second is measured in the same run, at every size.

With ``--repeat N`` steps 2 and 4 run N times, in turns (each ingest into a new database),
and the run of median CPU time of each gives the figures, the floor share being the median
of each turn's: on a shared machine one run of the same code can be 20% off the next.

`run_sizes` does that for several sizes (by default 1M, 4M and 10M calls) and reports, side
by side, calls per CPU and per wall second, system time, peak RSS, and the ratio of the CPU
per call at the largest size to that at the smallest: a write path whose cost does not grow
with the database has a ratio near 1.

The equivalent shell commands are printed, so the run can be repeated by hand. Settings of
the ingest travel in the environment (``IDENTITY_CACHE_SIZE=1GiB python -m bench scale``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bench.measure import ROOT, child_env

#: The sizes `run_sizes` measures when not told.
DEFAULT_SIZES = (1_000_000, 4_000_000, 10_000_000)
#: The most CPU per call the largest size may cost, relative to the smallest (issue 13).
GROWTH_GOAL = 1.3
#: The least share of the floor's calls per CPU second the ingest must reach at the smallest
#: size (issue 13).
FLOOR_GOAL = 0.5

TIME_V = "/usr/bin/time"


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """What the kernel says about one finished child process."""

    argv: tuple[str, ...]
    status: int
    wall_s: float
    user_s: float
    system_s: float
    max_rss: int
    output: str

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.system_s


_TIME_FIELDS = {
    "user_s": re.compile(r"User time \(seconds\): ([\d.]+)"),
    "system_s": re.compile(r"System time \(seconds\): ([\d.]+)"),
    "max_rss": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
    "elapsed": re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)"),
}


def parse_time_v(text: str) -> dict[str, float]:
    """Return user, system, max RSS (bytes) and elapsed seconds from ``time -v`` output.

    Examples
    --------
    >>> out = '''User time (seconds): 1.50
    ... System time (seconds): 0.25
    ... Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.50
    ... Maximum resident set size (kbytes): 2048'''
    >>> parse_time_v(out)
    {'user_s': 1.5, 'system_s': 0.25, 'max_rss': 2097152.0, 'elapsed': 62.5}
    """
    found: dict[str, float] = {}
    for key, pattern in _TIME_FIELDS.items():
        match = pattern.search(text)
        if match is None:
            continue
        value = match.group(1)
        if key == "elapsed":
            total = 0.0
            for part in value.split(":"):
                total = total * 60 + float(part)
            found[key] = total
        elif key == "max_rss":
            found[key] = float(value) * 1024
        else:
            found[key] = float(value)
    return found


def run_measured(argv: list[str], *, use_time_v: bool = True) -> ProcessFigures:
    """Run `argv` to completion; return its status, output and the kernel's figures."""
    wrap = use_time_v and os.access(TIME_V, os.X_OK)
    full = [TIME_V, "-v", *argv] if wrap else argv
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=subprocess.PIPE, stderr=err, text=True, env=child_env(), cwd=ROOT
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        errors = err.read()
    figures = {
        "user_s": usage.ru_utime,
        "system_s": usage.ru_stime,
        "max_rss": float(usage.ru_maxrss * 1024),
    }
    if wrap:  # the same numbers, as the tool users know prints them (of `argv`, not of time)
        figures.update(parse_time_v(errors))
    return ProcessFigures(
        argv=tuple(argv),
        status=proc.returncode,
        wall_s=wall,
        user_s=figures["user_s"],
        system_s=figures["system_s"],
        max_rss=int(figures["max_rss"]),
        # without the lines of `time -v` (tab-indented)
        output="\n".join(
            line for line in (output + errors).splitlines() if not (wrap and line[:1] == "\t")
        ).strip(),
    )


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """The figures of one scale run."""

    calls: int
    shape: str
    lines_bytes: int
    db_bytes: int
    generate: ProcessFigures
    ingest: ProcessFigures
    summary: str
    #: ``identity check`` of the database after the ingest (None: not run).
    check: ProcessFigures | None = None
    #: The floor on the same lines (None: not run).
    floor: ProcessFigures | None = None
    #: Every ingest run of a ``repeat`` (:attr:`ingest` is the median one), in order.
    ingest_runs: tuple[ProcessFigures, ...] = ()
    #: Every floor run (:attr:`floor` is the median one), in order.
    floor_runs: tuple[ProcessFigures, ...] = ()

    @property
    def floor_share(self) -> float | None:
        """Ingest calls per CPU second over the floor's (None: floor not run).

        Of repeated runs, the median of each turn's share (an ingest and the floor run
        right after it): paired, so that the machine's drift over the turns cancels out.
        """
        if self.floor is None or not self.ingest.cpu_s:
            return None
        shares = sorted(self.turn_shares)
        if len(shares) < 2 or len(self.floor_runs) != len(self.ingest_runs):
            return self.floor.cpu_s / self.ingest.cpu_s
        return shares[(len(shares) - 1) // 2]

    @property
    def turn_shares(self) -> list[float]:
        """Each turn's floor share: an ingest run's calls per CPU second over its floor's."""
        return [
            floor.cpu_s / ingest.cpu_s
            for ingest, floor in zip(self.ingest_runs, self.floor_runs, strict=False)
            if ingest.cpu_s
        ]

    @property
    def rate(self) -> float:
        """Calls per wall second of the ingest."""
        return self.calls / self.ingest.wall_s if self.ingest.wall_s else float("inf")

    @property
    def cpu_rate(self) -> float:
        """Calls per CPU second (user + system) of the ingest."""
        return self.calls / self.ingest.cpu_s if self.ingest.cpu_s else float("inf")

    @property
    def cpu_per_call_us(self) -> float:
        """CPU microseconds (user + system) per call of the ingest."""
        return self.ingest.cpu_s / self.calls * 1e6 if self.calls else 0.0

    @property
    def checked(self) -> bool | None:
        """Whether ``identity check`` passed (None: not run)."""
        return None if self.check is None else self.check.status == 0

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain data."""
        data = asdict(self)
        data["calls_per_s"] = self.rate
        data["calls_per_cpu_s"] = self.calls / self.ingest.cpu_s if self.ingest.cpu_s else None
        data["cpu_us_per_call"] = self.cpu_per_call_us
        data["check_passed"] = self.checked
        data["floor_calls_per_cpu_s"] = (
            self.calls / self.floor.cpu_s if self.floor is not None and self.floor.cpu_s else None
        )
        data["floor_share"] = self.floor_share
        return data

    def text(self) -> str:
        """Return the result as a small table."""
        from tabulate import tabulate  # type: ignore[import-untyped]

        ing, gen = self.ingest, self.generate
        rows = [
            ("calls", f"{self.calls:,} ({self.shape})"),
            ("ingest wall time", f"{ing.wall_s:,.1f} s"),
            (
                "ingest CPU time (user + sys)",
                f"{ing.cpu_s:,.1f} s ({ing.user_s:,.1f} + {ing.system_s:,.1f})",
            ),
            ("calls/s (wall)", f"{self.rate:,.0f}"),
            ("calls/s (CPU)", f"{self.calls / ing.cpu_s:,.0f}" if ing.cpu_s else "-"),
            ("ingest peak RSS", f"{ing.max_rss / 2**20:,.1f} MiB"),
            ("identity check", {None: "not run", True: "passed", False: "FAILED"}[self.checked]),
            ("database size", f"{self.db_bytes / 2**20:,.1f} MiB"),
            ("lines file size", f"{self.lines_bytes / 2**20:,.1f} MiB"),
            (
                "generate wall time",
                f"{gen.wall_s:,.1f} s (peak RSS {gen.max_rss / 2**20:,.1f} MiB)",
            ),
        ]
        table = str(tabulate(rows, tablefmt="github", headers=("figure", "value")))
        return f"{table}\n\nidentity ingest said: {self.summary}"


def median_run(runs: Sequence[ProcessFigures]) -> ProcessFigures:
    """Return the run of median CPU time (the lower of the two middle ones of an even count).

    Examples
    --------
    >>> runs = [ProcessFigures((), 0, 1.0, cpu, 0.0, 0, "") for cpu in (3.0, 1.0, 2.0, 9.0)]
    >>> median_run(runs).user_s
    2.0
    """
    if not runs:
        raise ValueError("no runs")
    return sorted(runs, key=lambda figures: figures.cpu_s)[(len(runs) - 1) // 2]


def _db_bytes(db: Path) -> int:
    return sum(
        Path(f"{db}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{db}{suffix}").exists()
    )


def run(
    calls: int,
    *,
    shape: str = "issue2",
    seed: int = 0,
    workdir: str | None = None,
    keep: bool = False,
    progress: IO[str] | None = sys.stderr,
    check: bool = False,
    ingest_args: Sequence[str] = (),
    floor: bool = False,
    repeat: int = 1,
) -> ScaleResult:
    """Generate `calls` calls to a file, then ``identity ingest`` them into a new database.

    With `check`, ``identity check`` of the database follows (its figures in
    :attr:`ScaleResult.check`); with `floor`, the floor on the same lines (its figures in
    :attr:`ScaleResult.floor`). `ingest_args` are added to the ingest's command line
    (``["--batch-size", "50000"]``). With `repeat`, the ingest (into a new database each
    time) and the floor run that many times, in turns, and the run of median CPU time of
    each is the result's (every run is kept: :attr:`ScaleResult.ingest_runs`): on a shared
    machine one run can be 20% off.

    Raises
    ------
    RuntimeError
        If either step fails.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    lines, db = tmp / f"{shape}-{calls}.url", tmp / f"{shape}-{calls}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    python = sys.executable
    generate_argv = [
        python,
        "-m",
        "bench",
        "generate",
        "--calls",
        str(calls),
        "--shape",
        shape,
        "--seed",
        str(seed),
        "-o",
        str(lines),
    ]
    ingest_argv = [python, "-m", "identity.cli", "ingest", str(lines), "--db", str(db)]
    ingest_argv += list(ingest_args)
    check_argv = [python, "-m", "identity.cli", "check", "--db", str(db)]
    floor_db = tmp / f"{shape}-{calls}.floor.db"
    floor_argv = [
        python,
        "-c",
        "import sys; from bench import subjects; "
        "print(subjects.floor_ingest(subjects.read_lines(sys.argv[1]), sys.argv[2]), 'rows')",
        str(lines),
        str(floor_db),
    ]

    def say(message: str) -> None:
        if progress is not None:
            print(f"[bench scale] {message}", file=progress, flush=True)

    try:
        say(f"$ {shlex.join(generate_argv)}")
        generate = run_measured(generate_argv)
        if generate.status != 0:
            raise RuntimeError(f"generate failed ({generate.status}): {generate.output[-2000:]}")
        say(f"  {generate.wall_s:,.1f} s")
        ingests: list[ProcessFigures] = []
        floors: list[ProcessFigures] = []
        for turn in range(repeat):
            for suffix in ("", "-wal", "-shm"):  # each run into a new database
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            say(f"$ {shlex.join(ingest_argv)}" + (f"  # run {turn + 1}" if repeat > 1 else ""))
            ingest = run_measured(ingest_argv)
            if ingest.status != 0:
                raise RuntimeError(f"ingest failed ({ingest.status}): {ingest.output[-2000:]}")
            per_cpu = calls / ingest.cpu_s if ingest.cpu_s else 0.0
            say(f"  {ingest.wall_s:,.1f} s ({per_cpu:,.0f} calls per CPU second)")
            ingests.append(ingest)
            if floor:
                say(f"$ {shlex.join(floor_argv)}  # the floor")
                floor_db.unlink(missing_ok=True)
                floored = run_measured(floor_argv)
                if floored.status != 0:
                    raise RuntimeError(f"floor failed ({floored.status}): {floored.output[-2000:]}")
                say(
                    f"  {floored.wall_s:,.1f} s "
                    f"({calls / floored.cpu_s if floored.cpu_s else 0:,.0f} calls per CPU second)"
                )
                floors.append(floored)
        ingest = median_run(ingests)
        summaries = [line for line in ingest.output.splitlines() if " calls: " in line]
        checked = None
        if check:
            say(f"$ {shlex.join(check_argv)}")
            checked = run_measured(check_argv)
            say(f"  exit {checked.status}, {checked.wall_s:,.1f} s")
        return ScaleResult(
            calls=calls,
            shape=shape,
            lines_bytes=lines.stat().st_size,
            db_bytes=_db_bytes(db),
            generate=generate,
            ingest=ingest,
            summary=summaries[-1] if summaries else ingest.output[-300:],
            check=checked,
            floor=median_run(floors) if floors else None,
            ingest_runs=tuple(ingests),
            floor_runs=tuple(floors),
        )
    finally:
        if not keep:
            if workdir:
                for path in (lines, db, Path(f"{db}-wal"), Path(f"{db}-shm"), floor_db):
                    path.unlink(missing_ok=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class ScaleSeries:
    """Scale runs of several sizes of the same workload, in one command."""

    results: tuple[ScaleResult, ...]

    @property
    def growth(self) -> float | None:
        """CPU per call at the largest size over that at the smallest (None: one size)."""
        if len(self.results) < 2:
            return None
        small = min(self.results, key=lambda r: r.calls)
        large = max(self.results, key=lambda r: r.calls)
        if not small.cpu_per_call_us:
            return None
        return large.cpu_per_call_us / small.cpu_per_call_us

    def as_dict(self) -> dict[str, Any]:
        """Return the series as plain data."""
        return {
            "sizes": [r.as_dict() for r in self.results],
            "cpu_per_call_growth": self.growth,
            "growth_goal": GROWTH_GOAL,
            "floor_share": self.results[0].floor_share if self.results else None,
            "floor_goal": FLOOR_GOAL,
        }

    def text(self) -> str:
        """Return the series as one table, a column per size, and the growth of CPU per call."""
        from tabulate import tabulate

        results = sorted(self.results, key=lambda r: r.calls)

        def mib(value: float) -> str:
            return f"{value / 2**20:,.0f} MiB"

        figures: list[tuple[str, Any]] = [
            ("calls/s (CPU)", lambda r: f"{r.cpu_rate:,.0f}"),
            ("calls/s (wall)", lambda r: f"{r.rate:,.0f}"),
            ("CPU per call", lambda r: f"{r.cpu_per_call_us:,.1f} us"),
            (
                "CPU per call, every run",
                lambda r: (
                    ", ".join(f"{run.cpu_s / r.calls * 1e6:,.1f}" for run in r.ingest_runs) + " us"
                ),
            ),
            ("CPU time (user + sys)", lambda r: f"{r.ingest.cpu_s:,.1f} s"),
            ("system time", lambda r: f"{r.ingest.system_s:,.1f} s"),
            ("wall time", lambda r: f"{r.ingest.wall_s:,.1f} s"),
            ("peak RSS", lambda r: mib(r.ingest.max_rss)),
            ("database size", lambda r: mib(r.db_bytes)),
            (
                "identity check",
                lambda r: {None: "not run", True: "passed", False: "FAILED"}[r.checked],
            ),
            (
                "floor calls/s (CPU)",
                lambda r: f"{r.calls / r.floor.cpu_s:,.0f}" if r.floor and r.floor.cpu_s else "-",
            ),
            (
                "ingest / floor (calls per CPU s)",
                lambda r: "-" if r.floor_share is None else f"{r.floor_share:.0%}",
            ),
            (
                "ingest / floor, every turn",
                lambda r: ", ".join(f"{share:.0%}" for share in r.turn_shares) or "-",
            ),
        ]
        headers = ["figure", *(f"{r.calls:,} calls" for r in results)]
        rows = [[name, *(show(r) for r in results)] for name, show in figures]
        table = str(tabulate(rows, headers=headers, tablefmt="github"))
        growth = self.growth
        if growth is not None:
            verdict = "met" if growth <= GROWTH_GOAL else "NOT met"
            table += (
                f"\n\nCPU per call at {results[-1].calls:,} / at {results[0].calls:,} calls: "
                f"{growth:.2f}x (goal <= {GROWTH_GOAL}x: {verdict})"
            )
        share = results[0].floor_share
        if share is not None:
            verdict = "met" if share >= FLOOR_GOAL else "NOT met"
            table += (
                f"\nat {results[0].calls:,} calls, ingest reaches {share:.0%} of the floor's "
                f"calls per CPU second (goal >= {FLOOR_GOAL:.0%}: {verdict})"
            )
        return table + f"\n\nworkload: {results[0].shape}; ingest said: {results[-1].summary}"


def run_sizes(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    shape: str = "issue2",
    seed: int = 0,
    workdir: str | None = None,
    keep: bool = False,
    check: bool = True,
    ingest_args: Sequence[str] = (),
    progress: IO[str] | None = sys.stderr,
    floor: bool = True,
    repeat: int = 1,
) -> ScaleSeries:
    """Run `run` for each size in `sizes` (one after the other, never two at once).

    With `floor`, the floor runs on the lines of the first (smallest) size, where its goal is.
    `repeat` is passed to `run`: the figures of each size are then those of its median run.

    Raises
    ------
    RuntimeError
        If a step of any size fails.
    """
    results = [
        run(
            calls,
            shape=shape,
            seed=seed,
            workdir=workdir,
            keep=keep,
            progress=progress,
            check=check,
            ingest_args=ingest_args,
            floor=floor and i == 0,  # the goal is at the smallest size
            repeat=repeat,
        )
        for i, calls in enumerate(sizes)
    ]
    return ScaleSeries(tuple(results))
