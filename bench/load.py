"""Load figure for the beacon: ``identity serve`` against the same server's ceiling.

Starts ``identity serve`` (durable group commit, access log on, to a file) on a free loopback
port, and the same waitress server with the same threads serving a trivial GIF WSGI app (the
ceiling: HTTP alone, no parsing, no database). Drives both with an asyncio HTTP/1.1 keep-alive
load generator sending requests shaped like the official Python KISSmetrics client
(``GET /e?_k=...&_p=...&_n=...&seq=N&plan=pro&_t=...&_d=1``, every call distinct), in rounds
that alternate ceiling then ours, so that other load on the machine hits both alike. Reports
requests/s, p50/p99 latency and server CPU per request (median of the rounds) and the ratio
(median of the per-round ratios); then stops ``identity serve`` with SIGTERM and checks that
the database holds exactly the calls answered 200: none lost, none twice.

Everything is bounded: ``--requests`` per server and round, ``--duration`` seconds per run.
Only 127.0.0.1 is ever contacted.

Usage::

    python -m bench.load                      # 3 rounds of 10,000 requests, 32 connections
    python -m bench.load --requests 20000 --rounds 5 --connections 64 --threads 64
    python bench/load.py --json               # one JSON object instead of the table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TENANT = "bench"
EPOCH = 1_700_000_000
_LISTENING = re.compile(rb"serving on http://127\.0\.0\.1:(\d+)")
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def request_for(seq: int, port: int) -> bytes:
    """The request the Python KISSmetrics client sends for ``record(person, event, ...)``."""
    query = urlencode(
        {
            "_k": TENANT,
            "_p": f"user{seq % 1000}@example.com",
            "_n": "Viewed Pricing Page",
            "seq": seq,
            "plan": "pro",
            "_t": EPOCH + seq,
            "_d": 1,
        }
    )
    return (
        f"GET /e?{query} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept-Encoding: identity\r\nUser-Agent: bench.load\r\n\r\n"
    ).encode("ascii")


@dataclass
class Run:
    """What one load run saw."""

    name: str
    sent: int = 0
    ok: int = 0
    other: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float | None = None  # the server's user + system CPU during the run
    latencies: list[float] = field(default_factory=list)
    ok_seqs: set[int] = field(default_factory=set)

    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "requests": self.sent,
            "ok": self.ok,
            "non_200": self.other,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.rate(), 1),
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "server_cpu_us_per_request": self.cpu_per_request(),
        }

    def cpu_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.sent:
            return None
        return round(self.cpu_seconds / self.sent * 1e6, 1)


async def _connection(
    port: int, next_seq: Callable[[], int | None], run: Run, record: bool
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while (seq := next_seq()) is not None:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            request = request_for(seq, port)
            started = time.perf_counter()
            run.sent += 1
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = _LENGTH.search(head)
                if match:
                    await reader.readexactly(int(match.group(1)))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                run.errors += 1
                writer.close()
                reader = writer = None
                continue
            elapsed = time.perf_counter() - started
            status = int(head[9:12])
            if record:
                run.latencies.append(elapsed)
            if status == 200:
                run.ok += 1
                run.ok_seqs.add(seq)
            else:
                run.other += 1
            if b"\r\nconnection: close" in head.lower():
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _drive(
    port: int, name: str, first: int, count: int, connections: int, duration: float, record: bool
) -> Run:
    run = Run(name)
    seqs = iter(range(first, first + count))
    deadline = time.monotonic() + duration

    def next_seq() -> int | None:
        if time.monotonic() > deadline:
            return None
        return next(seqs, None)

    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, next_seq, run, record) for _ in range(connections)))
    run.seconds = time.perf_counter() - started
    return run


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def drive(
    port: int,
    name: str,
    *,
    first: int,
    count: int,
    connections: int,
    duration: float,
    pid: int | None = None,
) -> Run:
    """Send requests ``first .. first + count - 1`` over `connections` keep-alive connections."""
    before = _cpu_seconds(pid) if pid is not None else None
    run = asyncio.run(_drive(port, name, first, count, connections, duration, True))
    after = _cpu_seconds(pid) if pid is not None else None
    if before is not None and after is not None:
        run.cpu_seconds = after - before
    return run


def _start(command: Sequence[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink, env=env
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_bytes())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def serve_ceiling(threads: int) -> None:
    """Serve a trivial GIF app with the same waitress settings as ``identity serve``."""
    from waitress.server import create_server  # type: ignore[import-untyped,unused-ignore]

    headers = [
        ("Content-Type", "image/gif"),
        ("Content-Length", str(len(GIF))),
        ("Cache-Control", "no-cache, no-store"),
    ]

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", headers)
        return [GIF]

    server = create_server(app, host=HOST, port=0, threads=threads, ident="ceiling")
    print(f"ceiling: serving on http://{HOST}:{server.effective_port}", file=sys.stderr, flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.run()


def _db_seqs(path: Path) -> tuple[list[int], int]:
    """Return the ``seq`` of every stored event, and the number of quarantined calls."""
    sys.path.insert(0, str(ROOT))
    from identity import Engine

    seqs: list[int] = []
    with Engine(path, create=False) as engine:
        for person in engine.people(TENANT):
            for event in engine.events(TENANT, person.id):
                seqs.extend(int(v) for k, v in event.properties if k == "seq")
        quarantined = engine.counts()["quarantined"]
    return seqs, quarantined


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--requests", type=int, default=10_000, help="timed requests per server and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds (the median is reported)"
    )
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--threads", type=int, default=32, help="server request threads")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0, help="cap per run, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve-ceiling", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_ceiling:
        serve_ceiling(args.threads)
        return 0

    runs: dict[str, list[Run]] = {"ours": [], "ceiling": []}
    ok_seqs: set[int] = set()
    sent = 0
    with tempfile.TemporaryDirectory(prefix="identity-load-") as tmp:
        work = Path(tmp)
        db = work / "load.db"
        commands = {
            "ours": [
                sys.executable,
                "-m",
                "identity.cli",
                "serve",
                "--db",
                str(db),
                "--port",
                "0",
                "--threads",
                str(args.threads),
                "--batch-size",
                str(args.batch_size),
                "--max-wait-ms",
                str(args.max_wait_ms),
                "--access-log",
                str(work / "access.log"),
            ],
            "ceiling": [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve-ceiling",
                "--threads",
                str(args.threads),
            ],
        }
        names = {
            "ours": "identity serve (durable group commit)",
            "ceiling": "ceiling (same waitress, trivial GIF app)",
        }
        servers = {}
        status = -1
        try:
            for key, command in commands.items():
                servers[key] = _start(command, work / f"{key}.err")
            seq = 0
            warm = max(args.connections * 20, args.requests // 10)
            for key in ("ceiling", "ours"):  # warm-up, not timed
                run = drive(
                    servers[key][1],
                    names[key],
                    first=seq,
                    count=warm,
                    connections=args.connections,
                    duration=args.duration,
                )
                seq += warm
                if key == "ours":
                    sent += run.sent
                    ok_seqs |= run.ok_seqs
            for _ in range(args.rounds):
                for key in ("ceiling", "ours"):
                    run = drive(
                        servers[key][1],
                        names[key],
                        first=seq,
                        count=args.requests,
                        connections=args.connections,
                        duration=args.duration,
                        pid=servers[key][0].pid,
                    )
                    seq += args.requests
                    runs[key].append(run)
                    if key == "ours":
                        sent += run.sent
                        ok_seqs |= run.ok_seqs
        finally:
            for key, (proc, _) in servers.items():
                code = _stop(proc)
                if key == "ours":
                    status = code
        said = (work / "ours.err").read_text(errors="replace")
        stored, quarantined = _db_seqs(db)

    stored_set = set(stored)
    lost = len(ok_seqs - stored_set)
    duplicated = len(stored) - len(stored_set)
    extra = len(stored_set - ok_seqs)
    ok = status == 0 and not lost and not duplicated and not quarantined

    def cpu(rs: list[Run]) -> float | None:
        values = [r.cpu_per_request() for r in rs]
        known = [v for v in values if v is not None]
        return round(_median(known), 1) if known else None

    summary: dict[str, dict[str, Any]] = {
        key: {
            "name": names[key],
            "requests_per_s": round(_median([r.rate() for r in rs]), 1),
            "p50_ms": round(_median([r.percentile(0.50) for r in rs]), 2),
            "p99_ms": round(_median([r.percentile(0.99) for r in rs]), 2),
            "server_cpu_us_per_request": cpu(rs),
            "rounds": [r.summary() for r in rs],
        }
        for key, rs in runs.items()
    }
    # each round runs the ceiling, then ours, back to back: compare within a round, so that
    # load from other processes on the machine cancels out as far as it can
    pairs = [
        o.rate() / c.rate() for o, c in zip(runs["ours"], runs["ceiling"], strict=True) if c.rate()
    ]
    ratio = round(_median(pairs), 3) if pairs else None
    result: dict[str, Any] = {
        **summary,
        "ratio": ratio,
        "round_ratios": [round(p, 3) for p in pairs],
        "check": {
            "requests_sent": sent,
            "answered_200": len(ok_seqs),
            "events_stored": len(stored),
            "lost": lost,
            "duplicated": duplicated,
            "stored_not_answered_200": extra,
            "quarantined": quarantined,
            "serve_exit_status": status,
            "ok": ok,
        },
        "settings": {
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "connections": args.connections,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "max_wait_ms": args.max_wait_ms,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "serve_said": [line for line in said.splitlines() if line.startswith("identity:")],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    print(
        f"{'server':42} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10}"
        f"   (median of {args.rounds} rounds of {args.requests} requests,"
        f" {args.connections} connections, {args.threads} threads)"
    )
    for key in ("ours", "ceiling"):
        s = summary[key]
        rates = ", ".join(str(r["requests_per_s"]) for r in s["rounds"])
        print(
            f"{s['name']:42} {s['requests_per_s']:>8} {s['p50_ms']:>7} {s['p99_ms']:>7} "
            f"{s['server_cpu_us_per_request']!s:>10}   req/s by round: {rates}"
        )
    shown = ", ".join(str(r) for r in result["round_ratios"])
    print(f"ratio ours / ceiling (median of rounds): {ratio}   by round: {shown}")
    print(
        f"check: {len(ok_seqs)} answered 200, {len(stored)} events stored, {lost} lost, "
        f"{duplicated} duplicated, {extra} stored but not answered 200, {quarantined} "
        f"quarantined, serve exit status {status}: {'OK' if ok else 'FAILED'}"
    )
    for line in result["serve_said"]:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
