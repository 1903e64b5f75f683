"""The Spark audit engine gives the in-memory engine's report for the same files.

One local session serves the whole run (``spark`` in conftest); the inputs are the DuckDB
engine's test inputs (hostile lines, every format, gzip with and without ``.gz``, CRLF, a byte
order mark, bad UTF-8, generated shapes with a chain of 12,000 links, hubs, self-loops,
duplicates and junk), combined so that few audits run: Spark's cost is per job, not per line.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_audit_engines import RECEIVED, _assert_same, _memory, files  # noqa: F401

from identity.audit.engines import memory
from identity.audit.engines import spark as engine
from identity.audit.model import Audit
from identity.cli import cli, ingest_inputs
from identity.io.sources import expand


def _memory_received(paths: Sequence[str], received: int) -> Audit:
    def ingest(into: Any, _: object) -> None:
        ingest_inputs(into, expand(paths), received=received, quiet=True)

    return memory.audit_files(paths, ingest=ingest)


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file of the lines Spark's reader could get wrong: BOM, CR, an over-long line."""
    path = tmp_path_factory.mktemp("audit-spark") / "odd.txt"
    path.write_bytes(
        b"\xef\xbb\xbf/e?_k=K&_p=first&_n=x\r\n"
        + b"/e?_k=K&_p=long&_n=" + b"x" * (1 << 20) + b"\n"
        + b"/e?_k=K&_p=cr\rmid&_n=x\r\r\n\n \n"
        + b"/a?_k=K&_p=first&_n=cr%0Dmid&_t=5&_d=1\n"
        + b" " * (1 << 20) + b"\n"
        + b"/e?_k=K&_p=last&_n=x"
    )  # fmt: skip
    os.utime(path, (RECEIVED, RECEIVED))
    return str(path)


def test_spark_audit_of_hostile_lines_every_format_and_stdin(
    spark: Any,
    files: dict[str, list[str]],  # noqa: F811
    odd: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stdin (read on the driver); hostile.txt named four ways (read once); a .gz-less gzip
    # file (read on the driver); gzip, CRLF, BOM, bad UTF-8, over-long lines; every format
    hostile = Path(files["hostile"][0])
    monkeypatch.chdir(hostile.parent)
    paths = ["-", *files["hostile"], *files["formats"], odd, hostile.name, f"./{hostile.name}"]
    data = hostile.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    want = _memory_received(paths, RECEIVED)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    got = engine.audit(paths, received=RECEIVED, session=spark)
    _assert_same(want, got)
    names = [name for name, _ in got.sources]
    assert names.count(str(hostile.resolve())) == 1
    assert any(name.startswith("<stdin ") for name in names)


def test_spark_audit_of_generated_shapes(spark: Any, files: dict[str, list[str]]) -> None:  # noqa: F811
    # a chain of 12,000 links, power-law hubs, shared devices, retries, junk, three tenants
    paths = files["mixed"] + files["chains"] + files["retries"]
    _assert_same(_memory(paths), engine.audit(paths, session=spark))


@pytest.fixture(scope="module")
def imports(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A Kissmetrics CSV import file (BOM, CRLF, a header) and a Data Export folder."""
    root = tmp_path_factory.mktemp("audit-spark-imports")
    csv = root / "import.csv"
    csv.write_bytes(
        "\ufeffIdentity,Timestamp,Event,Prop:Billing Amount,Prop:Plan,Alias\r\n"
        "bob@bob.com,1328044149,Subscribed,9.99,pro,\r\n"
        "\r\n"
        "matt@bob.com,,,,,matt.smith@bob.com\r\n"
        "joe@bob.com,1325974373,,,free,\r\n"
        '"Smith, Phil",1325629592,Subscribed,,,\r\n'
        "ann@bob.com,yesterday,Subscribed,,,\r\n"
        "matt.smith@bob.com,1328044150,Paid,5,,bob@bob.com\r\n"
        "too,many,cells,1,2,3,4\r\n".encode()
    )
    folder = root / "km-export"
    (folder / "revisions").mkdir(parents=True)
    (folder / "index.csv").write_text(
        "Filename,Minimum Timestamp,Maximum Timestamp\n"
        "revisions/2.json,1393344600,1393344700\n"
        "revisions/10.json,1393344700,1393344800\n",
        encoding="utf-8",
    )
    (folder / "revisions" / "2.json").write_bytes(
        b'{"_n":"visited site","_p":"anon-1","_t":1393344604}\r\n'
        b'{"url":"www.example.com/","_n":"Caf\\303\\251 menu","_p":"anon-1","_t":1393344607}\n'
        b'{"_p":"anon-1","_p2":"bob@bob.com","_t":1393344614}\n'
        b"\n"
    )
    (folder / "revisions" / "10.json").write_bytes(
        b'{"_p":"bob@bob.com","plan":"pro","_t":1393344701}\n'
        b'{"_p":"bob@bob.com","_n":"Paid","amount":49.9,"_t":1393344702\n'  # truncated
        b'{"_p":"bob@bob.com","_n":"Caf\xe9"}\n'  # Latin-1, and no _t
        b'{"_p":"bob@bob.com","_n":"Logged In"}\n'  # no _t: the index's latest time
    )
    for path in (csv, folder / "revisions" / "2.json", folder / "revisions" / "10.json"):
        os.utime(path, (RECEIVED, RECEIVED))
    return [str(csv), str(folder)]


def test_spark_audit_with_default_tenant_tenant_and_as_of(
    spark: Any,
    files: dict[str, list[str]],  # noqa: F811
    imports: list[str],
) -> None:
    paths = files["formats"] + imports  # km, jsonl, access, url, csv, a Data Export
    got = engine.audit(paths, default_tenant="K", session=spark)
    _assert_same(_memory(paths, default_tenant="K"), got)
    assert got.identities > 10
    paths = files["mixed"]
    as_of = 1_262_304_000 + 3 * 86_400
    want = _memory(paths, tenant="tenant-2", as_of=as_of)
    _assert_same(want, engine.audit(paths, tenant="tenant-2", as_of=as_of, session=spark))


def test_cli_spark_json_equals_memory_json(spark: Any, files: dict[str, list[str]]) -> None:  # noqa: F811
    # the CLI makes no session of its own while one is active, and leaves it running
    path = files["hostile"][0]
    runner = CliRunner()
    documents = []
    for name in ("memory", "spark"):
        result = runner.invoke(cli, ["audit", path, "--engine", name, "--json", "-q"])
        assert result.exit_code == 0, result.output
        documents.append(json.loads(result.output))
    assert documents[1] == documents[0]
    assert spark.range(3).count() == 3


def test_spark_audit_refuses_a_missing_file(spark: Any, tmp_path: Path) -> None:
    from identity.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        engine.audit([str(tmp_path / "missing.txt")], session=spark)


def test_core_never_imports_pyspark() -> None:
    import subprocess

    code = (
        "import sys, identity, identity.cli, identity.audit.command\n"
        "import identity.audit.engines.memory\n"
        "assert 'pyspark' not in sys.modules, 'pyspark imported'\n"
        "assert 'identity.audit.engines.spark' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spark_reading_equals_the_reader_line_by_line_across_splits(
    spark: Any,
    files: dict[str, list[str]],  # noqa: F811
    odd: str,
) -> None:
    from identity.io.sources import Reader

    paths = [files["hostile"][0], files["mixed"][0], odd]  # odd: lines across splits
    want = []
    for path in paths:
        with Reader(path) as reader:
            want += [(c.source, c.kind, c.tenant, c.identity, c.name, c.t, c.td, c.raw, c.reason)
                     for c in reader]  # fmt: skip
    conf = spark.conf
    saved = conf.get("spark.sql.files.maxPartitionBytes")
    conf.set("spark.sql.files.maxPartitionBytes", "65536")  # many splits a file
    try:
        calls, read = engine._read(
            spark, expand(paths), fmt="auto", default_tenant=None, received=None, progress=None
        )
        assert calls.rdd.getNumPartitions() > 2 * len(paths)
        got = calls.select(
            "source", "kind", "tenant", "identity", "name", "t", "td", "raw", "reason"
        ).collect()
    finally:
        conf.set("spark.sql.files.maxPartitionBytes", saved)
    assert sorted(tuple(r) for r in got) == sorted(want)
    assert [n for _, n in read] == [sum(1 for w in want if w[0].startswith(p + ":")) for p in paths]
