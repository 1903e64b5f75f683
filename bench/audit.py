"""``python -m bench.audit``: the audit's cost against ``identity check``, in the same run.

For each size (default 1M calls of the ``issue2`` shape), the calls are generated and ingested
once, then these commands run round-robin, each in its own child process so that its CPU time
and peak RSS (``os.wait4``) are its own:

- ``identity check --db DB`` (the reference);
- ``identity audit --db DB`` and ``... --html OUT``: the audit of an existing database;
- ``identity audit FILE`` and ``... --html OUT``: the audit of the file, ingest included.

It prints medians and the ratio of each to the check's CPU, and peak RSS per identity, so that
sizes can be compared: memory should grow with identities, not calls.

Examples
--------
``python -m bench.audit`` (1M calls, 3 rounds); ``python -m bench.audit --calls 250k,1M``;
``python -m bench.audit --calls 20k --rounds 1 --no-files`` (quick);
``python -m bench.audit --shape retries --no-files`` (many calls per identity: memory follows
identities).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench import workloads
from bench.__main__ import _count
from bench.measure import child_env

RECEIVED = "1700000000"


@dataclass
class Figures:
    """Repeats of one command: CPU and wall seconds, peak RSS in bytes."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": self.cpu,
            "wall_s": self.wall,
            "max_rss_bytes": self.rss,
            "cpu_median_s": statistics.median(self.cpu),
            "wall_median_s": statistics.median(self.wall),
            "max_rss_median_bytes": int(statistics.median(self.rss)),
        }


def _child(argv: list[str]) -> tuple[float, float, int]:
    """Run ``python -m identity.cli ARGV``; return its CPU s, wall s and peak RSS bytes."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "identity.cli", *argv],
            child_env(),
            file_actions=[(os.POSIX_SPAWN_DUP2, sink.fileno(), 1)],
        )
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"identity {' '.join(argv)} exited with {status}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss * 1024


def measure(
    calls: int, rounds: int, files: bool, folder: str, shape: str = "issue2"
) -> dict[str, Any]:
    """Generate `calls`, ingest them, and time every subject `rounds` times round-robin."""
    lines = os.path.join(folder, f"calls-{calls}.url")
    workloads.write(workloads.generate(shape, calls, 0, None), lines, fmt="url")
    db = os.path.join(folder, f"audit-{calls}.db")
    _child(["ingest", lines, "--db", db, "-q", "--received", RECEIVED])
    html = os.path.join(folder, "audit.html")
    subjects = {
        "identity check (reference)": ["check", "--db", db],
        "audit --db": ["audit", "--db", db, "-q"],
        "audit --db --html": ["audit", "--db", db, "--html", html, "-q"],
    }
    if files:
        kept = os.path.join(folder, "kept.db")
        subjects["audit FILE"] = ["audit", lines, "-q", "--received", RECEIVED]
        subjects["audit FILE --html"] = ["audit", lines, "--html", html, "-q",
                                         "--received", RECEIVED, "--db", kept]  # fmt: skip
    figures = {name: Figures() for name in subjects}
    for _ in range(rounds):
        for name, argv in subjects.items():
            if os.path.exists(os.path.join(folder, "kept.db")):
                os.remove(os.path.join(folder, "kept.db"))
            cpu, wall, rss = _child(argv)
            figures[name].cpu.append(cpu)
            figures[name].wall.append(wall)
            figures[name].rss.append(rss)
    import sqlite3

    with sqlite3.connect(db) as conn:
        identities, events = conn.execute(
            "SELECT (SELECT count(*) FROM identities), (SELECT count(*) FROM events)"
        ).fetchone()
    return {
        "shape": shape,
        "calls": calls,
        "identities": identities,
        "events": events,
        "figures": {name: f.as_dict() for name, f in figures.items()},
    }


def text(result: dict[str, Any]) -> str:
    """Return one size's figures as a Markdown table."""
    figures = result["figures"]
    reference = figures["identity check (reference)"]["cpu_median_s"]
    out = [
        f"{result['calls']:,} calls ({result['shape']}): {result['identities']:,} identities, "
        f"{result['events']:,} events",
        "",
        "| command | CPU median | wall median | / check (CPU) | peak RSS | RSS / identity |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in figures.items():
        rss = f["max_rss_median_bytes"]
        out.append(
            f"| `{name}` | {f['cpu_median_s']:.2f} s | {f['wall_median_s']:.2f} s | "
            f"{f['cpu_median_s'] / reference:.2f}x | {rss / 2**20:,.0f} MiB | "
            f"{rss / max(result['identities'], 1):,.0f} B |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.audit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", default="1M", help="comma-separated sizes [1M]")
    parser.add_argument("--shape", default="issue2", help="workload shape [issue2]")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each command [3]")
    parser.add_argument("--no-files", action="store_true", help="skip the audits of files")
    parser.add_argument("--json", action="store_true", help="print JSON, not Markdown")
    args = parser.parse_args(argv)
    sizes = [_count(x) for x in args.calls.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        for calls in sizes:
            result = measure(calls, args.rounds, not args.no_files, folder, args.shape)
            results.append(result)
            if not args.json:
                print(text(result), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
