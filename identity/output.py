"""Command-line output: one way to turn rows into text, whatever the command (no click here).

A command describes its rows once — the columns of a table (display strings, made here and
nowhere else) and the JSON object of each row — and :func:`render` writes them in the format
the user asked for: an aligned table (any ``tabulate`` format), JSON objects one a line, CSV or
TSV. The command line's ``--json --nl --csv --tsv --table --fmt --no-headers`` flags
(:class:`Options`) choose it, as sqlite-utils' ``output_options`` do.

Examples
--------
>>> columns = [Column("person", lambda p: p["id"]), Column("events", lambda p: p["n"])]
>>> rows = [{"id": "anon-1", "n": 2}, {"id": "bob", "n": 10}]
>>> for line in render(rows, columns, lambda p: p, Options("table")):
...     print(line)
person      events
--------  --------
anon-1           2
bob             10
>>> for line in render(rows, columns, lambda p: p, Options("csv")):
...     print(line)
person,events
anon-1,2
bob,10
>>> for line in render(rows, columns, lambda p: p, Options("nl")):
...     print(line)
{"id": "anon-1", "n": 2}
{"id": "bob", "n": 10}
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

from tabulate import tabulate, tabulate_formats  # type: ignore[import-untyped]

__all__ = ["FORMATS", "TABLE_FORMATS", "Column", "Options", "OutputFormat", "render"]

T = TypeVar("T")

#: ``table`` (aligned, the default), ``nl`` (one JSON object a line; ``--json`` too), ``csv``,
#: ``tsv``.
OutputFormat = Literal["table", "nl", "csv", "tsv"]
FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)

#: Table styles ``--fmt`` accepts (tabulate's).
TABLE_FORMATS: tuple[str, ...] = tuple(sorted(tabulate_formats))


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    """One column of a listing: its header and how to get its value from a row."""

    header: str
    value: Callable[[T], object]


@dataclass(frozen=True, slots=True)
class Options:
    """How to print rows (from the command line's output flags).

    Attributes
    ----------
    format : {"table", "nl", "csv", "tsv"}
        The format.
    table_format : str
        The ``tabulate`` style of a table (``simple``; ``plain``, ``github``, ``grid``...).
    headers : bool
        Print the header line (tables, CSV, TSV).
    """

    format: OutputFormat = "table"
    table_format: str = "simple"
    headers: bool = True


def _cell(value: object) -> object:
    """Return a value as a table or CSV shows it: lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def render(
    rows: Iterable[T],
    columns: Sequence[Column[T]],
    as_json: Callable[[T], dict[str, Any]],
    options: Options,
) -> Iterator[str]:
    """Yield the text of `rows`, one string a line (without line breaks).

    Parameters
    ----------
    rows : iterable
        The rows, streamed for JSON, CSV and TSV (a table needs them all to align).
    columns : sequence of Column
        What a table, CSV or TSV shows.
    as_json : callable
        The JSON object of a row.
    options : Options
        The format.

    Notes
    -----
    Memory is O(1) rows except for tables, which hold every row to align the columns.
    """
    if options.format == "nl":
        for row in rows:
            yield json.dumps(as_json(row), ensure_ascii=False)
        return
    if options.format in ("csv", "tsv"):
        buffer = io.StringIO()
        writer = csv.writer(
            buffer, dialect="excel" if options.format == "csv" else "excel-tab", lineterminator=""
        )

        def line(cells: Sequence[object]) -> str:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(cells)
            return buffer.getvalue()

        if options.headers:
            yield line([c.header for c in columns])
        for row in rows:
            yield line([_cell(c.value(row)) for c in columns])
        return
    table = [[_cell(c.value(row)) for c in columns] for row in rows]
    headers = [c.header for c in columns] if options.headers else ()
    text = str(tabulate(table, headers=headers, tablefmt=options.table_format))
    if text:
        yield from text.split("\n")
