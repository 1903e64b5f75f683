"""``identity audit``: the report of what files or a database hold, as text, JSON or HTML.

Registered on the main command group by :mod:`identity.cli`; the engines, renderers and charts
are imported only when the command runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from ..calls import MAX_TIME, MIN_TIME
from ..io.formats import FORMATS, FormatOrAuto

if TYPE_CHECKING:
    from .model import Audit

__all__ = ["ENGINES", "audit", "write_page"]

#: Where the audit can run (SPEC §13).
ENGINES = ("memory", "duckdb", "spark")


def write_page(report: Audit, path: str) -> None:
    """Write the HTML page to `path`, replacing it only once it is complete."""
    from .html import page

    partial = f"{path}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as out:
            out.write(page(report))
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _memory(
    files: Sequence[str],
    db: str | None,
    *,
    tenant: str | None,
    as_of: int | None,
    fmt: FormatOrAuto,
    default_tenant: str | None,
    received: int | None,
    quiet: bool,
) -> Audit:
    from ..cli import ingest_inputs
    from ..engine import Engine
    from ..io import sources
    from .engines.memory import audit_database, audit_files

    if not files:
        assert db is not None
        if not os.path.exists(db):
            raise click.UsageError(f"--db {db}: no such database (give FILES to audit files)")
        with Engine(db, readonly=True) as engine:
            return audit_database(engine, tenant, as_of)
    inputs = sources.expand(files)  # a missing file is refused before anything is made

    def ingest(engine: Engine, _: object) -> None:
        ingest_inputs(
            engine, inputs, fmt=fmt, tenant=default_tenant, received=received, quiet=quiet,
            err=True,
        )  # fmt: skip

    return audit_files(files, tenant=tenant, as_of=as_of, ingest=ingest, db=db)


@click.command()
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@click.option(
    "--db",
    default=None,
    type=click.Path(dir_okay=False),
    help="Audit this database; with FILES, ingest them into it first and keep it "
    "[default: a temporary database, removed].",
)
@click.option("--tenant", default=None, help="Only this tenant [default: all].")
@click.option("--as-of", type=int, default=None, help="Only calls with event time <= this (UTC s).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema 1).")
@click.option(
    "--html",
    "html_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the report as one self-contained HTML page here.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("auto", *FORMATS)),
    default="auto",
    show_default=True,
    help="Format of FILES, as for `identity ingest`.",
)
@click.option(
    "--default-tenant", default=None, help="Tenant of calls that carry no `_k` (exports, CSV)."
)
@click.option(
    "--received",
    type=click.IntRange(MIN_TIME, MAX_TIME),
    default=None,
    help="Receive time (UTC s) of calls without one [default: the file's mtime].",
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(ENGINES),
    default="memory",
    show_default=True,
    help="memory: identity's readers into SQLite; duckdb: out of core on one machine "
    "(identity[duckdb]); spark: a Spark cluster or local session (identity[spark]).",
)
@click.option("--memory-limit", default=None, help="duckdb: memory limit, e.g. 2GB.")
@click.option(
    "--spill-dir", default=None, type=click.Path(file_okay=False), help="duckdb: spill here."
)
@click.option("--spark-master", default=None, help="spark: master URL [default: local[*]].")
@click.option("--quiet", "-q", is_flag=True, help="No progress or ingest summaries on stderr.")
def audit(
    files: Sequence[str],
    db: str | None,
    tenant: str | None,
    as_of: int | None,
    as_json: bool,
    html_path: str | None,
    fmt: FormatOrAuto,
    default_tenant: str | None,
    received: int | None,
    engine_name: str,
    memory_limit: str | None,
    spill_dir: str | None,
    spark_master: str | None,
    quiet: bool,
) -> None:
    """Report what FILES or a database hold, before anything is loaded anywhere.

    Calls by kind, quarantine reasons with examples, exact duplicates and likely client
    retries, people and their sizes, the largest people, risky merges with the chain that made
    them, junk identities, tenants and calls over time. FILES are read as `identity ingest`
    reads them, into a temporary database (kept with --db); with --db alone, that database is
    audited and only read.
    """
    from .text import lines

    if not files and db is None:
        raise click.UsageError("give FILES to audit, or --db DATABASE")
    if engine_name != "memory" and (db is not None or not files):
        raise click.UsageError(f"--engine {engine_name} audits FILES (it reads them itself)")
    if engine_name != "duckdb" and (memory_limit or spill_dir):
        raise click.UsageError("--memory-limit and --spill-dir are options of --engine duckdb")
    if engine_name != "spark" and spark_master:
        raise click.UsageError("--spark-master is an option of --engine spark")
    if html_path is not None:  # refused before the work, not after
        folder = os.path.dirname(os.path.abspath(html_path))
        if not os.path.isdir(folder):
            raise click.UsageError(f"--html {html_path}: no such folder {folder}")
        if not os.access(folder, os.W_OK):
            raise click.UsageError(f"--html {html_path}: the folder {folder} is not writable")
    report = _run(
        engine_name, files, db, tenant=tenant, as_of=as_of, fmt=fmt,
        default_tenant=default_tenant, received=received, quiet=quiet,
        memory_limit=memory_limit, spill_dir=spill_dir, spark_master=spark_master,
    )  # fmt: skip
    if html_path is not None:
        write_page(report, html_path)
        if not quiet:
            click.echo(f"audit page written to {html_path}", err=True)
    if as_json:
        import json

        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for line in lines(report):
            click.echo(line)


def _run(
    engine_name: str,
    files: Sequence[str],
    db: str | None,
    *,
    tenant: str | None,
    as_of: int | None,
    fmt: FormatOrAuto,
    default_tenant: str | None,
    received: int | None,
    quiet: bool,
    memory_limit: str | None,
    spill_dir: str | None,
    spark_master: str | None,
) -> Audit:
    if engine_name == "memory":
        return _memory(
            files, db, tenant=tenant, as_of=as_of, fmt=fmt, default_tenant=default_tenant,
            received=received, quiet=quiet,
        )  # fmt: skip

    def progress(message: str) -> None:
        if not quiet and sys.stderr.isatty():
            click.echo(f"\r{message}\x1b[K", err=True, nl=False)

    if engine_name == "duckdb":
        try:
            engine = importlib.import_module("identity.audit.engines.duckdb")
        except ImportError as exc:
            raise click.UsageError(
                f"--engine duckdb needs duckdb: pip install 'identity[duckdb]' ({exc})"
            ) from None
        report: Audit = engine.audit(
            files, fmt=fmt, tenant=tenant, as_of=as_of, default_tenant=default_tenant,
            received=received, memory_limit=memory_limit, spill_dir=spill_dir,
            progress=progress,
        )  # fmt: skip
    else:
        try:
            engine = importlib.import_module("identity.audit.engines.spark")
        except ImportError as exc:
            raise click.UsageError(
                f"--engine spark needs pyspark: pip install 'identity[spark]' ({exc})"
            ) from None
        report = engine.audit(
            files, fmt=fmt, tenant=tenant, as_of=as_of, default_tenant=default_tenant,
            received=received, master=spark_master, progress=progress,
        )  # fmt: skip
    if not quiet and sys.stderr.isatty():
        click.echo("\r\x1b[K", err=True, nl=False)
    return report
