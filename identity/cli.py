"""The ``identity`` command line: the only module that imports click.

Every error is one line on stderr and a non-zero exit status, whatever went wrong: a bad
option, a missing file, a database that cannot be used.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from .audit.command import audit
from .calls import MAX_TIME, MIN_TIME
from .engine import DEFAULT_BATCH_SIZE, Engine
from .errors import IdentityError
from .io import export as exporting
from .io import sources
from .io.formats import FormatOrAuto
from .output import TABLE_FORMATS, Column, Options, OutputFormat, render
from .records import Person, Quarantined

if TYPE_CHECKING:
    from .inspection import Bridge, Link, Merge, Split
from .io.resume import Ingest

__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "cli", "main", "output_options", "output_rows"]

T = TypeVar("T")

#: Exit statuses scripts can rely on (as coverage.py's): the command did its work and found
#: nothing wrong; it could not run (a bad command line, file or database: one line on
#: stderr); it ran and has findings (``identity check`` found an inconsistent store).
EXIT_OK, EXIT_ERROR, EXIT_FINDINGS = 0, 1, 2

FORMATS = ("auto", *sources.FORMATS)

_db_option = click.option(
    "--db",
    "db",
    required=True,
    type=click.Path(dir_okay=False),
    help="The identity database file (SQLite).",
)
_tenant_option = click.option("--tenant", required=True, help="The tenant (API key, `_k`).")
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object."
)


def output_options(
    *, table_format: str = "simple", headers: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the output flags of a listing and pass the command an ``output`` (:class:`Options`).

    ``--json`` / ``--nl`` (one JSON object a line), ``--csv``, ``--tsv``, ``--table`` /
    ``-t`` and ``--fmt STYLE`` (an aligned table, the default), ``--no-headers``. Two
    formats at once is a usage error. `table_format` and `headers` are the command's
    defaults for its table.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(
            *args: Any,
            as_json: bool,
            nl: bool,
            as_csv: bool,
            tsv: bool,
            table: bool,
            fmt: str | None,
            no_headers: bool,
            **kwargs: Any,
        ) -> Any:
            chosen: dict[OutputFormat, str] = {}
            for flag, name, given in (
                ("--json", "nl", as_json),
                ("--nl", "nl", nl),
                ("--csv", "csv", as_csv),
                ("--tsv", "tsv", tsv),
                ("--table", "table", table),
                ("--fmt", "table", fmt is not None),
            ):
                if given:
                    chosen.setdefault(cast(OutputFormat, name), flag)
            if len(chosen) > 1:
                raise click.UsageError(
                    f"{' and '.join(chosen.values())} are two output formats: choose one"
                )
            kwargs["output"] = Options(
                format=next(iter(chosen), "table"),
                table_format=fmt or table_format,
                headers=headers and not no_headers,
            )
            return command(*args, **kwargs)

        flags = [
            click.option(
                "--json", "as_json", is_flag=True, help="One JSON object per line (as --nl)."
            ),
            click.option("--nl", is_flag=True, help="Newline-delimited JSON objects."),
            click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line."),
            click.option("--tsv", is_flag=True, help="Tab-separated values with a header line."),
            click.option("--table", "-t", is_flag=True, help="An aligned table (the default)."),
            click.option(
                "--fmt",
                type=click.Choice(TABLE_FORMATS),
                default=None,
                help="Table style (plain, github, grid, ...; implies --table).",
            ),
            click.option("--no-headers", is_flag=True, help="Omit the header line."),
        ]
        for flag in reversed(flags):
            run = flag(run)
        return run

    return decorate


def output_rows(
    rows: Iterable[T],
    columns: Sequence[Column[T]],
    as_json: Callable[[T], dict[str, Any]],
    output: Options,
) -> None:
    """Print `rows` in the chosen format (the one place listings are printed)."""
    for line in render(rows, columns, as_json, output):
        click.echo(line)


def _echo_json(value: object, *, err: bool = False) -> None:
    click.echo(json.dumps(value, ensure_ascii=False), err=err)


_as_of_option = click.option(
    "--as-of", type=int, default=None, help="Only use calls with event time <= this (UTC s)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="identity", prog_name="identity")
def cli() -> None:
    """Resolve Kissmetrics-style tracking calls into people, kept in one SQLite file."""


def _open(db: str, *, create: bool = False) -> Engine:
    """Open a database (read-only by itself when the file or its folder is not writable)."""
    return Engine(db, create=create)


_PROGRESS_BYTES = 1 << 20


@contextmanager
def _progress(job: Ingest, quiet: bool) -> Iterator[Callable[[Ingest], None] | None]:
    """Show a progress bar on stderr (bytes, calls/s, ETA) for a long file on a terminal."""
    reader = job.reader
    size = None if reader is None else reader.size
    if quiet or reader is None or size is None or size < _PROGRESS_BYTES:
        yield None
        return
    if not sys.stderr.isatty():
        yield None
        return
    started = time.monotonic()
    bar: Any = click.progressbar(
        length=size,
        label=job.source.name,
        file=sys.stderr,
        show_eta=True,
        show_percent=True,
        item_show_func=lambda rate: rate,
    )
    with bar:
        bar.update(reader.consumed or 0)

        def update(current: Ingest) -> None:
            rate = current.summary.calls / max(time.monotonic() - started, 1e-3)
            bar.update((reader.consumed or bar.pos) - bar.pos, f"{rate:,.0f} calls/s")

        yield update


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@_db_option
@click.option(
    "--tenant", default=None, help="Tenant of calls that carry no `_k` (exports, CSV files)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="url: URLs or query strings; km: Kissmetrics JSON (Data Export, JSON import); "
    "jsonl: JSON call parameters with _path; access: Common/Combined Log Format; "
    "csv: Kissmetrics CSV import; auto: sniffed from the first lines.",
)
@click.option(
    "--received",
    type=click.IntRange(MIN_TIME, MAX_TIME),
    default=None,
    help="Receive time (UTC s) of calls without one [default: the file's mtime; now for -].",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True
)
@click.option(
    "--cache-size",
    default=None,
    metavar="SIZE",
    help="SQLite page cache, e.g. 1GiB [default: $IDENTITY_CACHE_SIZE or 256MiB].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Read files again that were already ingested (duplicates collapse).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each input's summary as one JSON object a line (and nothing else on stderr).",
)
def ingest(
    files: Sequence[str],
    db: str,
    tenant: str | None,
    fmt: FormatOrAuto,  # checked by click.Choice
    received: int | None,
    batch_size: int,
    cache_size: str | None,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Apply the tracking calls in FILES to the database.

    FILES are files (gzip read transparently), ``-`` for stdin, or Kissmetrics Data Export
    folders (index.csv and revisions/). How far each file was read is committed with its
    calls: after an interruption the same command goes on where it stopped, and a file
    already ingested is skipped. Bad calls are quarantined with a reason, never dropped;
    see `identity quarantine`.
    """
    inputs = sources.expand(files)  # a missing file is refused before the database is made
    # synchronous=NORMAL: every committed batch survives a killed process; after a power
    # loss the last batches roll back together with the recorded input positions, and the
    # same command reads them again
    with Engine(db, create=True, durable=False, cache_size=cache_size) as engine:
        ingest_inputs(
            engine, inputs, fmt=fmt, tenant=tenant, received=received, force=force,
            batch_size=batch_size, quiet=quiet, as_json=as_json,
        )  # fmt: skip


def ingest_inputs(
    engine: Engine,
    inputs: Sequence[sources.Input],
    *,
    fmt: FormatOrAuto = "auto",
    tenant: str | None = None,
    received: int | None = None,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool = False,
    as_json: bool = False,
    err: bool = False,
) -> None:
    """Ingest `inputs` (from :func:`~identity.io.sources.expand`) as ``identity ingest`` does.

    Each input's summary is printed as the ingest command prints it.

    The summaries go to stdout, or to stderr when `err` (``identity audit``, whose stdout is
    the report); a progress bar goes to stderr on a terminal unless `quiet`.
    """
    for item in inputs:
        with Ingest(engine, item, fmt=fmt, tenant=tenant, received=received, force=force) as job:
            note = job.note()
            if job.reader is None:
                if as_json:
                    _echo_json({"input": item.name, "status": job.status, "note": note}, err=err)
                elif not quiet:
                    click.echo(f"{item.name}: {note}", err=err)
                continue
            if not quiet and not as_json:
                if job.reader.sniffed:
                    click.echo(f"{item.name}: format {job.reader.format} (sniffed)", err=True)
                if note:
                    click.echo(f"{item.name}: {note}", err=True)
            with _progress(job, quiet or as_json) as update:
                summary = job.run(batch_size, update)
            skipped = job.reader.skipped
            if as_json:
                _echo_json(
                    {
                        "input": item.name,
                        "status": job.status,
                        "note": note,
                        "format": job.reader.format,
                        "sniffed": job.reader.sniffed,
                        **summary.as_dict(),
                        "skipped_lines": skipped,
                    },
                    err=err,
                )
            elif not quiet:
                more = f"; {skipped} lines skipped (not tracking calls)" if skipped else ""
                click.echo(f"{item.name}: {summary.line()}{more}", err=err)


_FIELDS: list[Column[tuple[str, object]]] = [
    Column("field", lambda row: row[0]),
    Column("value", lambda row: row[1]),
]


def _person_fields(person: Person) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("person", person.id),
        ("tenant", person.tenant),
        ("identities", person.identities),
        ("customer ids", person.customer_ids),
        ("events", person.events),
    ]
    return rows + [(f"property {name}", value) for name, value in person.properties]


@cli.command()
@click.argument("identity")
@_db_option
@_tenant_option
@_as_of_option
@output_options(table_format="plain", headers=False)
def person(identity: str, db: str, tenant: str, as_of: int | None, output: Options) -> None:
    """Show the person IDENTITY belongs to (a table of fields; --json: one object)."""
    with _open(db) as engine:
        found = engine.person(tenant, identity, as_of=as_of)
    if output.format == "nl":
        _echo_json(found.as_dict())
    else:
        output_rows(_person_fields(found), _FIELDS, lambda row: {row[0]: row[1]}, output)


_PEOPLE: list[Column[Person]] = [
    Column("person", lambda p: p.id),
    Column("identities", lambda p: len(p.identities)),
    Column("customer ids", lambda p: p.customer_ids),
    Column("events", lambda p: p.events),
]


@cli.command()
@_db_option
@_tenant_option
@_as_of_option
@output_options()
def people(db: str, tenant: str, as_of: int | None, output: Options) -> None:
    """List every person of a tenant, also those with no Customer ID yet."""
    with _open(db) as engine:
        output_rows(engine.people(tenant, as_of=as_of), _PEOPLE, Person.as_dict, output)


_QUARANTINE: list[Column[Quarantined]] = [
    Column("reason", lambda q: q.reason),
    Column("sent", lambda q: q.sent),
    Column("source", lambda q: q.source),
    Column("raw", lambda q: _shorten(q.raw)),
]


@cli.command()
@_db_option
@click.option("--tenant", default=None, help="Only this tenant's calls.")
@click.option("--reason", default=None, help="Only calls quarantined for this reason.")
@click.option(
    "--raw",
    is_flag=True,
    help="Print the raw calls, one a line, to repair and ingest again (no other format).",
)
@output_options()
def quarantine(db: str, tenant: str | None, reason: str | None, raw: bool, output: Options) -> None:
    """List quarantined calls with their reasons (the raw call shortened in a table)."""
    given = click.get_current_context().params
    if raw and any(given.get(f) for f in ("as_json", "nl", "as_csv", "tsv", "table", "fmt")):
        raise click.UsageError("--raw prints the raw calls: it takes no other output format")
    with _open(db) as engine:
        items = engine.quarantine(tenant, reason=reason)
        if raw:
            for item in items:
                click.echo(_one_line(item.raw))
            return
        output_rows(items, _QUARANTINE, Quarantined.as_dict, output)


def _one_line(raw: str) -> str:
    """Keep a raw call on one line: line breaks become escapes of its own kind."""
    if "\n" not in raw and "\r" not in raw:
        return raw
    if raw.lstrip().startswith("{"):
        return raw.replace("\r", "\\r").replace("\n", "\\n")
    return raw.replace("\r", "%0D").replace("\n", "%0A")


@cli.command(name="export")
@_db_option
@_tenant_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(exporting.FORMATS),
    default="km",
    show_default=True,
    help="km: Kissmetrics export JSON lines; url: beacon URLs (/e?_k=...).",
)
@click.option(
    "--output",
    "-o",
    default="-",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write here (gzip if it ends in .gz) [default: stdout].",
)
@click.option("--include-key", is_flag=True, help="With km, write the tenant as `_k` on each line.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as one JSON object (on stderr)."
)
def export_(
    db: str,
    tenant: str,
    fmt: exporting.ExportFormat,  # checked by click.Choice
    output: str,
    include_key: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write a tenant's accepted calls back as Kissmetrics JSON lines or URLs.

    Ingesting the export (with --tenant for km lines) into a fresh database rebuilds the
    same people, Customer IDs, property history and events; quarantined calls are not
    exported (see `identity quarantine --raw`).

    Nothing is printed unless the whole export could be read: to stdout it is spooled
    (in memory, then in a temporary file) and copied once complete; a file is written
    under a temporary name and renamed. Exit status 1 and one error line otherwise.
    """
    summary = exporting.ExportSummary()
    with _open(db) as engine:
        lines = exporting.lines(
            engine.store, tenant, fmt=fmt, include_key=include_key, summary=summary
        )
        if output == "-":
            # a database that turns out damaged midway must print nothing but the error
            with tempfile.SpooledTemporaryFile(max_size=32 << 20) as spool:
                for line in lines:
                    spool.write(line.encode("utf-8") + b"\n")
                spool.seek(0)
                sys.stdout.flush()
                binary = getattr(sys.stdout, "buffer", None)
                if binary is None:  # a text-only stream (e.g. io.StringIO)
                    for chunk in spool:
                        sys.stdout.write(chunk.decode("utf-8"))
                else:
                    while chunk := spool.read(1 << 20):
                        binary.write(chunk)
                    binary.flush()
        else:
            opener = gzip.open if output.endswith(".gz") else open
            partial = f"{output}.partial"
            try:
                with opener(partial, "wt", encoding="utf-8", newline="\n") as stream:
                    for line in lines:
                        stream.write(line + "\n")
                os.replace(partial, output)  # never a truncated export under its name
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
    if as_json:
        _echo_json({"tenant": tenant, **dataclasses.asdict(summary)}, err=True)
    elif not quiet:
        click.echo(f"{tenant}: {summary.line()}", err=True)


def _shorten(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@cli.command()
@_db_option
@_json_option
def check(db: str, as_json: bool) -> None:
    """Recompute people from the stored alias links and compare with what is stored.

    SQLite's own quick check of every page runs first. Exit status: 0 consistent; 1 the
    check could not run (the file is missing, damaged, locked or not an identity
    database: one error line on stderr); 2 inconsistent (each finding on stdout, one a
    line, and their number on stderr).
    """
    from .errors import InconsistentStoreError

    with _open(db) as engine:
        try:
            result = engine.check()
        except InconsistentStoreError as exc:
            if as_json:
                _echo_json({"ok": False, "db": exc.path, "problems": exc.problems})
            else:
                for problem in exc.problems:
                    click.echo(problem)
            found = len(exc.problems)
            click.echo(
                f"identity: inconsistent: {exc.path}: {found} problem{'s' * (found != 1)}",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_FINDINGS) from None
    if as_json:
        _echo_json({"ok": True, "db": db, **result})
        return
    click.echo(
        f"ok: {result['identities']} identities, {result['links']} links, {result['people']} people"
    )


_CHAIN: list[Column[Link]] = [
    Column("from", lambda link: link.start),
    Column("to", lambda link: link.end),
    Column("t", lambda link: link.t),
    Column("sent", lambda link: link.sent),
    Column("source", lambda link: link.source),
]


@cli.command()
@click.argument("a")
@click.argument("b")
@_db_option
@_tenant_option
@_as_of_option
@_json_option
def explain(a: str, b: str, db: str, tenant: str, as_of: int | None, as_json: bool) -> None:
    """Explain why identities A and B are one person: the links that joined them earliest.

    The chain whose latest link is earliest (the time they became one person), fewest
    links among those. Identities of different people, or unknown ones, are said so.
    """
    from .inspection import Link
    from .inspection import explain as explain_pair

    with _open(db) as engine:
        answer = explain_pair(engine, tenant, a, b, as_of=as_of)
    if as_json:
        _echo_json(answer.as_dict())
        return
    click.echo(answer.sentence())
    if answer.chain:
        click.echo()
        output_rows(answer.chain, _CHAIN, Link.as_dict, Options())


_BRIDGES: list[Column[Bridge]] = [
    Column("person", lambda b: b.person),
    Column("from", lambda b: b.link.start),
    Column("to", lambda b: b.link.end),
    Column("sides", lambda b: f"{b.sizes[0]} | {b.sizes[1]}"),
    Column("customer ids", lambda b: f"{b.customers[0]} | {b.customers[1]}"),
    Column("t", lambda b: b.link.t),
    Column("sent", lambda b: b.link.sent),
    Column("source", lambda b: b.link.source),
]


@cli.command()
@_db_option
@_tenant_option
@click.option(
    "--min-part",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="A bridge is risky when both parts have a Customer ID or this many identities.",
)
@click.option("--hub-links", type=click.IntRange(min=1), default=10, show_default=True,
              help="Identities with this many links are hubs.")  # fmt: skip
@click.option("--large", type=click.IntRange(min=1), default=100, show_default=True,
              help="People with this many identities are large.")  # fmt: skip
@_as_of_option
@_json_option
def risky(
    db: str,
    tenant: str,
    min_part: int,
    hub_links: int,
    large: int,
    as_of: int | None,
    as_json: bool,
) -> None:
    """List risky links and identities, riskiest first.

    Bridges (one link holding two sizeable parts of a person together), hub identities,
    large people, junk identities and the aliases blocked because of them.
    """
    from .inspection import Bridge
    from .inspection import risky as find_risks

    with _open(db) as engine:
        risks = find_risks(
            engine, tenant, min_part=min_part, hub_links=hub_links, large_person=large,
            as_of=as_of,
        )  # fmt: skip
    if as_json:
        _echo_json(risks.as_dict())
        return
    table = Options()
    sections: list[tuple[str, Callable[[], None], int]] = [
        ("bridges", lambda: output_rows(risks.bridges, _BRIDGES, Bridge.as_dict, table),
         len(risks.bridges)),
        ("hubs", lambda: output_rows(risks.hubs, _HUBS, lambda h: {}, table), len(risks.hubs)),
        ("large people", lambda: output_rows(risks.large, _LARGE, lambda h: {}, table),
         len(risks.large)),
        ("junk identities", lambda: output_rows(risks.junk, _JUNK, lambda h: {}, table),
         len(risks.junk)),
    ]  # fmt: skip
    for title, show, count in sections:
        click.echo(f"{title}: {count}")
        if count:
            show()
        click.echo()
    click.echo(f"aliases blocked (junk identities): {risks.blocked_aliases}")


_HUBS: list[Column[tuple[str, str, int]]] = [
    Column("identity", lambda h: h[0]),
    Column("person", lambda h: h[1]),
    Column("links", lambda h: h[2]),
]
_LARGE: list[Column[tuple[str, int]]] = [
    Column("person", lambda p: p[0]),
    Column("identities", lambda p: p[1]),
]
_JUNK: list[Column[tuple[str, str]]] = [
    Column("identity", lambda j: j[0]),
    Column("person", lambda j: j[1]),
]
_SPLITS: list[Column[Split]] = [
    Column("person", lambda s: s.person),
    Column("identities", lambda s: s.size),
    Column("parts", lambda s: [f"{p} ({n})" for p, n in s.parts]),
]


@cli.command(name="what-if")
@_db_option
@_tenant_option
@click.option("--drop-identity", "drop_identities", multiple=True, metavar="X",
              help="Drop this identity and its links (repeatable).")  # fmt: skip
@click.option("--drop-link", "drop_links", multiple=True, nargs=2, metavar="A B",
              help="Drop the link between A and B (repeatable).")  # fmt: skip
@click.option("--drop-junk", is_flag=True, help="Drop every identity the junk rules match.")
@_as_of_option
@_json_option
def what_if(
    db: str,
    tenant: str,
    drop_identities: tuple[str, ...],
    drop_links: tuple[tuple[str, str], ...],
    drop_junk: bool,
    as_of: int | None,
    as_json: bool,
) -> None:
    """List the people that would split if identities or links were dropped.

    Computed on a copy in memory: the database is only read.
    """
    from .inspection import Split
    from .inspection import what_if as splits_of

    if not (drop_identities or drop_links or drop_junk):
        raise click.UsageError("say what to drop: --drop-identity, --drop-link or --drop-junk")
    with _open(db) as engine:
        splits = splits_of(
            engine, tenant, drop_identities=drop_identities, drop_links=drop_links,
            drop_junk=drop_junk, as_of=as_of,
        )  # fmt: skip
    if as_json:
        _echo_json({"tenant": tenant, "splits": [s.as_dict() for s in splits]})
        return
    click.echo(f"{len(splits)} people would split")
    if splits:
        output_rows(splits, _SPLITS, Split.as_dict, Options())


_MERGES: list[Column[Merge]] = [
    Column("t", lambda m: m.t),
    Column("from", lambda m: m.link.start),
    Column("to", lambda m: m.link.end),
    Column("joined", lambda m: [f"{p} ({n})" for p, n in m.people]),
    Column("became", lambda m: m.person),
    Column("sent", lambda m: m.link.sent),
    Column("source", lambda m: m.link.source),
]
_APPEARED: list[Column[tuple[str, int]]] = [
    Column("person", lambda p: p[0]),
    Column("identities", lambda p: p[1]),
]


@cli.command(name="diff")
@_db_option
@_tenant_option
@click.option("--from", "start", type=int, required=True, help="After this time (UTC s).")
@click.option("--to", "end", type=int, required=True, help="Up to this time (UTC s).")
@_json_option
def diff_(db: str, tenant: str, start: int, end: int, as_json: bool) -> None:
    """List the merges between two times (which people became one, through which link).

    Built from the link history, so it needs no snapshots; also the people that appeared.
    """
    from .inspection import Merge, diff

    if end < start:
        raise click.UsageError(f"--to {end} is before --from {start}")
    with _open(db) as engine:
        changes = diff(engine, tenant, start, end)
    if as_json:
        _echo_json(changes.as_dict())
        return
    table = Options()
    click.echo(f"{len(changes.merges)} merges after {start} up to {end}")
    if changes.merges:
        output_rows(changes.merges, _MERGES, Merge.as_dict, table)
    click.echo(f"\n{len(changes.appeared)} people appeared")
    if changes.appeared:
        output_rows(changes.appeared, _APPEARED, lambda p: {}, table)


@cli.command()
@click.argument("identity")
@_db_option
@_tenant_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("graphml", "gexf", "json", "dot")),
    default="graphml",
    show_default=True,
    help="graphml (Gephi, Cytoscape), gexf (Gephi), json (node-link), dot (Graphviz).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write (replaced only once complete).",
)
@_as_of_option
def graph(identity: str, db: str, tenant: str, fmt: str, output: str, as_of: int | None) -> None:
    """Write the graph of IDENTITY's person (identities and alias links) for other tools."""
    from .inspection import person_graph, write_graph

    with _open(db) as engine:
        found = person_graph(engine, tenant, identity, as_of=as_of)
    partial = f"{output}.partial"
    try:
        write_graph(found, partial, fmt)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    click.echo(
        f"{output}: {found.number_of_nodes()} identities, {found.number_of_edges()} links",
        err=True,
    )


_DEMO_PEOPLE: list[Column[Person]] = [
    Column("person", lambda p: p.id),
    Column("identities", lambda p: p.identities),
    Column("customer ids", lambda p: p.customer_ids),
    Column("properties", lambda p: [f"{k}={v}" for k, v in p.properties]),
    Column("events", lambda p: p.events),
]
_DEMO_QUARANTINE: list[Column[Quarantined]] = [
    Column("reason", lambda q: q.reason),
    Column("raw", lambda q: _shorten(q.raw, 60)),
]


@cli.command()
@click.option(
    "--db",
    default=None,
    type=click.Path(dir_okay=False),
    help="Keep the database here [default: a temporary file].",
)
@click.option(
    "--html",
    "html_path",
    default="identity-demo-audit.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Write the sample's audit page here.",
)
def demo(db: str | None, html_path: str) -> None:
    """Ingest the sample that ships with identity, print who is who, and audit it.

    Ends with the audit's headline and writes its HTML page (see `identity audit`). With
    --db, the database is kept there; it must not exist yet (the demo never writes its
    sample into a database of yours).
    """
    from .audit.command import write_page
    from .audit.engines.memory import audit_database
    from .audit.text import headline

    if db is not None and os.path.exists(db) and (os.path.isdir(db) or os.path.getsize(db)):
        raise click.UsageError(
            f"--db {db} exists: the demo writes its sample into a new database only"
        )
    sample = resources.files("identity").joinpath("data/sample.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = db or os.path.join(tmp, "demo.db")
        with sample.open("rb") as stream, _open(path, create=True) as engine:
            summary = engine.ingest(
                sources.Reader(
                    "sample.txt",
                    stream=stream,
                    fmt="url",
                    received=1_700_000_000,
                    rules=engine.rules,
                )
            )
            click.echo(f"sample.txt: {summary.line()}\n")
            table = Options()
            for tenant in engine.tenants():
                click.echo(f"tenant {tenant}:")
                output_rows(engine.people(tenant), _DEMO_PEOPLE, Person.as_dict, table)
                click.echo()
            click.echo("quarantined:")
            output_rows(engine.quarantine(), _DEMO_QUARANTINE, Quarantined.as_dict, table)
            report = audit_database(engine)
        click.echo(f"\naudit: {headline(report)}")
        write_page(report, html_path)
        click.echo(f"audit page: {os.path.abspath(html_path)}")


@cli.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port; the address is printed).",
)
@click.option(
    "--keys",
    default=None,
    help="Comma-separated API keys to accept; calls with other keys are quarantined.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Request threads (requests that can wait for a commit at once).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most calls committed in one transaction.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Longest a call waits for others to share its commit.",
)
@click.option(
    "--access-log",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Append a Combined Log Format access log here (-: stderr).",
)
@click.option(
    "--cache-size",
    default=None,
    metavar="SIZE",
    help="SQLite page cache, e.g. 1GiB [default: $IDENTITY_CACHE_SIZE or 256MiB].",
)
def serve(
    db: str,
    host: str,
    port: int,
    keys: str | None,
    threads: int,
    batch_size: int,
    max_wait_ms: float,
    access_log: str,
    cache_size: str | None,
) -> None:
    """Run the beacon: answer /e, /s and /a over HTTP, committing every call to the database.

    Each request is answered (200 and a 1x1 GIF) once its call is committed; calls from many
    requests share one transaction. SIGTERM or Ctrl-C stops accepting, commits what was
    received and exits 0. Needs waitress: pip install 'identity[serve]'.
    """
    from contextlib import nullcontext

    from .beacon import rules_for_keys
    from .beacon.server import serve as run_beacon

    rules = rules_for_keys(keys)
    with (
        Engine(db, create=True, rules=rules, cache_size=cache_size) as engine,
        nullcontext(sys.stderr)
        if access_log == "-"
        else open(access_log, "a", encoding="utf-8") as log,
    ):
        run_beacon(
            engine,
            host=host,
            port=port,
            threads=threads,
            batch_size=batch_size,
            max_wait=max_wait_ms / 1000,
            access_log=log,
        )


cli.add_command(audit)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every error is one line on stderr and a non-zero exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]  # the commands, not an error
    try:
        result: Any = cli.main(args=args, prog_name="identity", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("identity: error: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as exc:  # a bad command line: it could not run
        click.echo(f"identity: error: {exc.format_message()}", err=True)
        return EXIT_ERROR
    except IdentityError as exc:
        click.echo(f"identity: error: {exc}", err=True)
        return EXIT_ERROR
    except OSError as exc:
        click.echo(f"identity: error: {exc.strerror or exc}: {exc.filename or ''}", err=True)
        return EXIT_ERROR
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
