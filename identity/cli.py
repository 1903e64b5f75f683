"""The ``identity`` command line: the only module that imports click.

Every error is one line on stderr and a non-zero exit status, whatever went wrong: a bad
option, a missing file, a database that cannot be used.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import IO, Any

import click
from tabulate import tabulate

from .calls import Call, parse_km_line, parse_query, rejected
from .engine import Engine
from .errors import IdentityError, InputError
from .records import Person

__all__ = ["cli", "main"]

FORMATS = ("auto", "url", "km")

_db_option = click.option(
    "--db",
    "db",
    required=True,
    type=click.Path(dir_okay=False),
    help="The identity database file (SQLite).",
)
_tenant_option = click.option("--tenant", required=True, help="The tenant (API key, `_k`).")
_json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
_as_of_option = click.option(
    "--as-of", type=int, default=None, help="Only use calls with event time <= this (UTC s)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="identity", prog_name="identity")
def cli() -> None:
    """Resolve Kissmetrics-style tracking calls into people, kept in one SQLite file."""


def _open(db: str, *, create: bool = False) -> Engine:
    return Engine(db, create=create)


def _sniff(first: str) -> str:
    return "km" if first.lstrip().startswith("{") else "url"


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str | None, bytes]]:
    """Yield (line number, decoded text or None when undecodable, raw bytes)."""
    for number, data in enumerate(stream, 1):
        data = data.rstrip(b"\r\n")
        if not data.strip():
            continue
        try:
            yield number, data.decode("utf-8"), data
        except UnicodeDecodeError:
            yield number, None, data


def _calls(
    stream: IO[bytes],
    name: str,
    fmt: str,
    tenant: str | None,
    received: int,
    engine: Engine,
) -> Iterator[Call]:
    lines = _lines(stream)
    first = next(lines, None)
    if first is None:
        return
    if fmt == "auto":
        fmt = _sniff(first[1] or "")
    rules = engine.rules
    for number, text, data in _prepend(first, lines):
        source = f"{name}:{number}"
        if text is None:
            raw = data.decode("utf-8", "backslashreplace")
            yield rejected(raw, "bad_encoding", received=received, source=source, tenant=tenant)
        elif fmt == "km":
            yield parse_km_line(
                text, tenant=tenant, received=received, source=source, rules=rules
            )
        else:
            yield parse_query(text, tenant=tenant, received=received, source=source, rules=rules)


def _prepend(
    first: tuple[int, str | None, bytes], rest: Iterator[tuple[int, str | None, bytes]]
) -> Iterator[tuple[int, str | None, bytes]]:
    yield first
    yield from rest


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@_db_option
@click.option("--tenant", default=None, help="Tenant for calls that carry no `_k`.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="url: one URL or query string per line; km: Kissmetrics export JSON lines.",
)
@click.option(
    "--received",
    type=int,
    default=None,
    help="Receive time (UTC s) of calls without one [default: the file's mtime; now for -].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def ingest(
    files: Sequence[str],
    db: str,
    tenant: str | None,
    fmt: str,
    received: int | None,
    batch_size: int,
    quiet: bool,
) -> None:
    """Apply the tracking calls in FILES (``-`` for stdin) to the database.

    Bad calls are quarantined with a reason, never dropped; see `identity quarantine`.
    """
    for name in files:
        if name != "-" and not os.path.isfile(name):
            raise InputError(name, "no such file")
    with _open(db, create=True) as engine:
        for name in files:
            if name == "-":
                stamp = received if received is not None else int(time.time())
                summary = engine.ingest(
                    _calls(sys.stdin.buffer, "-", fmt, tenant, stamp, engine),
                    batch_size=batch_size,
                )
            else:
                stamp = received if received is not None else int(os.path.getmtime(name))
                with open(name, "rb") as stream:
                    summary = engine.ingest(
                        _calls(stream, name, fmt, tenant, stamp, engine), batch_size=batch_size
                    )
            if not quiet:
                click.echo(f"{name}: {summary.line()}")


def _person_text(person: Person) -> str:
    rows = [
        ("person", person.id),
        ("tenant", person.tenant),
        ("identities", ", ".join(person.identities)),
        ("customer ids", ", ".join(person.customer_ids)),
        ("events", person.events),
    ]
    rows += [(f"property {name}", value) for name, value in person.properties]
    return tabulate(rows, tablefmt="plain")


@cli.command()
@click.argument("identity")
@_db_option
@_tenant_option
@_as_of_option
@_json_option
def person(identity: str, db: str, tenant: str, as_of: int | None, as_json: bool) -> None:
    """Show the person IDENTITY belongs to."""
    with _open(db) as engine:
        found = engine.person(tenant, identity, as_of=as_of)
        if as_json:
            click.echo(json.dumps(found.as_dict(), ensure_ascii=False))
        else:
            click.echo(_person_text(found))


@cli.command()
@_db_option
@_tenant_option
@_as_of_option
@_json_option
def people(db: str, tenant: str, as_of: int | None, as_json: bool) -> None:
    """List every person of a tenant, also those with no Customer ID yet."""
    with _open(db) as engine:
        if as_json:
            for found in engine.people(tenant, as_of=as_of):
                click.echo(json.dumps(found.as_dict(), ensure_ascii=False))
            return
        rows = [
            (p.id, len(p.identities), ", ".join(p.customer_ids), p.events)
            for p in engine.people(tenant, as_of=as_of)
        ]
        click.echo(tabulate(rows, headers=("person", "identities", "customer ids", "events")))


@cli.command()
@_db_option
@click.option("--tenant", default=None, help="Only this tenant's calls.")
@click.option("--reason", default=None, help="Only calls quarantined for this reason.")
@_json_option
def quarantine(db: str, tenant: str | None, reason: str | None, as_json: bool) -> None:
    """List quarantined calls with their reasons."""
    with _open(db) as engine:
        items = engine.quarantine(tenant, reason=reason)
        if as_json:
            for item in items:
                click.echo(json.dumps(item.as_dict(), ensure_ascii=False))
            return
        rows = [(q.reason, q.sent, q.source, _shorten(q.raw)) for q in items]
        click.echo(tabulate(rows, headers=("reason", "sent", "source", "raw")))


def _shorten(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@cli.command()
@_db_option
def check(db: str) -> None:
    """Recompute people from the stored alias links and compare with what is stored."""
    with _open(db) as engine:
        result = engine.check()
    click.echo(
        f"ok: {result['identities']} identities, {result['links']} links, "
        f"{result['people']} people"
    )


@cli.command()
@click.option(
    "--db",
    default=None,
    type=click.Path(dir_okay=False),
    help="Keep the database here [default: a temporary file].",
)
def demo(db: str | None) -> None:
    """Ingest the sample that ships with identity and print who is who."""
    sample = resources.files("identity").joinpath("data/sample.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = db or os.path.join(tmp, "demo.db")
        with sample.open("rb") as stream, _open(path, create=True) as engine:
            summary = engine.ingest(
                _calls(stream, "sample.txt", "url", None, 1_700_000_000, engine)
            )
            click.echo(f"sample.txt: {summary.line()}\n")
            for tenant in engine.tenants():
                rows = [
                    (
                        p.id,
                        ", ".join(p.identities),
                        ", ".join(p.customer_ids),
                        ", ".join(f"{k}={v}" for k, v in p.properties),
                        p.events,
                    )
                    for p in engine.people(tenant)
                ]
                click.echo(f"tenant {tenant}:")
                headers = ("person", "identities", "customer ids", "properties", "events")
                click.echo(tabulate(rows, headers=headers) + "\n")
            reasons = [(q.reason, _shorten(q.raw, 60)) for q in engine.quarantine()]
            click.echo("quarantined:")
            click.echo(tabulate(reasons, headers=("reason", "raw")))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every error is one line on stderr and a non-zero exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result: Any = cli.main(args=args, prog_name="identity", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("identity: error: aborted", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"identity: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except IdentityError as exc:
        click.echo(f"identity: error: {exc}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"identity: error: {exc.strerror or exc}: {exc.filename or ''}", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
