"""Command line of the benchmark harness: ``python -m bench COMMAND [options]``.

Commands live in `COMMANDS`, a dispatch table from name to a `Command` (help text, a function
adding the command's options to its sub-parser, and a function running it). To add a command,
write those two functions and add one entry; nothing else changes.

Examples
--------
``python -m bench generate --calls 1e6 --shape issue2 -o issue2.url.gz``
``python -m bench generate --calls 1000 --shape mixed --format km --include-key -o -``
``python -m bench report`` (goal sizes; ``--calls 20k --pairs 20k --identities 20k`` is quick)
``python -m bench scale`` (1M, 4M and 10M calls; ``--calls 200k,400k`` is quick)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from bench import workloads


class Command(NamedTuple):
    """One subcommand: its help, how to configure its parser, how to run it."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _count(text: str) -> int:
    """Parse a call count: ``1000``, ``1_000_000``, ``1e6``, ``250k`` or ``1M``."""
    raw = text.strip().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(raw[-1:].lower(), 1)
    if scale != 1:
        raw = raw[:-1]
    try:
        value = float(raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole count >= 0: {text!r}")
    return int(value)


def _counts(text: str) -> list[int]:
    """Parse a comma-separated list of counts: ``1M,4M,10M`` (``1_000`` style, no commas)."""
    return [_count(part) for part in text.replace(" ", "").split(",") if part]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


# --- generate ------------------------------------------------------------------------------


def _configure_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls",
        "-n",
        type=_count,
        required=True,
        metavar="N",
        help="how many calls to write (1000, 1_000_000, 1e6, 250k, 1M)",
    )
    parser.add_argument(
        "--shape",
        choices=sorted(workloads.SHAPES),
        default=workloads.DEFAULT_SHAPE,
        metavar="NAME",
        help=f"workload shape, one of {', '.join(workloads.SHAPES)} "
        f"(default: {workloads.DEFAULT_SHAPE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tenants",
        type=_positive,
        default=None,
        metavar="T",
        help="number of tenants tenant-1..tenant-T (default: 3 for mixed, else 1)",
    )
    parser.add_argument(
        "--format",
        "-f",
        dest="fmt",
        choices=sorted(workloads.FORMATS),
        default="url",
        help="url: /e?_k=...&_p=... lines; km: Kissmetrics export JSON lines (default: url)",
    )
    parser.add_argument(
        "--include-key",
        action="store_true",
        help="with --format km, write each call's tenant as _k (exports have none)",
    )
    parser.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="output file, gzip-compressed if it ends in .gz; - for stdout (default)",
    )


def _counting(calls: Iterable[workloads.Call], counts: Counter[str]) -> Iterator[workloads.Call]:
    for call in calls:
        counts[call["_path"]] += 1
        yield call


def _run_generate(args: argparse.Namespace) -> int:
    calls = workloads.generate(args.shape, args.calls, args.seed, args.tenants)
    tenants = args.tenants or workloads.default_tenants(args.shape)
    if args.fmt == "km" and tenants > 1 and not args.include_key:
        print(
            "warning: km lines without --include-key lose the tenant of each call",
            file=sys.stderr,
        )
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    if args.output == "-":
        try:
            written = workloads.write(
                _counting(calls, counts), sys.stdout, args.fmt, include_key=args.include_key
            )
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: stop quietly, as other command-line tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 0
    else:
        written = workloads.write(
            _counting(calls, counts), args.output, args.fmt, include_key=args.include_key
        )
    elapsed = time.perf_counter() - start
    rate = written / elapsed if elapsed > 0 else float("inf")
    mix = " ".join(f"{path}={counts[path]:,}" for path in ("e", "s", "a"))
    print(
        f"wrote {written:,} calls ({mix}) shape={args.shape} seed={args.seed} "
        f"tenants={tenants} format={args.fmt} to {args.output} "
        f"in {elapsed:.2f}s ({rate:,.0f} calls/s)",
        file=sys.stderr,
    )
    return 0


# --- report --------------------------------------------------------------------------------


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls",
        type=_count,
        default=1_000_000,
        metavar="N",
        help="issue2 calls to ingest, engine and floor (default: 1M; 0 skips the ingest)",
    )
    parser.add_argument(
        "--pairs",
        type=_count,
        default=1_000_000,
        metavar="N",
        help="alias pairs for the union-find, over 0.8 N identities (default: 1M; 0 skips)",
    )
    parser.add_argument(
        "--identities",
        type=_count,
        default=1_000_000,
        metavar="N",
        help="identities of the reopened database (default: 1M; 0 skips the reopen)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=3,
        metavar="R",
        help="repeats of the union-find timings and of the reopen; medians (default: 3)",
    )
    parser.add_argument(
        "--ingest-repeat",
        type=_positive,
        default=1,
        metavar="R",
        help="repeats of the ingest and of its floor; medians (default: 1)",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="keep the lines and databases here (default: a temporary directory, removed)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--save", default=None, metavar="FILE", help="also write the JSON report to FILE"
    )
    parser.add_argument(
        "--tablefmt",
        default="github",
        metavar="FMT",
        help="tabulate table format (default: github, a Markdown table)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a goal is missed"
    )


def _run_report(args: argparse.Namespace) -> int:
    from bench import report

    result = report.run(
        calls=args.calls,
        pairs=args.pairs,
        identities=args.identities,
        repeat=args.repeat,
        ingest_repeat=args.ingest_repeat,
        workdir=args.workdir,
        progress=None if args.quiet else sys.stderr,
    )
    data = json.dumps(result.as_dict(), indent=2)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as fh:
            fh.write(data + "\n")
    print(data if args.json else result.table(args.tablefmt))
    missed = [row for row in result.goals() if not row.passed]
    return 1 if args.strict and missed else 0


# --- scale ---------------------------------------------------------------------------------


def _configure_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls",
        "-n",
        type=_counts,
        default=None,
        metavar="N[,N...]",
        help="sizes: calls to generate and ingest, smallest first (see --repeat) "
        "(default: 1M,4M,10M)",
    )
    parser.add_argument(
        "--shape",
        choices=sorted(workloads.SHAPES),
        default="issue2",
        metavar="NAME",
        help="workload shape (default: issue2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="where the lines file and the database go (default: a temporary directory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the lines file and the database")
    parser.add_argument(
        "--no-check", action="store_true", help="skip `identity check` after each size"
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor (parse_qsl + one executemany) on the same lines at each size",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=None,
        metavar="N",
        help="passed to identity ingest (default: its own)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="N",
        help="ingest (and floor) N times per size, in turns, and report the median run "
        "(default: 1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when CPU per call grows more than the goal, or a check fails",
    )


def _run_scale(args: argparse.Namespace) -> int:
    from bench import scale

    sizes = sorted(set(args.calls)) if args.calls else list(scale.DEFAULT_SIZES)
    extra = [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
    series = scale.run_sizes(
        sizes,
        shape=args.shape,
        seed=args.seed,
        workdir=args.workdir,
        keep=args.keep,
        check=not args.no_check,
        ingest_args=extra,
        progress=None if args.quiet else sys.stderr,
        floor=not args.no_floor,
        repeat=args.repeat,
    )
    print(json.dumps(series.as_dict(), indent=2) if args.json else series.text())
    growth = series.growth
    failed = any(r.checked is False for r in series.results)
    missed = growth is not None and growth > scale.GROWTH_GOAL
    share = series.results[0].floor_share if series.results else None
    missed = missed or (share is not None and share < scale.FLOOR_GOAL)
    return 1 if args.strict and (failed or missed) else 0


# --- inspect -------------------------------------------------------------------------------


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls", type=_count, default=1_000_000, metavar="N",
        help="issue2 calls to generate and ingest (default: 1M)",
    )  # fmt: skip
    parser.add_argument("--db", default=None, help="inspect this database instead")
    parser.add_argument("--repeat", type=_positive, default=3, help="repeats (default: 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_inspect(args: argparse.Namespace) -> int:
    from bench import inspection

    result = inspection.run(args.calls, db=args.db, repeat=args.repeat)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.text())
    return 0


#: Every subcommand by name.
COMMANDS: dict[str, Command] = {
    "generate": Command(
        "write a seeded workload of tracking calls", _configure_generate, _run_generate
    ),
    "report": Command(
        "measure the engine against its references and the goals, as one table",
        _configure_report,
        _run_report,
    ),
    "inspect": Command(
        "time explain, risky and what-if on the largest person, against identity check",
        _configure_inspect,
        _run_inspect,
    ),
    "scale": Command(
        "generate a big workload and time `identity ingest` of it into a file database",
        _configure_scale,
        _run_scale,
    ),
}


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser, one sub-parser per command.

    Parameters
    ----------
    commands : dict of str to Command, optional
        The commands; `COMMANDS` by default.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``args.command`` names the chosen command.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark harness of the identity engine."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in (commands if commands is not None else COMMANDS).items():
        command.configure(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in `argv` (default: ``sys.argv[1:]``) and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name.

    Returns
    -------
    int
        The exit status (argparse exits with 2 on a usage error).
    """
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
