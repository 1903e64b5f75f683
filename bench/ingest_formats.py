"""Ingest throughput and peak memory per input format, in one run.

Writes one seeded workload (``bench.workloads``, shape ``mixed``) as three files -- an access
log (Combined Log Format, the beacon's layout), Kissmetrics export JSON lines (with ``_k``)
and query-string lines -- then ingests each into a fresh database with ``identity ingest``
in its own process, and reports calls/s (wall and CPU) and peak resident memory
(``ru_maxrss`` of that process). It also times the reader alone (parsing, no database).

Usage::

    PYTHONPATH=. python bench/ingest_formats.py --calls 1000000 [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from bench import workloads

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Run in the child: ingest one file, print wall and CPU time and peak memory as JSON.
_CHILD = """
import json, resource, sys, time
from identity.cli import main
from identity.io.sources import Reader
mode, path, db = sys.argv[1:4]
wall, cpu = time.perf_counter(), time.process_time()
if mode == "read":
    with Reader(path, tenant="K") as reader:
        calls = sum(1 for _ in reader)
    code = 0
else:
    code = main(["ingest", path, "--db", db, "-q"])
    calls = None
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": code, "calls": calls, "wall": time.perf_counter() - wall,
                  "cpu": time.process_time() - cpu, "maxrss_kib": usage.ru_maxrss}))
"""


def _clf_time(t: int) -> str:
    g = time.gmtime(t)
    return (
        f"{g.tm_mday:02d}/{_MONTHS[g.tm_mon - 1]}/{g.tm_year:04d}:"
        f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} +0000"
    )


def to_access(call: dict[str, str], received: int, host: int) -> str:
    """Return `call` as the beacon's Combined Log Format line, received at `received`."""
    return (
        f"10.0.{host // 256 % 256}.{host % 256} - - [{_clf_time(received)}] "
        f'"GET {workloads.to_url(call)} HTTP/1.1" 200 43 "https://shop.example.com/" '
        f'"Mozilla/5.0 (X11; Linux x86_64)"'
    )


def _lines(n: int, seed: int) -> Iterator[tuple[str, str, str]]:
    received = workloads.EPOCH
    for i, call in enumerate(workloads.generate("mixed", n, seed)):
        received = max(received, int(float(call["_t"])) if "_d" not in call else received)
        yield (
            to_access(call, received, i % 5000),
            workloads.to_km(call, include_key=True),
            workloads.to_url(call),
        )


def generate(folder: str, n: int, seed: int) -> dict[str, str]:
    """Write the three files of `n` calls; return their paths by format."""
    paths = {fmt: os.path.join(folder, f"calls.{fmt}") for fmt in ("access", "km", "url")}
    streams = [open(paths[f], "w", encoding="utf-8", newline="\n") for f in paths]  # noqa: SIM115
    try:
        for triple in _lines(n, seed):
            for stream, line in zip(streams, triple, strict=True):
                stream.write(line + "\n")
    finally:
        for stream in streams:
            stream.close()
    return paths


def measure(mode: str, path: str, db: str) -> dict[str, float]:
    """Run one child process; return its figures."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, path, db],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Generate, ingest, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="work folder [default: a temporary one]")
    parser.add_argument("--keep", action="store_true", help="keep the files and databases")
    parser.add_argument("--no-read", action="store_true", help="skip the reader-only timings")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="identity-bench-")
    os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    paths = generate(folder, args.calls, args.seed)
    print(f"generated {args.calls:,} calls x 3 formats in {time.perf_counter() - started:.0f} s")
    print(f"{'format':<8} {'MB':>6} {'mode':<6} {'calls/s':>9} {'cpu calls/s':>12} "
          f"{'wall s':>7} {'peak RSS MiB':>13}")  # fmt: skip
    for fmt, path in paths.items():
        size = os.path.getsize(path) / 1e6
        modes = ["ingest"] if args.no_read else ["read", "ingest"]
        for mode in modes:
            db = os.path.join(folder, f"{fmt}.db")
            for leftover in (db, db + "-wal", db + "-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)
            figures = measure(mode, path, db)
            print(
                f"{fmt:<8} {size:>6.0f} {mode:<6} {args.calls / figures['wall']:>9,.0f} "
                f"{args.calls / figures['cpu']:>12,.0f} {figures['wall']:>7.1f} "
                f"{figures['maxrss_kib'] / 1024:>13.0f}",
                flush=True,
            )
    if not args.keep:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
