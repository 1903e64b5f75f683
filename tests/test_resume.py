"""Resumable ingest: a killed or failed run, run again, ends as one uninterrupted run.

The position of each input is committed with the batch that reached it, so the database
never claims more than it holds, and a rerun neither loses nor repeats a call.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import identity
from identity import Engine
from identity.cli import main
from identity.io.resume import Ingest
from identity.io.sources import Input
from identity.store import SCHEMA_VERSION, Store

PACKAGE_ROOT = str(Path(identity.__file__).resolve().parents[1])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def url_lines(n: int, seed: int = 7) -> list[str]:
    """Seeded tracking calls: visitors, sign-ups (aliases), properties, retries, junk."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who = f"anon-{rng.randrange(n // 8 + 1)}"
        user = f"user{rng.randrange(n // 16 + 1)}%40example.com"
        tenant = rng.choice(["shop", "shop", "blog"])
        stamp = "" if rng.random() < 0.3 else f"&_t={1_700_000_000 + i // 3}"
        roll = rng.random()
        if roll < 0.55:
            event = rng.choice(["Viewed+Pricing", "Signed+Up", "Paid", "viewed+pricing"])
            line = f"/e?_k={tenant}&_p={who}&_n={event}&plan={rng.choice(['free', 'pro'])}"
        elif roll < 0.75:
            line = f"/a?_k={tenant}&_p={who}&_n={user}"
        elif roll < 0.95:
            line = f"/s?_k={tenant}&_p={user}&Plan={rng.choice(['free', 'pro', 'team'])}&_d=1"
        elif roll < 0.98:
            line = f"/a?_k={tenant}&_p={who}&_n=undefined"
        else:
            line = f"/e?_k={tenant}&_p={who}"
        out.append(line + stamp)
        if rng.random() < 0.05:
            out.append(out[-1])  # a client retry
    return out


def state(db: str) -> dict[str, Any]:
    """people --json of every tenant, the counts, and the quarantine as a multiset."""
    with Engine(db, create=False) as engine:
        engine.check()
        people = {
            t: [json.dumps(p.as_dict(), sort_keys=True) for p in engine.people(t)]
            for t in engine.tenants()
        }
        quarantine = sorted((q.raw, q.reason, q.received, q.sent) for q in engine.quarantine())
        return {"people": people, "counts": engine.counts(), "quarantine": quarantine}


def input_rows(db: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT source, position, calls, finished FROM inputs").fetchall()


# -- a real kill ------------------------------------------------------------------------------


def test_sigkill_mid_ingest_then_the_same_command_ends_as_one_run(tmp_path: Path) -> None:
    data = tmp_path / "calls.txt"
    lines = url_lines(24_000)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.utime(data, (1_700_000_000, 1_700_000_000))
    size = data.stat().st_size
    reference, victim = str(tmp_path / "reference.db"), str(tmp_path / "victim.db")
    assert main(["ingest", str(data), "--db", reference, "-q"]) == 0

    command = [sys.executable, "-m", "identity.cli", "ingest", str(data), "--db", victim,
               "--batch-size", "200", "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    process = subprocess.Popen(command, env=env)
    seen: tuple[int, int] | None = None
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            seen = _committed(victim)
            if seen is not None and 0 < seen[0] < size * 0.6 and not seen[1]:
                break
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    assert seen is not None
    position, finished = _committed(victim) or (0, 1)
    assert 0 < position < size
    assert not finished

    rerun = subprocess.run([*command[:-1]], env=env, capture_output=True, text=True, check=True)
    assert "resuming after line" in rerun.stderr
    assert state(victim) == state(reference)
    [(_, position, calls, finished)] = input_rows(victim)
    assert (position, finished) == (size, 1)
    assert calls == len(lines)

    again = subprocess.run(command[:-1], env=env, capture_output=True, text=True, check=True)
    assert f"already ingested ({len(lines)} calls)" in again.stdout
    assert state(victim) == state(reference)


def _committed(db: str) -> tuple[int, int] | None:
    if not os.path.exists(db):
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            row = conn.execute("SELECT position, finished FROM inputs").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else (int(row[0]), int(row[1]))


# -- interrupted runs of every kind of input ------------------------------------------------


class Crash(Exception):
    """Stands for the process dying in the middle of a batch."""


def crash_in_batch(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make the `number`-th batch fail after writing its rows, before its commit."""
    original = Engine.apply_batch
    count = 0

    def apply_batch(
        self: Engine, batch: list[Any], *, after: Callable[[Store], None] | None = None
    ) -> Any:
        nonlocal count
        count += 1
        if count != number:
            return original(self, batch, after=after)

        def fail(store: Store) -> None:
            if after is not None:
                after(store)
            raise Crash

        return original(self, batch, after=fail)

    monkeypatch.setattr(Engine, "apply_batch", apply_batch)


ACCESS = "".join(
    f"10.0.0.{i % 7} - - [14/Nov/2023:22:{i // 60 % 60:02d}:{i % 60:02d} +0000] "
    f'"GET {"/static/x.css" if i % 5 == 0 else "/t" + line} HTTP/1.1" 200 43 "-" "Mozilla/5.0"\n'
    for i, line in enumerate(url_lines(600, seed=3))
)
CSV = "Identity,Timestamp,Event,Prop:Plan,Alias\n" + "".join(
    f"user{i % 50}@example.com,{1_700_000_000 + i},{'Paid' if i % 3 else ''},"
    f"{'pro' if i % 4 == 0 else ''},{f'anon-{i}' if i % 3 == 0 else ''}\n"
    for i in range(600)
)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("calls.txt", "\n".join(url_lines(600)) + "\n"),
        ("calls.txt.gz", "\n".join(url_lines(600)) + "\n"),
        ("access.log", ACCESS),
        ("import.csv", CSV),
        ("export.json", "".join(
            json.dumps({"_p": f"p{i % 40}", "_n": "Paid", "_t": i} if i % 4 else
                       {"_p": f"p{i % 40}", "_p2": f"q{i % 9}", "_t": i}) + "\n"
            for i in range(600)
        )),
    ],
)  # fmt: skip
def test_a_failed_run_then_a_rerun_ends_as_one_run(
    name: str, content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / name
    data = content.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    args = [str(path), "--tenant", "shop", "--batch-size", "64"]
    reference, db = str(tmp_path / "reference.db"), str(tmp_path / "a.db")
    assert run(capsys, "ingest", *args, "--db", reference)[0] == 0
    crash_in_batch(monkeypatch, 4)
    with pytest.raises(Crash):
        main(["ingest", *args, "--db", db])
    capsys.readouterr()
    [(_, position, calls, finished)] = input_rows(db)
    assert (calls, finished) == (3 * 64, 0)
    assert 0 < position < path.stat().st_size
    monkeypatch.undo()
    code, out, err = run(capsys, "ingest", *args, "--db", db)
    assert code == 0
    assert "resuming after line" in err
    assert "192 calls already committed" in err
    assert out.startswith(f"{path}: ")
    assert state(db) == state(reference)
    assert input_rows(db) == input_rows(reference)


def test_a_folder_resumes_by_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "export"
    (folder / "revisions").mkdir(parents=True)
    rows = ["Filename,Minimum Timestamp,Maximum Timestamp"]
    for n in (1, 2, 3):
        lines = [json.dumps({"_p": f"p{n}-{i % 30}", "_n": "Seen", "_t": n * 1000 + i})
                 for i in range(200)]  # fmt: skip
        (folder / "revisions" / f"{n}.json").write_text("\n".join(lines) + "\n", "utf-8")
        rows.append(f"revisions/{n}.json,{n * 1000},{n * 1000 + 199}")
    (folder / "index.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = [str(folder), "--tenant", "K", "--batch-size", "150"]
    reference, db = str(tmp_path / "reference.db"), str(tmp_path / "a.db")
    run(capsys, "ingest", *args, "--db", reference)
    crash_in_batch(monkeypatch, 4)  # revision 1: 2 batches; the crash is in revision 2
    with pytest.raises(Crash):
        main(["ingest", *args, "--db", db])
    capsys.readouterr()
    monkeypatch.undo()
    code, out, err = run(capsys, "ingest", *args, "--db", db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("1.json: already ingested (200 calls); nothing to do "
                             "(--force reads it again)")  # fmt: skip
    assert "2.json: resuming after line 150" in err
    assert lines[2].endswith("3.json: 200 calls: 200 accepted, 0 duplicate events, "
                             "0 duplicate property sets, 0 duplicate aliases, 0 quarantined; "
                             "30 new identities, 30 new people, 0 merges")  # fmt: skip
    assert state(db) == state(reference)


# -- reruns: finished, forced, grown, changed -------------------------------------------------


def test_a_finished_file_is_not_read_again_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=a&_n=Paid\n/s?_k=K&_p=a&plan=pro\n/a?_k=K&_p=a&_n=b\n", "utf-8")
    db = str(tmp_path / "a.db")
    run(capsys, "ingest", str(path), "--db", db)
    before = state(db)
    code, out, _ = run(capsys, "ingest", str(path), "--db", db)
    assert (code, out) == (0, f"{path}: already ingested (3 calls); nothing to do "
                               "(--force reads it again)\n")  # fmt: skip
    assert state(db) == before
    # forced: the receive time is the file's mtime again, so every call is a duplicate
    code, out, _ = run(capsys, "ingest", str(path), "--db", db, "--force")
    assert (
        "3 calls: 3 accepted, 1 duplicate events, 1 duplicate property sets, "
        "1 duplicate aliases, 0 quarantined; 0 new identities" in out
    )
    assert state(db)["people"] == before["people"]


def test_a_grown_log_is_read_on_from_where_it_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    line = '1.2.3.4 - - [14/Nov/2023:22:13:{:02d} +0000] "GET /e?_k=K&_p=p{}&_n=Paid HTTP/1.1"'
    line += " 200 43\n"
    log.write_text("".join(line.format(i, i) for i in range(10)), encoding="utf-8")
    db = str(tmp_path / "a.db")
    run(capsys, "ingest", str(log), "--db", db)
    with log.open("a", encoding="utf-8") as stream:
        stream.write("".join(line.format(i, i) for i in range(10, 15)))
        stream.write('1.2.3.4 - - [14/Nov/2023:22:13:59 +0000] "GET /e?_k=K&_p=late&_n=Pa')
    code, out, err = run(capsys, "ingest", str(log), "--db", db)
    assert code == 0
    assert "grew since it was read: reading on after line 10" in err
    assert ": 6 calls: 5 accepted" in out
    assert "malformed=1" in out
    # the unfinished last line is read again once it is complete
    with log.open("a", encoding="utf-8") as stream:
        stream.write('id HTTP/1.1" 200 43\n')
    code, out, err = run(capsys, "ingest", str(log), "--db", db)
    assert code == 0
    assert "reading on after line 15" in err
    assert ": 1 calls: 1 accepted" in out
    assert Engine(db).counts("K")["identities"] == 16


def test_other_content_at_the_same_path_is_read_from_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=a&_n=Paid\n/e?_k=K&_p=b&_n=Paid\n", encoding="utf-8")
    db = str(tmp_path / "a.db")
    run(capsys, "ingest", str(path), "--db", db)
    path.write_text("/e?_k=K&_p=c&_n=Paid\n", encoding="utf-8")
    code, out, err = run(capsys, "ingest", str(path), "--db", db)
    assert code == 0
    assert "other content than when it was read" in err
    assert ": 1 calls: 1 accepted" in out


def test_stdin_is_remembered_by_content_but_never_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    engine = Engine(str(tmp_path / "a.db"))
    for _ in range(2):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"/e?_p=a&_n=x\n")))
        with Ingest(engine, Input("-", "-"), tenant="K") as job:
            assert job.status == "stream"
            assert job.run().accepted == 1
    [row] = input_rows(engine.path)
    assert row[0].startswith("<stdin ")
    assert engine.events("K", "a")[0].sent == 2


def test_positions_count_lines_for_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.txt.gz"
    path.write_bytes(gzip.compress(b"/e?_k=K&_p=a&_n=x\n\n/e?_k=K&_p=b&_n=x\n"))
    engine = Engine(str(tmp_path / "a.db"))
    with Ingest(engine, Input(str(path), str(path))) as job:
        job.run(batch_size=1)
    assert [r[1:] for r in input_rows(engine.path)] == [(3, 2, 1)]


# -- the same content read again --------------------------------------------------------------


def _event_rows(db: str) -> list[tuple[str, int, int, int]]:
    with Engine(db, create=False) as engine:
        return engine.store.conn.execute(
            "SELECT name, t, td, sent FROM events ORDER BY td"
        ).fetchall()


def test_calls_without_t_read_again_are_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a copy of the file (another mtime), stdin, or --force after a touch gave the
    # calls that carry no _t a new receive time, so their events were stored again.
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=bob&_n=Paid\n/e?_k=K&_p=bob&_n=Paid&_t=5\n")
    os.utime(path, (1_000_000, 1_000_000))
    db = str(tmp_path / "x.db")
    assert run(capsys, "ingest", str(path), "--db", db, "-q")[0] == 0
    copy = tmp_path / "copy.txt"
    copy.write_bytes(path.read_bytes())
    os.utime(copy, (2_000_000, 2_000_000))
    assert run(capsys, "ingest", str(copy), "--db", db, "-q")[0] == 0
    os.utime(path, (3_000_000, 3_000_000))
    assert run(capsys, "ingest", str(path), "--db", db, "--force", "-q")[0] == 0
    for _ in range(2):
        monkeypatch.setattr("sys.stdin", _Stdin(path.read_bytes()))
        assert run(capsys, "ingest", "-", "--db", db, "-q")[0] == 0
    assert _event_rows(db) == [("Paid", 1_000_000, 5, 5), ("Paid", 1_000_000, 1_000_000, 5)]


def test_an_explicit_received_is_used_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=bob&_n=Paid\n")
    db = str(tmp_path / "x.db")
    assert run(capsys, "ingest", str(path), "--db", db, "--received", "10", "-q")[0] == 0
    assert run(capsys, "ingest", str(path), "--db", db, "--received", "20", "--force", "-q")[0] == 0
    assert [row[2] for row in _event_rows(db)] == [10, 20]


def test_a_database_of_schema_1_is_migrated_at_open(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    with Engine(db) as engine:
        engine.alias("K", "a", "b", t=5)
        engine.record("K", "b", "Paid", {"plan": "pro"}, t=6)
    # back to schema 1: no inputs.received, no foreign keys, no views
    import sqlite_utils

    old = sqlite_utils.Database(db)
    old.execute("DROP VIEW people")
    old.execute("DROP VIEW person_links")
    for table in ("identities", "links", "events", "properties"):
        keys = [fk.column for fk in old[table].foreign_keys]
        old[table].transform(drop_foreign_keys=keys)
    old.execute("ALTER TABLE inputs DROP COLUMN received")
    old.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    old.conn.commit()
    assert old["events"].foreign_keys == []
    old.close()
    with Engine(db) as engine:
        assert engine.store.meta("schema_version") == str(SCHEMA_VERSION)
        columns = [r[1] for r in engine.store.conn.execute("PRAGMA table_info(inputs)")]
        assert "received" in columns
        assert engine.person("K", "b").identities == ("a", "b")
        assert engine.events("K", "a")[0].properties == (("plan", "pro"),)
        # the rebuilt tables kept their UNIQUE keys: upserts still fold duplicates
        assert engine.record("K", "b", "Paid", {"plan": "pro"}, t=6).status == "duplicate"
        assert engine.alias("K", "b", "c", t=7).status == "applied"
        assert engine.alias("K", "c", "b", t=8).status == "duplicate"
        engine.check()
    migrated = sqlite_utils.Database(db)
    assert {
        (fk.table, fk.column, fk.other_table) for t in migrated.tables for fk in t.foreign_keys
    } == {
        ("identities", "person", "persons"),
        ("links", "a", "identities"),
        ("links", "b", "identities"),
        ("events", "identity", "identities"),
        ("properties", "identity", "identities"),
    }
    assert list(migrated["people"].rows) == [
        {"tenant": "K", "identity": "a", "person": "a", "customer_id": 0, "first_seen": 5,
         "customer_since": None},
        {"tenant": "K", "identity": "b", "person": "a", "customer_id": 1, "first_seen": 5,
         "customer_since": 6},
        {"tenant": "K", "identity": "c", "person": "a", "customer_id": 0, "first_seen": 7,
         "customer_since": None},
    ]  # fmt: skip
    links = sorted((r["a"], r["b"], r["t"], r["sent"]) for r in migrated["person_links"].rows)
    assert links == [("a", "b", 5, 1), ("b", "c", 7, 2)]
    assert {"identities_person"} <= {i.name for i in migrated["identities"].indexes}
    migrated.close()


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BufferedReader(io.BytesIO(data))


def test_a_file_that_grew_gives_its_new_lines_their_own_receive_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.txt"
    path.write_text("/e?_k=K&_p=bob&_n=Paid\n")
    os.utime(path, (1_000_000, 1_000_000))
    db = str(tmp_path / "x.db")
    assert run(capsys, "ingest", str(path), "--db", db, "-q")[0] == 0
    with path.open("a") as stream:
        stream.write("/e?_k=K&_p=bob&_n=Left\n")
    os.utime(path, (2_000_000, 2_000_000))
    assert run(capsys, "ingest", str(path), "--db", db, "-q")[0] == 0
    assert [(row[0], row[2]) for row in _event_rows(db)] == [
        ("Paid", 1_000_000),
        ("Left", 2_000_000),
    ]


def test_an_export_index_with_an_impossible_time_uses_the_revision_mtime(tmp_path: Path) -> None:
    from identity.io.sources import expand

    folder = tmp_path / "export"
    (folder / "revisions").mkdir(parents=True)
    (folder / "revisions" / "1.json").write_text('{"_p": "bob", "_n": "x"}\n')
    (folder / "index.csv").write_text("Filename,Minimum,Maximum\n1.json,0," + "9" * 5000 + "\n")
    [revision] = expand([str(folder)])
    assert revision.received is None
