"""``python -m bench report``: every comparison in one run, as a table with the goals.

Each figure is shown with its reference, measured in the same run, and their ratio, so the
result does not depend on how fast (or how busy) the machine is. Times are medians over
`repeat` runs of CPU time (`time.process_time`), with wall time beside them; goals are judged
on CPU time except the reopen goal, a latency, judged on wall time.

Sections (sizes are the goal sizes by default):

* union-find: ``--pairs`` alias pairs over ``0.8 * pairs`` identities, union all then
  ``to_sets()``: `identity.core.UnionFind` vs `networkx.utils.UnionFind` vs
  `scipy.sparse.csgraph.connected_components` (interning included); the same partition;
  memory by tracemalloc. Ours is timed as this installation runs ``union_pairs`` (its
  compiled speedups when a C compiler built them at install time, else the ``identity[accel]``
  extra's SciPy when installed, else pure Python), on the pure-Python fallback beside it (as
  with ``IDENTITY_PURE_PYTHON=1``), and with one ``union`` call per pair (the
  networkx-compatible API). The goal is judged on the installed path, as issue 13 allows an
  optional compiled accelerator; the partition check covers every path.
* ingest: ``identity ingest`` of ``--calls`` `issue2` query strings vs the floor
  (`bench.subjects.floor_ingest`), each in a child process (peak RSS per measurement);
  ``engine._cache`` bytes per identity vs a networkx UnionFind of the same identities.
* reopen: a database of ``--identities`` identities, opened in a fresh process, and the
  first ``person_of``; then lookup rates.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench import subjects
from bench.measure import RoundRobin, Timing, run_child, traced

#: Goals of issue #5.
UF_SPEEDUP = 2.0
INGEST_SHARE = 0.25
MEMORY_RATIO = 2.0
REOPEN_SECONDS = 2.0
#: Lookups timed per kind after the reopen.
LOOKUPS = 1000

HEADERS = ("measurement", "figure", "reference", "reference figure", "ratio", "goal", "result")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report table."""

    measurement: str
    figure: str
    reference: str = ""
    reference_figure: str = ""
    ratio: str = ""
    goal: str = ""
    #: True: goal met, False: missed, None: no goal on this row.
    passed: bool | None = None

    def cells(self) -> tuple[str, ...]:
        """Return the row as table cells."""
        result = "" if self.passed is None else ("pass" if self.passed else "FAIL")
        return (
            self.measurement,
            self.figure,
            self.reference,
            self.reference_figure,
            self.ratio,
            self.goal,
            result,
        )


@dataclass
class Report:
    """Everything one run measured: table rows by section, and the raw figures."""

    sizes: dict[str, int]
    sections: list[tuple[str, list[Row]]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def goals(self) -> list[Row]:
        """Return the rows that carry a goal."""
        return [row for _, rows in self.sections for row in rows if row.passed is not None]

    def table(self, tablefmt: str = "github") -> str:
        """Return the report as text: one table, a title row per section."""
        from tabulate import tabulate  # type: ignore[import-untyped]

        cells: list[tuple[str, ...]] = []
        for title, rows in self.sections:
            cells.append((f"**{title}**", "", "", "", "", "", ""))
            cells.extend(row.cells() for row in rows)
        goals = self.goals()
        met = sum(1 for row in goals if row.passed)
        text = str(tabulate(cells, headers=HEADERS, tablefmt=tablefmt, disable_numparse=True))
        return f"{text}\n\ngoals met: {met} of {len(goals)}"

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data (for ``--json``)."""
        return {
            "sizes": self.sizes,
            "sections": [
                {"title": title, "rows": [asdict(row) for row in rows]}
                for title, rows in self.sections
            ],
            "goals_met": sum(1 for row in self.goals() if row.passed),
            "goals": len(self.goals()),
            "raw": self.raw,
        }


# --- formatting ------------------------------------------------------------------------------


def rate(n: int, seconds: float) -> str:
    """Format ``n / seconds`` as a rate.

    Examples
    --------
    >>> rate(1_000_000, 4.0)
    '250,000/s'
    """
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "inf/s"


def rates(n: int, timing: Timing) -> str:
    """Format the CPU rate with the wall rate beside it."""
    return f"{rate(n, timing.cpu_median)} (wall {rate(n, timing.wall_median)})"


def ratio(a: float, b: float) -> float:
    """Return ``a / b`` (inf when b is 0)."""
    return a / b if b else float("inf")


def mib(n: float) -> str:
    """Format bytes as MiB.

    Examples
    --------
    >>> mib(3 * 2**20)
    '3.0 MiB'
    """
    return f"{n / 2**20:,.1f} MiB"


def seconds(s: float) -> str:
    """Format seconds, as milliseconds under one second.

    Examples
    --------
    >>> seconds(0.0123), seconds(12.3)
    ('12.3 ms', '12.30 s')
    """
    return f"{s * 1000:,.1f} ms" if s < 1 else f"{s:,.2f} s"


class Progress:
    """One line on stderr per step (the full report takes many minutes)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream

    def __call__(self, message: str) -> None:
        """Print `message`, if not quiet."""
        if self.stream is not None:
            print(f"[bench report] {message}", file=self.stream, flush=True)


# --- union-find ------------------------------------------------------------------------------


@contextmanager
def pure_python() -> Iterator[None]:
    """Run the block with `identity.core`'s accelerator off, as on a plain install.

    Examples
    --------
    >>> from identity import core
    >>> with pure_python():
    ...     core._accelerator() is None
    True
    """
    from identity.core import PURE_PYTHON_ENV

    before = os.environ.get(PURE_PYTHON_ENV)
    os.environ[PURE_PYTHON_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PURE_PYTHON_ENV]
        else:
            os.environ[PURE_PYTHON_ENV] = before


def partition_core_pure(pairs: list[subjects.Pair]) -> subjects.Partition:
    """`bench.subjects.partition_core` without the accelerator (what a plain install runs)."""
    with pure_python():
        return subjects.partition_core(pairs)


def accelerated() -> bool:
    """Whether `identity.core`'s SciPy accelerator (``identity[accel]``) is installed and on."""
    from identity import core

    return core._accelerator() is not None


def compiled() -> bool:
    """Whether `identity.core`'s compiled speedups were built at install time, and are on."""
    from identity import core

    return core._speedups() is not None


def installed_path() -> str:
    """Name the path `UnionFind.union_pairs` takes on this installation.

    Examples
    --------
    >>> with pure_python():
    ...     installed_path()
    'pure Python'
    """
    if compiled():
        return "compiled speedups"
    return "identity[accel], SciPy" if accelerated() else "pure Python"


def union_find_subjects() -> dict[str, Callable[[list[subjects.Pair]], subjects.Partition]]:
    """Return what the union-find section times, by name.

    ``core`` is `UnionFind.union_pairs` as this installation runs it (the compiled speedups
    when they were built, else SciPy when ``identity[accel]`` is installed, else pure
    Python); ``core-pure`` the same with both off, when that is another path; ``core-each``
    one ``union`` call per pair.
    """
    chosen: dict[str, Callable[[list[subjects.Pair]], subjects.Partition]] = {
        "core": subjects.partition_core
    }
    if installed_path() != "pure Python":
        chosen["core-pure"] = partition_core_pure
    chosen["core-each"] = subjects.partition_core_each
    chosen["networkx"] = subjects.partition_networkx
    chosen["scipy"] = subjects.partition_scipy
    return chosen


def union_find_section(report: Report, n_pairs: int, repeat: int, say: Progress) -> None:
    """Time, check and size core vs networkx vs scipy on the same alias pairs."""
    n_ids = max(2, int(n_pairs * subjects.IDENTITIES_PER_PAIR))
    say(f"union-find: making {n_pairs:,} pairs over {n_ids:,} identities")
    pairs = subjects.alias_pairs(n_pairs, n_ids)
    distinct = len({x for pair in pairs for x in pair})
    chosen = union_find_subjects()
    for partition in chosen.values():
        partition(pairs[:100])  # warm up: lazy imports (scipy) are not part of the figures
    runner = RoundRobin(repeat)
    say(f"union-find: timing {', '.join(chosen)} x{repeat} (round-robin)")
    timings = runner.run({name: partial(fn, pairs) for name, fn in chosen.items()})
    partitions = {name: subjects.canonical(runner.results[name]) for name in chosen}
    runner.results.clear()
    first = partitions["networkx"]
    same = all(partition == first for partition in partitions.values())
    n_sets = len(first)
    del partitions, first

    say("union-find: memory (tracemalloc; slow)")
    memory: dict[str, dict[str, int]] = {}
    builders: dict[str, Callable[[], Any]] = {
        "core": lambda: subjects.union_find_core(pairs),
        "networkx": lambda: subjects.union_find_networkx(pairs),
    }
    for name, build in builders.items():
        uf, built = traced(build)
        _, listed = traced(partial(_to_sets, uf))
        memory[name] = {
            "retained": built.retained,
            "peak": max(built.peak, built.retained + listed.peak),
        }
        del uf
    _, scipy_mem = traced(lambda: subjects.partition_scipy(pairs))
    memory["scipy"] = {"retained": 0, "peak": scipy_mem.peak}

    nx, sp = timings["networkx"], timings["scipy"]
    per_id = {name: memory[name]["retained"] / distinct for name in ("core", "networkx")}
    mem_ratio = ratio(per_id["core"], per_id["networkx"])

    def versus_networkx(name: str, what: str, goal: bool) -> Row:
        mine = timings[name]
        speedup = ratio(nx.cpu_median, mine.cpu_median)
        return Row(
            what,
            rates(n_pairs, mine),
            "networkx UnionFind",
            rates(n_pairs, nx),
            f"{speedup:.2f}x (wall {ratio(nx.wall_median, mine.wall_median):.2f}x)",
            f">= {UF_SPEEDUP:g}x throughput" if goal else "",
            speedup >= UF_SPEEDUP if goal else None,
        )

    # the goal is judged on the path this installation runs (issue 13 accepts an optional
    # compiled accelerator with the pure-Python code as the fallback); the fallback is shown
    rows = [versus_networkx("core", f"core UnionFind.union_pairs, {installed_path()}", True)]
    if "core-pure" in timings:
        rows.append(versus_networkx("core-pure", "core UnionFind.union_pairs, pure Python", False))
    rows += [
        versus_networkx("core-each", "core UnionFind, one union() call per pair", False),
        Row(
            "scipy connected_components (interning incl.)",
            rates(n_pairs, sp),
            "networkx UnionFind",
            rates(n_pairs, nx),
            f"{ratio(nx.cpu_median, sp.cpu_median):.2f}x "
            f"(wall {ratio(nx.wall_median, sp.wall_median):.2f}x)",
        ),
        Row(
            "partition: core, networkx, scipy",  # core: each of its paths
            f"{n_sets:,} sets of {distinct:,} identities",
            goal="same partition",
            passed=same,
        ),
        Row(
            "core UnionFind memory, after union (tracemalloc)",
            f"{per_id['core']:.1f} B/identity",
            "networkx UnionFind",
            f"{per_id['networkx']:.1f} B/identity",
            f"{mem_ratio:.2f}x",
            f"<= {MEMORY_RATIO:g}x bytes/identity",
            mem_ratio <= MEMORY_RATIO,
        ),
        Row(
            "core UnionFind peak, union + to_sets (tracemalloc)",
            mib(memory["core"]["peak"]),
            "networkx UnionFind",
            mib(memory["networkx"]["peak"]),
            f"{ratio(memory['core']['peak'], memory['networkx']['peak']):.2f}x",
        ),
        Row(
            "scipy peak, interning + components + sets",
            mib(memory["scipy"]["peak"]),
            "networkx UnionFind",
            mib(memory["networkx"]["peak"]),
            f"{ratio(memory['scipy']['peak'], memory['networkx']['peak']):.2f}x",
        ),
    ]
    title = (
        f"union-find: {n_pairs:,} alias pairs over {distinct:,} identities "
        f"(union all, then to_sets; median of {repeat})"
    )
    report.sections.append((title, rows))
    report.raw["union_find"] = {
        "pairs": n_pairs,
        "identities": distinct,
        "sets": n_sets,
        "same_partition": same,
        "path": installed_path(),
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "memory": memory,
    }


def _to_sets(uf: Any) -> list[set[str]]:
    return list(uf.to_sets())


# --- ingest ----------------------------------------------------------------------------------


def _median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in results)


def _timing(results: list[dict[str, Any]]) -> Timing:
    return Timing(tuple(r["cpu_s"] for r in results), tuple(r["wall_s"] for r in results))


def _fresh(path: Path) -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


def ingest_section(report: Report, n_calls: int, repeat: int, workdir: Path, say: Progress) -> Path:
    """Time ``identity ingest`` vs the floor on the same lines; return the engine's database."""
    lines = workdir / "issue2.url"
    say(f"ingest: writing {n_calls:,} issue2 lines to {lines}")
    written = subjects.write_issue2(lines, n_calls)
    floors: list[dict[str, Any]] = []
    engines: list[dict[str, Any]] = []
    db = workdir / "engine.db"
    for i in range(repeat):
        say(f"ingest: floor {i + 1}/{repeat}")
        floors.append(run_child("floor", {"lines": str(lines), "db": _fresh(workdir / "floor.db")}))
        say(f"ingest: identity ingest {i + 1}/{repeat}")
        engines.append(
            run_child("ingest", {"lines": str(lines), "db": _fresh(db), "memory": i == 0})
        )
    floor, engine = _timing(floors), _timing(engines)
    share = ratio(floor.cpu_median, engine.cpu_median)  # engine rate / floor rate
    wall_share = ratio(floor.wall_median, engine.wall_median)
    agree = all(r["rows"] == written for r in floors) and all(
        r["calls"] == written for r in engines
    )
    cache = engines[0]
    n_ids = int(cache["identities"])
    sizes = cache["bytes"]
    per_id = {name: (b / n_ids if n_ids and b >= 0 else float("nan")) for name, b in sizes.items()}
    cache_ratio = ratio(per_id["cache"], per_id["networkx"])
    engine_rss, floor_rss = _median(engines, "max_rss"), _median(floors, "max_rss")
    rows = [
        Row(
            "identity ingest",
            rates(written, engine),
            "floor: parse_qsl + one executemany",
            rates(written, floor),
            f"{share:.0%} (wall {wall_share:.0%})",
            f">= {INGEST_SHARE:.0%} of the floor's rate",
            share >= INGEST_SHARE,
        ),
        Row(
            "lines applied: identity ingest, floor",
            f"{engines[-1]['calls']:,}, {floors[-1]['rows']:,} of {written:,}",
            goal="same number of lines",
            passed=agree,
        ),
        Row(
            "identity ingest peak RSS (process)",
            f"{mib(engine_rss)} (at start {mib(_median(engines, 'baseline_rss'))})",
            "floor",
            f"{mib(floor_rss)} (at start {mib(_median(floors, 'baseline_rss'))})",
            f"{ratio(engine_rss, floor_rss):.2f}x",
        ),
        Row(
            "identity ingest RSS at the end: private, file-backed (mmap)",
            ", ".join(mib(engines[-1]["rss_end"].get(k, 0)) for k in ("RssAnon", "RssFile"))
            if engines[-1].get("rss_end")
            else "-",
        ),
        Row(
            f"identity ingest peak RSS per identity ({n_ids:,} identities)",
            f"{engine_rss / n_ids:,.0f} B/identity" if n_ids else "-",
        ),
        Row(
            "engine._cache after the ingest (getsizeof)",
            f"{per_id['cache']:.1f} B/identity",
            "networkx UnionFind, same identities",
            f"{per_id['networkx']:.1f} B/identity",
            f"{cache_ratio:.2f}x",
            f"<= {MEMORY_RATIO:g}x bytes/identity",
            cache_ratio <= MEMORY_RATIO,
        ),
        Row(
            "core UnionFind, same identities (getsizeof)",
            f"{per_id['core']:.1f} B/identity",
            "networkx UnionFind, same identities",
            f"{per_id['networkx']:.1f} B/identity",
            f"{ratio(per_id['core'], per_id['networkx']):.2f}x",
        ),
    ]
    title = (
        f"ingest: {written:,} issue2 query-string calls into a file database "
        f"(child process each; median of {repeat})"
    )
    report.sections.append((title, rows))
    report.raw["ingest"] = {
        "calls": written,
        "floor": floors,
        "engine": engines,
        "identities": n_ids,
    }
    return db


# --- reopen ----------------------------------------------------------------------------------


def reopen_section(
    report: Report, n_ids: int, repeat: int, workdir: Path, db: Path | None, say: Progress
) -> None:
    """Reopen a database of exactly `n_ids` identities in fresh processes; time lookups."""
    from identity.engine import Engine

    target = db if db is not None else workdir / "reopen.db"
    if db is not None:
        with Engine(db) as engine:
            if engine.counts().get("identities", 0) > n_ids:
                target = workdir / "reopen.db"
    if target != db:
        _fresh(target)
    say(f"reopen: building a database of {n_ids:,} identities ({target.name})")
    have = subjects.build_db(target, n_ids)
    sample = subjects.sample_identities(target, LOOKUPS + repeat, seed=1)
    results = []
    for i in range(repeat):
        say(f"reopen: fresh process {i + 1}/{repeat}")
        results.append(
            run_child(
                "reopen",
                {"db": str(target), "first": sample[i], "sample": sample[repeat:]},
            )
        )
    first = _timing(results)
    wall = first.wall_median
    rows = [
        Row(
            "Engine(path) + first person_of",
            f"{seconds(wall)} wall (cpu {seconds(first.cpu_median)})",
            goal=f"< {REOPEN_SECONDS:g} s",
            passed=wall < REOPEN_SECONDS,
        ),
        Row(
            "of which Engine(path)",
            f"{seconds(_median(results, 'open_wall_s'))} wall "
            f"(cpu {seconds(_median(results, 'open_cpu_s'))})",
        ),
        Row(
            "import identity.engine (before the above)",
            f"{seconds(_median(results, 'import_wall_s'))} wall "
            f"(cpu {seconds(_median(results, 'import_cpu_s'))})",
        ),
        Row(
            "reopen process peak RSS",
            f"{mib(_median(results, 'max_rss'))} "
            f"(before importing identity {mib(_median(results, 'baseline_rss'))})",
        ),
    ]
    n = results[0]["n_lookups"]
    for name in results[0]["lookups"]:
        cpu = statistics.median(r["lookups"][name]["cpu_s"] for r in results)
        wall_s = statistics.median(r["lookups"][name]["wall_s"] for r in results)
        what = "same_person (consecutive pairs)" if name == "same_person" else name
        rows.append(Row(f"{what} lookups", f"{rate(n, cpu)} (wall {rate(n, wall_s)})"))
    title = (
        f"reopen: database of {have:,} identities, fresh process each "
        f"(median of {repeat}; {n:,} random lookups of each kind after)"
    )
    report.sections.append((title, rows))
    report.raw["reopen"] = {"identities": have, "runs": results}


# --- command ---------------------------------------------------------------------------------


def run(
    *,
    calls: int = 1_000_000,
    pairs: int = 1_000_000,
    identities: int = 1_000_000,
    repeat: int = 3,
    ingest_repeat: int = 1,
    workdir: str | None = None,
    progress: IO[str] | None = sys.stderr,
) -> Report:
    """Run every section; return the report.

    Parameters
    ----------
    calls, pairs, identities : int
        Sizes of the ingest, the union-find comparison and the reopened database; 0 skips
        that section.
    repeat : int
        Repeats of the union-find timings and of the reopen.
    ingest_repeat : int
        Repeats of the ingest and the floor (each a child process).
    workdir : str, optional
        Where to keep the files (default: a temporary directory, removed afterwards).
    progress : text file or None
        Where to say what is running.
    """
    say = Progress(progress)
    report = Report({"calls": calls, "pairs": pairs, "identities": identities})
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-")) if workdir is None else Path(workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if pairs:
            union_find_section(report, pairs, repeat, say)
        db = ingest_section(report, calls, ingest_repeat, tmp, say) if calls else None
        if identities:
            reopen_section(report, identities, repeat, tmp, db, say)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return report
