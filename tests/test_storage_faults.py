"""Storage faults: each is one documented exception from the library, one line from the CLI.

Every fault is produced for real on a database file: a lock held by another process, a
page overwritten with garbage, a dropped table, a file made read-only (or its folder),
``PRAGMA max_page_count`` for a full disk, an empty file, a truncated file, a newer schema.
Data is never changed by the failed command.

Read-only files cannot be produced by ``chmod`` for root (root writes anyway), so when the
tests run as root the commands run in a subprocess as the ``nobody`` user, for whom the
permissions hold.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from identity import (
    DamagedDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    Engine,
    ReadOnlyDatabaseError,
    StoreError,
)
from identity.cli import main
from identity.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHORT = "0.2"  # seconds of busy timeout: the lock tests wait this long, not 10 s

# where `identity graph` writes (the database's folder may be read-only; anyone may write here)
GRAPH_OUT = os.path.join(tempfile.gettempdir(), f"identity-fault-{uuid.uuid4().hex}.graphml")


@pytest.fixture(autouse=True, scope="module")
def _no_graph_left_behind() -> Iterator[None]:
    yield
    for leftover in (GRAPH_OUT, f"{GRAPH_OUT}.partial"):
        if os.path.exists(leftover):
            os.remove(leftover)


# every command that takes --db, with the arguments that make it read everything
COMMANDS: dict[str, list[str]] = {
    "ingest": ["ingest", "{calls}", "--db", "{db}", "--format", "url"],
    "person": ["person", "{last}", "--db", "{db}", "--tenant", "K"],
    "people": ["people", "--db", "{db}", "--tenant", "K"],
    "quarantine": ["quarantine", "--db", "{db}"],
    "export": ["export", "--db", "{db}", "--tenant", "K"],
    "check": ["check", "--db", "{db}"],
    "explain": ["explain", "{last}", "user-00000", "--db", "{db}", "--tenant", "K"],
    "risky": ["risky", "--db", "{db}", "--tenant", "K"],
    "what-if": ["what-if", "--db", "{db}", "--tenant", "K", "--drop-identity", "{last}"],
    "diff": ["diff", "--db", "{db}", "--tenant", "K", "--from", "0", "--to", "9999999999"],
    "graph": ["graph", "{last}", "--db", "{db}", "--tenant", "K", "-o", GRAPH_OUT],
}
QUERIES = [name for name in COMMANDS if name != "ingest"]
LAST = "user-02999"  # the identity with the largest row id: on the last leaf page


def build(path: Path, people: int = 3000) -> Path:
    """An identity database with enough rows to span many pages, cleanly closed."""
    lines = [f"/e?_k=K&_p=user-{i:05d}&_n=Viewed&_t={i + 1}" for i in range(people)]
    lines += [f"/a?_k=K&_p=user-{i:05d}&_n=user-{i + 1:05d}&_t=5" for i in range(0, people, 7)]
    lines += ["/e?_k=K&_p=bob", "/e?_k=&_p=x&_n=y"]  # two quarantined calls
    with Engine(path) as engine:
        engine.ingest(lines, received=10)
    assert not Path(f"{path}-wal").exists()  # checkpointed: the file alone holds it all
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("template") / "id.db")


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "id.db"
    shutil.copyfile(template, path)
    return path


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    path = tmp_path / "new.txt"
    path.write_text(
        "".join(f"/e?_k=K&_p=new-{i}&_n=Signed+Up&_t=7\n" for i in range(3000)), encoding="utf-8"
    )
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def root_page(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    finally:
        conn.close()
    return int(root)


def last_leaf(path: Path, table: str) -> int:
    """The page number of the right-most leaf of a table's b-tree (its largest row ids)."""
    data, size = path.read_bytes(), page_size(path)
    number = root_page(path, table)
    while data[(number - 1) * size] == 0x05:  # an interior table page: follow its right edge
        start = (number - 1) * size
        number = int.from_bytes(data[start + 8 : start + 12], "big")
    assert data[(number - 1) * size] == 0x0D  # a table leaf
    return number


def overwrite_page(path: Path, number: int, *, keep: int = 0) -> None:
    """Overwrite a page (after its first `keep` bytes) with garbage, as a bad sector would."""
    size = page_size(path)
    with open(path, "r+b") as stream:
        stream.seek((number - 1) * size + keep)
        stream.write((b"\xde\xad\xbe\xef" * size)[: size - keep])


def damage(path: Path) -> Path:
    """Damage the last leaf of ``identities`` and the only page of ``quarantine``."""
    overwrite_page(path, last_leaf(path, "identities"))
    overwrite_page(path, root_page(path, "quarantine"))
    return path


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def command(name: str, db: Path, calls: Path | str = "calls.txt") -> list[str]:
    return [a.format(db=db, calls=calls, last=LAST) for a in COMMANDS[name]]


def assert_one_error_line(code: int, out: str, err: str, *words: str) -> None:
    assert code == 1, (out, err)
    assert out == "", out
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    assert err.startswith("identity: error: "), err
    for word in words:
        assert word in err, err


# -- a locked database ----------------------------------------------------------------

HOLD = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
else:
    conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE meta SET value = value WHERE key = 'generation'")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def locked(path: Path, mode: str = "write") -> Iterator[subprocess.Popen[str]]:
    """Another process holding a write transaction (``exclusive``: readers are locked out)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_BUSY_TIMEOUT", SHORT)


@pytest.mark.usefixtures("short_timeout")
def test_locked_library_names_the_writer(db: Path) -> None:
    with Engine(db, create=False) as engine:
        before = engine.counts()
    with locked(db) as holder, Engine(db, create=False) as engine:
        assert engine.counts() == before  # readers are not held up by a writer (WAL)
        with pytest.raises(DatabaseLockedError) as caught:
            engine.record("K", "someone", "Paid")
    message = str(caught.value)
    assert f"pid {holder.pid}" in message
    assert "for more than 0.2 s" in message
    assert "IDENTITY_BUSY_TIMEOUT" in message
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    with Engine(db, create=False) as engine:  # the lock gone, the same call works
        assert engine.counts() == before
        engine.record("K", "someone", "Paid")
        engine.check()


def test_busy_timeout_is_a_keyword_and_validated(db: Path) -> None:
    store = Store(db, create=False, busy_timeout=0.05)
    assert store.busy_timeout == 0.05
    with locked(db), pytest.raises(DatabaseLockedError, match=r"more than 0\.05 s"):
        store.transaction().__enter__()
    store.close()
    with pytest.raises(ValueError, match="busy_timeout"):
        Store(db, busy_timeout=-1)


def test_busy_timeout_from_the_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def timeout() -> float:
        store = Store(db)
        store.close()
        return store.busy_timeout

    monkeypatch.delenv("IDENTITY_BUSY_TIMEOUT", raising=False)
    assert timeout() == 10.0
    monkeypatch.setenv("IDENTITY_BUSY_TIMEOUT", "2.5")
    assert timeout() == 2.5
    monkeypatch.setenv("IDENTITY_BUSY_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="IDENTITY_BUSY_TIMEOUT"):
        Store(db)


@pytest.mark.usefixtures("short_timeout")
def test_locked_exclusively_library_at_open(db: Path) -> None:
    with locked(db, "exclusive") as holder:
        with pytest.raises(DatabaseLockedError, match=f"pid {holder.pid}"):
            Engine(db, create=False)
        with pytest.raises(DatabaseLockedError):
            Store(db).checkpoint()


@pytest.mark.usefixtures("short_timeout")
def test_locked_cli_ingest_is_one_line(
    db: Path, calls: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(db)
    with locked(db) as holder:
        code, out, err = run(capsys, command("ingest", db, calls))
        assert_one_error_line(code, out, err, "locked", f"pid {holder.pid}", "0.2 s")
        for name in QUERIES:  # the others only read: a writer does not hold them up
            code, out, err = run(capsys, command(name, db))
            assert code == 0, (name, err)
    assert digest(db) == before
    assert run(capsys, command("ingest", db, calls))[0] == 0  # nothing recorded as read


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize("name", list(COMMANDS))
def test_locked_exclusively_cli_is_one_line(
    name: str, db: Path, calls: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with locked(db, "exclusive") as holder:
        code, out, err = run(capsys, command(name, db, calls))
    assert_one_error_line(code, out, err, "database is locked", f"pid {holder.pid}")


# -- a damaged page -------------------------------------------------------------------


def test_damaged_page_library(db: Path) -> None:
    damage(db)
    with Engine(db, create=False) as engine:  # opens: nothing at open reads those pages
        with pytest.raises(DamagedDatabaseError, match="malformed"):
            list(engine.people("K"))
        with pytest.raises(DamagedDatabaseError, match="damaged"):
            engine.check()
        with pytest.raises(DamagedDatabaseError, match="malformed"):
            engine.person("K", LAST)
        with pytest.raises(DamagedDatabaseError, match="malformed"):
            list(engine.quarantine())
        with pytest.raises(DamagedDatabaseError, match="malformed"):
            engine.record("K", "newcomer", "Paid")
        assert engine.person_of("K", "user-00000") == "user-00000"  # intact pages still read


def test_damaged_page_surfaces_while_rows_stream(db: Path) -> None:
    damage(db)
    with Engine(db, create=False) as engine:
        rows = engine.store.export_identities("K")
        first = next(rows)  # the stream starts fine ...
        assert first[1] == "user-00000"
        with pytest.raises(DamagedDatabaseError) as caught:
            for _ in rows:  # ... and fails where the damaged page is
                pass
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_damaged_page_cli_is_one_line(
    name: str, db: Path, calls: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(db)
    before = digest(db)
    code, out, err = run(capsys, command(name, db, calls))
    assert_one_error_line(code, out, err, "damaged")
    assert digest(db) == before


def test_damaged_page_export_prints_nothing_of_what_it_read(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overwrite_page(db, last_leaf(db, "identities"))
    with Engine(db, create=False) as engine:  # thousands of lines come before the damage
        rows = engine.store.export_identities("K")
        read = 0
        with pytest.raises(DamagedDatabaseError):  # noqa: PT012 - counts the rows first
            for _ in rows:
                read += 1
        assert read > 1000
    code, out, err = run(capsys, ["export", "--db", str(db), "--tenant", "K"])
    assert_one_error_line(code, out, err, "malformed")
    kept = tmp_path / "kept.json"
    kept.write_text("an earlier export\n", encoding="utf-8")
    code, out, err = run(capsys, ["export", "--db", str(db), "--tenant", "K", "-o", str(kept)])
    assert_one_error_line(code, out, err, "malformed")
    assert kept.read_text(encoding="utf-8") == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("kept")) == ["kept.json"]


def damage_schema(path: Path) -> Path:
    """Overwrite page 1 after its 100-byte file header: the schema table is gone."""
    overwrite_page(path, 1, keep=100)
    return path


def test_damaged_schema_page_library_at_open(db: Path) -> None:
    damage_schema(db)
    with pytest.raises(DamagedDatabaseError, match="malformed"):
        Engine(db, create=False)
    with pytest.raises(DamagedDatabaseError):
        Engine(db)  # create=True does not mean: write a schema over it


@pytest.mark.parametrize("name", list(COMMANDS))
def test_damaged_schema_page_cli_at_open(
    name: str, db: Path, calls: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_schema(db)
    before = digest(db)
    code, out, err = run(capsys, command(name, db, calls))
    assert_one_error_line(code, out, err, "damaged")
    assert digest(db) == before


# -- a missing table, a newer schema, an empty file, a truncated file ------------------


def drop_inputs(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE inputs")
    conn.commit()
    conn.close()
    return path


def newer_schema(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncate_mid_page(path: Path) -> Path:
    os.truncate(path, path.stat().st_size // 2 + 100)
    return path


def truncate_whole_pages(path: Path) -> Path:
    size = page_size(path)
    os.truncate(path, (path.stat().st_size // size // 2) * size)
    return path


def truncate_header(path: Path) -> Path:
    os.truncate(path, 60)
    return path


AT_OPEN: list[tuple[Any, type[StoreError], str]] = [
    (drop_inputs, DamagedDatabaseError, "no 'inputs' table"),
    (newer_schema, StoreError, "schema version 99 is newer"),
    (truncate_mid_page, DamagedDatabaseError, "truncated"),
    (truncate_whole_pages, DamagedDatabaseError, "truncated"),
    (truncate_header, DamagedDatabaseError, "truncated"),
]


@pytest.mark.parametrize(("fault", "error", "message"), AT_OPEN)
@pytest.mark.parametrize("create", [False, True])
def test_refused_at_open_library(
    fault: Any, error: type[StoreError], message: str, create: bool, db: Path
) -> None:
    fault(db)
    before = digest(db)
    with pytest.raises(StoreError, match=message) as caught:
        Engine(db, create=create)
    assert type(caught.value) is error
    assert digest(db) == before
    assert not Path(f"{db}-wal").exists()


@pytest.mark.parametrize(("fault", "error", "message"), AT_OPEN)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_refused_at_open_cli(
    fault: Any,
    error: type[StoreError],
    message: str,
    name: str,
    db: Path,
    calls: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fault(db)
    before = digest(db)
    code, out, err = run(capsys, command(name, db, calls))
    assert_one_error_line(code, out, err, message)
    assert digest(db) == before


def test_empty_file_library(tmp_path: Path) -> None:
    path = empty(tmp_path / "empty.db")
    with pytest.raises(StoreError, match=r"empty file \(0 bytes\), not an identity database"):
        Engine(path, create=False)
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    with Engine(path) as engine:  # a writer may create the schema in it
        engine.record("K", "bob", "Paid")
    assert Engine(path, create=False).counts()["identities"] == 1


def test_empty_sqlite_database_is_not_given_a_schema_by_a_query(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")  # a valid SQLite file with no tables
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="an empty SQLite database"):
        Engine(path, create=False)
    assert digest(path) == before


@pytest.mark.parametrize("name", QUERIES)
def test_empty_file_cli_queries_refuse_it(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = empty(tmp_path / "empty.db")
    code, out, err = run(capsys, command(name, path))
    assert_one_error_line(code, out, err, "empty file", "not an identity database")
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_empty_file_cli_ingest_creates_the_schema(
    tmp_path: Path, calls: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = empty(tmp_path / "empty.db")
    code, _, err = run(capsys, command("ingest", path, calls))
    assert code == 0, err
    assert run(capsys, command("check", path))[0] == 0


# -- a full disk ----------------------------------------------------------------------


def limit_pages(engine: Engine, room: int = 1) -> None:
    """Let the database grow by `room` pages only: SQLite then fails with SQLITE_FULL."""
    conn = engine.store.conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages + room}")


def test_disk_full_library(db: Path) -> None:
    with Engine(db, create=False) as engine:
        before = engine.counts()
        limit_pages(engine)
        new = [f"/e?_k=K&_p=new-{i}&_n=Signed+Up&_t=7" for i in range(3000)]
        with pytest.raises(DiskFullError, match="disk is full") as caught:
            engine.ingest(new, received=20)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert not engine.store.conn.in_transaction  # rolled back
        assert engine.counts() == before
        engine.store.conn.execute("PRAGMA max_page_count = 1073741823")
        engine.ingest(new[:10], received=20)  # the next transaction can begin
    with Engine(db, create=False) as engine:
        engine.check()
        assert engine.counts()["identities"] == before["identities"] + 10


def test_disk_full_cli_ingest(
    db: Path, calls: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare = Store._prepare

    def tiny_disk(self: Store, *args: Any) -> None:
        prepare(self, *args)
        (pages,) = self.conn.execute("PRAGMA page_count").fetchone()
        self.conn.execute(f"PRAGMA max_page_count = {pages + 1}")

    with Engine(db, create=False) as engine:
        before = engine.counts()
    monkeypatch.setattr(Store, "_prepare", tiny_disk)
    code, out, err = run(capsys, command("ingest", db, calls))
    assert_one_error_line(code, out, err, "disk is full", "rolled back")
    monkeypatch.undo()
    with Engine(db, create=False) as engine:
        engine.check()
        assert engine.counts() == before
        assert engine.store.input_state(str(calls)) is None  # not recorded as read
    assert run(capsys, command("check", db))[0] == 0


# -- read-only file, read-only folder -------------------------------------------------


@contextmanager
def public_dir() -> Iterator[Path]:
    """A folder outside pytest's private tmp tree, so that another user can reach it."""
    path = Path(tempfile.mkdtemp(prefix="identity-ro-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        for item in [path, *path.iterdir()]:
            item.chmod(0o700 if item.is_dir() else 0o600)
        shutil.rmtree(path)


def as_other_user(args: list[str]) -> list[str]:
    """Run `args` as ``nobody`` when the tests run as root (file permissions bind it).

    ``setpriv`` rather than ``subprocess.run(user=...)``: the interpreter lives under
    ``/root`` here, which only setpriv (changing user as it executes) can start it from;
    the process it starts has no privileges left.
    """
    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    if setpriv is None:  # pragma: no cover - util-linux is everywhere the tests run as root
        pytest.skip("running as root without setpriv: cannot make a file read-only")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *args]


def subprocess_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(cwd),
    }
    return subprocess.run(
        as_other_user([sys.executable, "-m", "identity.cli", *args]),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_only(template: Path, folder: Path, what: str) -> Path:
    """A copy of the database that the subprocess user cannot write: the file or its folder."""
    path = folder / "id.db"
    shutil.copyfile(template, path)
    owner = 65534 if os.geteuid() == 0 else os.geteuid()
    if what == "file":
        path.chmod(0o444)
        os.chown(folder, owner, -1)
        folder.chmod(0o755)
    else:
        path.chmod(0o666)
        folder.chmod(0o555)
    return path


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_cli_queries_work_and_ingest_is_one_line(
    what: str, template: Path, calls: Path
) -> None:
    with public_dir() as folder:
        inputs = folder / "inputs"
        inputs.mkdir()
        shutil.copyfile(calls, inputs / "new.txt")
        inputs.chmod(0o755)
        work = folder / "db"
        work.mkdir()
        path = read_only(template, work, what)
        before = digest(path)
        for name in [q for q in QUERIES if q != "graph"]:  # graph writes a file of its own
            result = subprocess_cli(command(name, path), folder)
            assert result.returncode == 0, (name, result.stderr)
            assert result.stdout or name == "export"  # export prints to stdout ...
        result = subprocess_cli(command("export", path), folder)
        assert result.stdout.count("\n") > 3000
        result = subprocess_cli(command("ingest", path, inputs / "new.txt"), folder)
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        reason = "the file is not writable" if what == "file" else "its folder is not writable"
        assert result.stderr == (
            f"identity: error: {path}: cannot write: the database is read-only ({reason})\n"
        )
        assert digest(path) == before
        assert sorted(p.name for p in work.iterdir()) == ["id.db"]  # no -wal, no -shm left


LIBRARY_READ_ONLY = """
import sys
from identity import Engine, ReadOnlyDatabaseError
engine = Engine(sys.argv[1], create=False)
counts = engine.counts()
print(engine.store.readonly_reason, counts["identities"], engine.person_of("K", "user-00007"))
try:
    engine.record("K", "someone", "Paid")
except ReadOnlyDatabaseError as exc:
    print(type(exc).__name__, exc.problem)
"""


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_library(what: str, template: Path) -> None:
    with public_dir() as folder:
        path = read_only(template, folder, what)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            as_other_user([sys.executable, "-c", LIBRARY_READ_ONLY, str(path)]),
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        reason = "the file is not writable" if what == "file" else "its folder is not writable"
        assert result.stdout.splitlines() == [
            f"{reason} 3000 user-00007",
            f"ReadOnlyDatabaseError cannot write: the database is read-only ({reason})",
        ]


def test_read_only_folder_with_a_log_left_behind_is_refused_clearly(template: Path) -> None:
    with public_dir() as folder:
        path = folder / "id.db"
        shutil.copyfile(template, path)
        Path(f"{path}-wal").write_bytes(b"\0" * 4096)  # a writer stopped before its checkpoint
        path.chmod(0o644)
        folder.chmod(0o555)
        result = subprocess_cli(["people", "--db", str(path), "--tenant", "K"], folder)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert "open it once with write access" in result.stderr


def test_read_only_on_request(db: Path) -> None:
    before = digest(db)
    store = Store(db, create=False, readonly=True)
    assert store.readonly
    assert store.readonly_reason == "opened read-only"
    assert store.counts()["identities"] == 3000
    with pytest.raises(ReadOnlyDatabaseError, match=r"read-only \(opened read-only\)"):
        store.transaction().__enter__()
    with pytest.raises(ReadOnlyDatabaseError):  # and SQLite itself refuses a write
        store.set_meta("generation", "0")
    store.close()
    assert digest(db) == before
    with pytest.raises(StoreError, match="no such database"):
        Store(db.with_name("absent.db"), readonly=True)


# -- serve: refused at open -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["locked", "damaged", "missing table"])
def test_serve_refuses_at_open(fault: str, db: Path, tmp_path: Path) -> None:
    pytest.importorskip("waitress")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IDENTITY_BUSY_TIMEOUT": SHORT,
    }
    args = [sys.executable, "-m", "identity.cli", "serve", "--db", str(db), "--port", "0"]
    if fault == "damaged":
        damage_schema(db)
    elif fault == "missing table":
        drop_inputs(db)
    holder = locked(db, "exclusive") if fault == "locked" else None
    try:
        if holder is not None:
            holder.__enter__()
        result = subprocess.run(
            args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        if holder is not None:
            holder.__exit__(None, None, None)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("identity: error: ")
    assert {"locked": "locked", "damaged": "damaged", "missing table": "inputs"}[fault] in (
        result.stderr
    )


# -- check: 0 consistent, 1 could not run, 2 inconsistent ------------------------------


def test_check_exit_status_tells_findings_from_failures(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, ["check", "--db", str(db)]) == (
        0,
        "ok: 3000 identities, 429 links, 2571 people\n",
        "",
    )
    conn = sqlite3.connect(db)
    conn.execute("UPDATE persons SET size = size + 1 WHERE person = 'user-00007'")
    conn.commit()
    conn.close()
    code, out, err = run(capsys, ["check", "--db", str(db)])
    assert code == 2
    assert out == "person 'user-00007' has size 3, not 2\n"
    assert err == f"identity: inconsistent: {db}: 1 problem\n"
    code, out, err = run(capsys, ["check", "--db", str(tmp_path / "missing.db")])
    assert_one_error_line(code, out, err, "no such database")
    assert main(["check", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 consistent; 1 the check could not run" in shown
    assert "2 inconsistent" in shown
