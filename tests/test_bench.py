"""Tests of the benchmark harness itself (`bench`): tiny sizes, and never a time asserted."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import measure, scale, subjects
from bench.__main__ import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def run_main(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


# --- the report --------------------------------------------------------------------------------


def test_report_prints_every_row_and_goal() -> None:
    text = run_main(
        "report", "--calls", "300", "--pairs", "400", "--identities", "500",
        "--repeat", "1", "--quiet",
    )  # fmt: skip
    for row in (
        "core UnionFind",
        "networkx UnionFind",
        "scipy connected_components",
        "partition: core, networkx, scipy",
        "identity ingest",
        "floor: parse_qsl + one executemany",
        "peak RSS",
        "engine._cache after the ingest",
        "Engine(path) + first person_of",
        "person lookups",
        "same_person",
    ):
        assert row in text, row
    assert "goals met: " in text
    # correctness goals hold at any size, speed goals may not: look at those two only
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert lines["partition: core, networkx, scipy"].rstrip(" |").endswith("pass")
    assert lines["lines applied: identity ingest, floor"].rstrip(" |").endswith("pass")


def test_report_json_with_sections_skipped(tmp_path: Path) -> None:
    text = run_main(
        "report", "--calls", "0", "--pairs", "300", "--identities", "300",
        "--repeat", "1", "--quiet", "--json", "--workdir", str(tmp_path),
    )  # fmt: skip
    data = json.loads(text)
    titles = [section["title"] for section in data["sections"]]
    assert [t.split(":")[0] for t in titles] == ["union-find", "reopen"]
    assert data["raw"]["union_find"]["same_partition"] is True
    assert data["raw"]["reopen"]["identities"] == 300
    assert data["goals"] == 4  # speed, partition, memory, reopen
    assert (tmp_path / "reopen.db").exists()  # --workdir keeps the files


def test_report_parser_defaults_are_the_goal_sizes() -> None:
    args = build_parser().parse_args(["report"])
    assert (args.calls, args.pairs, args.identities) == (1_000_000, 1_000_000, 1_000_000)
    assert build_parser().parse_args(["report", "--calls", "1e4"]).calls == 10_000
    assert {"generate", "report", "scale"} <= set(COMMANDS)


# --- floor and engine --------------------------------------------------------------------------


def test_floor_and_engine_agree_on_the_number_of_lines(tmp_path: Path) -> None:
    lines = tmp_path / "issue2.url"
    written = subjects.write_issue2(lines, 250)
    floor_rows = subjects.floor_ingest(subjects.read_lines(lines), tmp_path / "floor.db")
    summary = subjects.engine_ingest(subjects.read_lines(lines), tmp_path / "engine.db")
    calls, output = subjects.cli_ingest(str(lines), str(tmp_path / "cli.db"))
    assert written == floor_rows == summary.calls == calls == 250, output
    assert summary.accepted == 250


def test_floor_keeps_every_parameter(tmp_path: Path) -> None:
    import sqlite3

    line = "/e?_k=K&_p=bob%40x.com&_n=Signed+Up&plan=pro&_t=17&_d=1"
    assert subjects.floor_ingest([line], tmp_path / "f.db") == 1
    row = sqlite3.connect(tmp_path / "f.db").execute("SELECT * FROM calls").fetchone()
    assert row == (1, "e", "K", "bob@x.com", "Signed Up", "17", "1", '{"plan":"pro"}')


def test_generate_then_ingest(tmp_path: Path) -> None:
    lines = tmp_path / "calls.url"
    db = tmp_path / "calls.db"
    env = measure.child_env()
    generate = [sys.executable, "-m", "bench", "generate", "-n", "200", "--shape", "issue2"]
    subprocess.run([*generate, "-o", str(lines)], check=True, env=env, cwd=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "identity.cli", "ingest", str(lines), "--db", str(db)],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "200 calls" in done.stdout


def test_scale_runs_generate_and_ingest(tmp_path: Path) -> None:
    result = scale.run(300, workdir=str(tmp_path), progress=None)
    assert result.calls == 300
    assert result.ingest.status == result.generate.status == 0
    assert result.ingest.max_rss > 0
    assert result.db_bytes > 0
    assert "300 calls" in result.summary
    assert "calls/s (wall)" in result.text()
    assert json.loads(json.dumps(result.as_dict()))["calls"] == 300
    assert not any(tmp_path.iterdir())  # without --keep the files go


def test_scale_repeats_the_ingest_and_the_floor_in_turns_and_reports_the_median(
    tmp_path: Path,
) -> None:
    result = scale.run(300, workdir=str(tmp_path), progress=None, floor=True, repeat=3)
    assert len(result.ingest_runs) == len(result.floor_runs) == 3
    cpu = sorted(run.cpu_s for run in result.ingest_runs)
    assert result.ingest in result.ingest_runs
    assert result.ingest.cpu_s == cpu[1]
    assert result.floor in result.floor_runs
    shares = sorted(
        f.cpu_s / i.cpu_s for i, f in zip(result.ingest_runs, result.floor_runs, strict=True)
    )
    assert result.floor_share == shares[1]  # the median turn, each ingest with its floor
    assert "300 calls" in result.summary
    series = scale.ScaleSeries((result,))
    assert "CPU per call, every run" in series.text()
    assert len(series.as_dict()["sizes"][0]["ingest_runs"]) == 3
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        scale.run(300, workdir=str(tmp_path), progress=None, repeat=0)


# --- building blocks ----------------------------------------------------------------------------


def test_alias_pairs_cover_the_identities_and_partitions_agree() -> None:
    pairs = subjects.alias_pairs(500, 400, seed=3)
    assert len(pairs) == 500
    assert len({x for pair in pairs for x in pair}) == 400
    assert pairs == subjects.alias_pairs(500, 400, seed=3)
    found = [subjects.canonical(fn(pairs)) for fn in subjects.PARTITIONS.values()]
    assert found[0] == found[1] == found[2]
    assert subjects.partition_scipy([]) == []


def test_build_db_makes_exactly_n_identities(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    assert subjects.build_db(db, 123) == 123
    assert subjects.build_db(db, 150) == 150  # tops up
    with pytest.raises(ValueError, match="already holds"):
        subjects.build_db(db, 100)
    (tenant, identity), *_ = subjects.sample_identities(db, 3)
    assert subjects.reopen_lookup(db, tenant, identity) <= identity


def test_child_measurements_report_json(tmp_path: Path) -> None:
    lines = tmp_path / "l.url"
    subjects.write_issue2(lines, 100)
    floor = measure.run_child("floor", {"lines": str(lines), "db": str(tmp_path / "f.db")})
    assert floor["rows"] == 100
    assert floor["max_rss"] >= floor["baseline_rss"] > 0
    ingest = measure.run_child(
        "ingest", {"lines": str(lines), "db": str(tmp_path / "e.db"), "memory": True}
    )
    assert ingest["calls"] == 100
    assert set(ingest["bytes"]) == {"cache", "networkx", "core"}
    assert all(size > 0 for size in ingest["bytes"].values())
    with pytest.raises(measure.ChildError, match="floor"):
        measure.run_child(
            "floor", {"lines": str(tmp_path / "missing"), "db": str(tmp_path / "x.db")}
        )


def test_round_robin_keeps_every_repeat() -> None:
    calls: list[str] = []
    timings = measure.RoundRobin(repeat=2).run(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    )
    assert calls == ["a", "b", "a", "b"]
    assert len(timings["a"].cpu) == len(timings["b"].wall) == 2
    assert timings["a"].as_dict()["cpu_median_s"] >= 0


def test_memory_helpers() -> None:
    held, mem = measure.traced(lambda: [object() for _ in range(1000)])
    assert mem.retained >= 16 * 1000
    assert mem.peak >= mem.retained
    assert len(held) == 1000
    assert measure.deep_size(["x" * 100]) == measure.deep_size([""])
    assert measure.max_rss() > 1 << 20


def test_parse_time_v_minutes_and_hours() -> None:
    text = "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5\n"
    assert scale.parse_time_v(text) == {"elapsed": 3723.5}
