from __future__ import annotations

import functools
import http.client
import io
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from identity import Engine
from identity import engine as engine_module
from identity.beacon import GIF, Beacon, Writer, app_from_env, make_app, rules_for_keys
from identity.beacon import writer as writer_module
from identity.beacon.sync import LogSync
from identity.calls import parse_query
from identity.cli import main
from identity.errors import ConfigurationError, DatabaseLockedError, DiskFullError

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000
CLF = re.compile(
    r'^(?P<host>\S+) - (?P<user>\S+) \[(?P<time>[^]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "(?P<referer>(?:[^"\\]|\\.)*)" '
    r'"(?P<agent>(?:[^"\\]|\\.)*)"$'
)


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.code = int(status[:3])
        self.headers = dict(headers)
        self.body = body


def request(
    app: Callable[..., Any],
    path: str,
    query: str = "",
    *,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = "application/x-www-form-urlencoded",
    stream: Any = None,
    extra: dict[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Answer:
    """Run one request through the app under wsgiref's validator."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1",
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
    if stream is not None:
        environ["wsgi.input"] = stream
    environ.update(extra or {})
    setup_testing_defaults(environ)
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers))
        if on_start is not None:
            on_start(status)
        return lambda data: None

    result = validator(app)(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return Answer(seen[0][0], seen[0][1], data)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "beacon.db"


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    with Engine(db) as opened:
        yield opened


@pytest.fixture
def app(engine: Engine) -> Iterator[Beacon]:
    beacon = make_app(engine, clock=lambda: NOW + 0.75, access_log=io.StringIO())
    yield beacon
    beacon.close()


def reasons(engine: Engine) -> list[str]:
    return [q.reason for q in engine.quarantine()]


def assert_gif(answer: Answer) -> None:
    assert answer.status == "200 OK"
    assert answer.headers["Content-Type"] == "image/gif"
    assert answer.headers["Content-Length"] == "43"
    assert answer.headers["Cache-Control"] == "no-cache, no-store"
    assert answer.body == GIF


def test_gif_is_a_43_byte_transparent_gif() -> None:
    assert len(GIF) == 43
    assert GIF.startswith(b"GIF89a")
    assert GIF.endswith(b";")


# --- requests shaped like the official clients ---------------------------------------------


def test_py_kissmetrics_client_record_set_alias(app: Beacon, engine: Engine) -> None:
    # KISSmetrics.Client builds `urlencode({_k, _p, _d, _t, _n, **properties})`
    record = urlencode(
        {
            "_k": "KEY",
            "_p": "bob@bob.com",
            "_d": 1,
            "_t": 1381849312,
            "_n": "Signed Up",
            "Plan": "Pro",
            "Amount": 99.95,
        }
    )
    assert_gif(request(app, "/e", record))
    assert_gif(request(app, "/s", urlencode({"_k": "KEY", "_p": "bob@bob.com", "gender": "male"})))
    assert_gif(
        request(app, "/a", urlencode({"_k": "KEY", "_p": "bob@bob.com", "_n": "User 12345"}))
    )
    person = engine.person("KEY", "User 12345")
    assert person.identities == ("User 12345", "bob@bob.com")
    assert person.customer_ids == ("bob@bob.com",)
    assert dict(person.properties) == {"Amount": "99.95", "Plan": "Pro", "gender": "male"}
    [event] = engine.events("KEY", "bob@bob.com")
    assert (event.name, event.t) == ("Signed Up", 1381849312)


def test_legacy_km_client_sends_t_without_d_and_p_none(app: Beacon, engine: Engine) -> None:
    # KM.record(): `_t` is always sent (now), `_d` only with a user timestamp, and `_p` is
    # literally "None" when identify() was never called.
    legacy = urlencode({"_n": "Viewed Homepage", "_t": "1381849312", "_k": "KEY", "_p": None})
    assert_gif(request(app, "/e", legacy))
    [event] = engine.events("KEY", "None")
    assert event.t == NOW  # `_t` without `_d=1` is not applied
    assert_gif(request(app, "/a", urlencode({"_n": "bob", "_p": None, "_k": "KEY"})))
    assert reasons(engine) == ["blocked_identity"]


@pytest.mark.parametrize(
    "query",
    [
        "_k=K&_p=bob&_n=Signed+Up",
        "_k=K&_p=bob&_n=Signed%20Up",
        "_k=K&_p=bob&_n=Signed%20Up&_d=0&_t=1262304000",
        "_k=K&_p=bob&_n=Signed+Up&_t=1262304000.5&_d=1",
    ],
)
def test_spaces_floats_and_d_zero(app: Beacon, engine: Engine, query: str) -> None:
    assert_gif(request(app, "/km/e", query))
    [event] = engine.events("K", "bob")
    assert event.name == "Signed Up"
    assert event.t == (1262304000 if "_d=1" in query else NOW)


def test_repeated_parameters_keep_the_last(app: Beacon, engine: Engine) -> None:
    assert_gif(request(app, "/s", "_k=K&_p=bob&plan=free&plan=pro"))
    assert engine.properties("K", "bob") == {"plan": "pro"}


def test_post_form_body_with_query_string(app: Beacon, engine: Engine) -> None:
    answer = request(
        app,
        "/e",
        "_k=K",
        method="POST",
        body=b"_p=bob&_n=Paid&amount=5",
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
    )
    assert_gif(answer)
    assert engine.properties("K", "bob") == {"amount": "5"}
    assert_gif(
        request(app, "/s", method="POST", body=b"_k=K&_p=bob&x=1", content_type="text/plain")
    )
    assert engine.properties("K", "bob") == {"amount": "5", "x": "1"}


def test_post_with_another_content_type_is_quarantined(app: Beacon, engine: Engine) -> None:
    answer = request(
        app, "/e", method="POST", body=b'{"_k": "K", "_p": "bob"}', content_type="application/json"
    )
    assert_gif(answer)
    [item] = engine.quarantine()
    assert item.reason == "malformed"
    assert "application/json" in item.raw


def test_head_gets_the_headers_and_records_nothing(app: Beacon, engine: Engine) -> None:
    answer = request(app, "/e", "_k=K&_p=bob&_n=x", method="HEAD")
    assert answer.status == "200 OK"
    assert answer.headers["Content-Length"] == "43"
    assert answer.body == b""
    assert engine.counts()["events"] == 0


# --- everything else gets a safe answer --------------------------------------------------


def test_other_paths_404_and_methods_405(app: Beacon, engine: Engine) -> None:
    for path in ("/", "/favicon.ico", "/e/x", "/E"):
        answer = request(app, path, "_k=K&_p=bob&_n=x")
        assert answer.code == 404, path
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert answer.body == b"not found\n"
    for method in ("PUT", "DELETE", "OPTIONS"):
        answer = request(app, "/e", "_k=K&_p=bob&_n=x", method=method)
        assert answer.code == 405
        assert answer.headers["Allow"] == "GET, HEAD, POST"
    assert request(app, "/healthz", method="POST", body=b"").code == 405
    assert engine.counts()["events"] == 0
    assert engine.counts()["quarantined"] == 0


def test_healthz(app: Beacon) -> None:
    answer = request(app, "/healthz")
    assert (answer.code, answer.body) == (200, b"ok\n")
    assert request(app, "/lb/healthz", method="HEAD").code == 200
    app.close()
    assert request(app, "/healthz").code == 503


def test_oversized_body_is_not_read_whole_and_is_quarantined(engine: Engine) -> None:
    class Counting(io.BytesIO):
        total = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            Counting.total += len(data)
            return data

    body = b"_k=K&_p=bob&_n=Big&blob=" + b"x" * 100_000
    with make_app(engine, max_body=4096) as app:
        answer = request(
            app,
            "/e",
            method="POST",
            stream=Counting(body),
            extra={
                "CONTENT_LENGTH": str(len(body)),
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
            },
        )
    assert_gif(answer)
    assert Counting.total <= 4096
    [item] = engine.quarantine()
    assert (item.reason, item.tenant) == ("too_large", "K")
    assert len(item.raw) < 2000
    assert f"{len(body)} bytes" in item.raw


def test_oversized_query_is_quarantined(engine: Engine) -> None:
    with make_app(engine, max_query=100) as app:
        assert_gif(request(app, "/s", "_k=K&_p=bob&x=" + "y" * 5000))
    [item] = engine.quarantine()
    assert (item.reason, item.tenant) == ("too_large", "K")
    assert engine.counts()["identities"] == 0


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("_k=K&_p=%ff&_n=x", None),  # escapes that do not decode
        ("_k=K&_p=\xff&_n=x", None),  # raw bytes (WSGI gives them as latin-1) that are not UTF-8
        ("", b"_k=K&_p=\xff\xfe&_n=x"),
    ],
)
def test_undecodable_bytes_are_quarantined(
    app: Beacon, engine: Engine, query: str, body: bytes | None
) -> None:
    method = "GET" if body is None else "POST"
    assert_gif(request(app, "/e", query, method=method, body=body))
    assert reasons(engine) == ["bad_encoding"]


def test_raw_utf8_in_a_query_string_is_decoded(app: Beacon, engine: Engine) -> None:
    wsgi_text = "_k=K&_p=café&_n=x".encode().decode("latin-1")  # how a server passes the bytes
    assert_gif(request(app, "/e", wsgi_text))
    assert engine.person("K", "café").customer_ids == ("café",)


def test_client_that_stops_sending_the_body(app: Beacon, engine: Engine) -> None:
    short = request(
        app,
        "/e",
        method="POST",
        stream=io.BytesIO(b"_k=K&_p=bob&_n=x"),
        extra={"CONTENT_LENGTH": "500", "CONTENT_TYPE": "application/x-www-form-urlencoded"},
    )
    assert_gif(short)

    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise ConnectionResetError("client went away")

    broken = request(
        app,
        "/e",
        "_k=K",
        method="POST",
        stream=Broken(),
        extra={"CONTENT_LENGTH": "20", "CONTENT_TYPE": "application/x-www-form-urlencoded"},
    )
    assert_gif(broken)
    assert reasons(engine) == ["incomplete", "incomplete"]
    assert [q.tenant for q in engine.quarantine()] == ["K", "K"]


def test_server_closing_the_response_early_keeps_the_call(app: Beacon, engine: Engine) -> None:
    # What a server does when the client hangs up before the reply: close() without reading.
    environ: dict[str, Any] = {
        "SCRIPT_NAME": "",
        "PATH_INFO": "/e",
        "QUERY_STRING": "_k=K&_p=bob&_n=Left",
    }
    setup_testing_defaults(environ)
    result = validator(app)(environ, lambda status, headers, exc_info=None: lambda data: None)
    result.close()  # type: ignore[attr-defined]
    assert [e.name for e in engine.events("K", "bob")] == ["Left"]


def test_unexpected_error_is_a_safe_500(
    app: Beacon, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app, "_call", boom)
    with caplog.at_level(logging.ERROR, logger="identity.beacon"):
        answer = request(app, "/e", "_k=K&_p=bob&_n=x")
    assert answer.code == 500
    assert answer.body == b"internal error\n"
    assert "secret" not in answer.body.decode()
    assert "secret detail" in caplog.text
    monkeypatch.undo()
    assert_gif(request(app, "/e", "_k=K&_p=bob&_n=x"))  # the writer was not left waiting


def test_failed_commit_answers_503_then_recovers(
    app: Beacon, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(batch: list[Any]) -> None:
        raise DiskFullError(str(engine.path), "database or disk is full")

    monkeypatch.setattr(engine, "apply_batch", full)
    with caplog.at_level(logging.ERROR, logger="identity.beacon"):
        answer = request(app, "/e", "_k=K&_p=bob&_n=Lost")
    assert answer.code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "disk is full" in caplog.text
    monkeypatch.undo()
    assert_gif(request(app, "/e", "_k=K&_p=bob&_n=Kept"))
    assert [e.name for e in engine.events("K", "bob")] == ["Kept"]
    assert app.writer.stats() == {"calls": 1, "batches": 1, "failed": 1}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def gather_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, people: list[str]
) -> tuple[Writer, dict[str, bool]]:
    """Commit one call of each of `people` through a new writer, all in one batch."""
    entered, gate = threading.Event(), threading.Event()
    real = engine.apply_batch

    def apply(batch: list[Any], **kwargs: Any) -> Any:
        entered.set()
        gate.wait(10)
        return real(batch, **kwargs)

    monkeypatch.setattr(engine, "apply_batch", apply)
    writer = Writer(engine, max_wait=0)
    results: dict[str, bool] = {}

    def send(person: str) -> None:
        results[person] = writer.commit(parse_query(f"/e?_k=K&_p={person}&_n=x", received=1))

    threads = [threading.Thread(target=send, args=("first",))]
    threads[0].start()
    assert entered.wait(10)  # the writer is inside the first commit; the next calls gather
    threads += [threading.Thread(target=send, args=(p,)) for p in people]
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: len(writer._open.calls) == len(people), "the calls in the open batch")
    gate.set()
    for thread in threads:
        thread.join(10)
    writer.close()
    monkeypatch.setattr(engine, "apply_batch", real)
    return writer, results


def test_a_poison_call_is_quarantined_and_its_batch_commits(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine_module.apply_batch

    def refuse_poison(store: Any, batch: list[Any], *args: Any, **kwargs: Any) -> Any:
        if any(call.identity == "poison" for call in batch):
            raise ValueError("a value the store refuses")
        return real(store, batch, *args, **kwargs)

    monkeypatch.setattr(engine_module, "apply_batch", refuse_poison)
    writer, results = gather_batch(engine, monkeypatch, ["a", "poison", "b"])
    assert results == {"first": True, "a": True, "poison": True, "b": True}
    assert writer.stats() == {"calls": 4, "batches": 2, "failed": 0}
    assert sorted(p.id for p in engine.people("K")) == ["a", "b", "first"]
    [item] = engine.quarantine()
    assert (item.reason, item.tenant) == ("rejected_by_store", "K")
    assert "_p=poison" in item.raw


def test_a_store_failure_fails_the_whole_batch_once_and_the_writer_goes_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []
    real = engine.apply_batch

    def locked(batch: list[Any], **kwargs: Any) -> Any:
        attempts.append(len(batch))
        if len(batch) > 1:
            engine.store.conn.execute("BEGIN")  # left open: the writer must roll it back
            raise DatabaseLockedError(str(engine.path), "database is locked")
        return real(batch, **kwargs)

    monkeypatch.setattr(engine, "apply_batch", locked)
    with caplog.at_level(logging.ERROR, logger="identity.beacon"):
        writer, results = gather_batch(engine, monkeypatch, ["a", "b", "c"])
    monkeypatch.undo()
    assert results == {"first": True, "a": False, "b": False, "c": False}
    assert attempts == [1, 3]  # no call-by-call retry in the writer: the engine does that
    assert writer.stats() == {"calls": 1, "batches": 1, "failed": 3}
    assert "database is locked" in caplog.text
    assert not engine.store.conn.in_transaction
    assert sorted(p.id for p in engine.people("K")) == ["first"]
    assert list(engine.quarantine()) == []
    with Writer(engine) as again:  # the next batch can begin
        assert again.commit(parse_query("/e?_k=K&_p=a&_n=x", received=1))


def test_healthz_says_when_a_commit_is_stalled(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, gate = threading.Event(), threading.Event()
    real = engine.apply_batch

    def stuck(batch: list[Any], **kwargs: Any) -> Any:
        entered.set()
        gate.wait(10)
        return real(batch, **kwargs)

    monkeypatch.setattr(engine, "apply_batch", stuck)
    answers: list[Answer] = []
    with make_app(engine, commit_timeout=0.05) as app:
        assert request(app, "/healthz").body == b"ok\n"
        sender = threading.Thread(
            target=lambda: answers.append(request(app, "/e", "_k=K&_p=bob&_n=x"))
        )
        sender.start()
        assert entered.wait(10)
        wait_for(lambda: app.writer.committing_for() > 0.05, "a stalled commit")
        stalled = request(app, "/healthz")
        sender.join(10)
        assert answers[0].code == 503  # it waited commit_timeout, not forever
        gate.set()
        wait_for(lambda: app.writer.committing_for() == 0, "the commit")
        assert request(app, "/healthz").body == b"ok\n"
    assert (stalled.code, stalled.body) == (503, b"commit stalled\n")


# --- durability: answered only once the WAL is synced -------------------------------------


class GatedSync:
    """A stand-in for ``os.fdatasync`` that holds every sync until :meth:`open` (or fails)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.synced: list[str] = []  # the files synced, in order
        self.fail = False

    def __call__(self, fd: int) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise OSError(5, "Input/output error (injected)")
        self.synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    def open(self) -> None:
        self.gate.set()


@pytest.fixture
def gated_sync(monkeypatch: pytest.MonkeyPatch) -> GatedSync:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc (Linux)")
    gated = GatedSync()
    monkeypatch.setattr(os, "fdatasync", gated)
    return gated


def committed(db: Path, person: str) -> bool:
    """Whether a call of `person` is committed (seen from another connection)."""
    with Engine(db, create=False) as reader:
        return reader.same_person("K", person, person)


def test_no_call_is_answered_before_the_wal_is_synced(db: Path, gated_sync: GatedSync) -> None:
    with Engine(db) as engine, make_app(engine, max_wait=0) as app:
        answers: list[Answer] = []
        sender = threading.Thread(
            target=lambda: answers.append(request(app, "/e", "_k=K&_p=waits&_n=x"))
        )
        sender.start()
        assert gated_sync.entered.wait(10)
        wait_for(lambda: committed(db, "waits"), "the commit")
        time.sleep(0.05)
        assert answers == []  # committed, not yet on the disk: not answered
        gated_sync.open()
        sender.join(10)
    assert_gif(answers[0])
    assert gated_sync.synced
    assert all(path == f"{db}-wal" for path in gated_sync.synced)


def test_a_call_sent_without_a_thread_is_answered_after_the_sync(
    db: Path, gated_sync: GatedSync
) -> None:
    """The path ``identity serve`` takes (Beacon.start, Writer.send): the same promise."""
    answered: list[tuple[str, float]] = []
    log = io.StringIO()
    with Engine(db) as engine, make_app(engine, max_wait=0, access_log=log) as app:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/e", "QUERY_STRING": "_k=K&_p=q&_n=x"}
        setup_testing_defaults(environ)
        assert app.start(environ, lambda answer: answered.append((answer[0], time.monotonic())))
        assert gated_sync.entered.wait(10)
        wait_for(lambda: committed(db, "q"), "the commit")
        time.sleep(0.05)
        assert answered == []
        assert app.in_flight == 1  # a graceful stop waits for it
        opened = time.monotonic()
        gated_sync.open()
        wait_for(lambda: bool(answered), "the answer")
        assert app.in_flight == 0
        environ["REQUEST_METHOD"] = "HEAD"
        assert not app.start(environ, answered.append)  # not a call to take this way
    [(status, when)] = answered
    assert status == "200 OK"
    assert when >= opened
    assert '"GET /e?_k=K&_p=q&_n=x HTTP/1.0" 200 43' in log.getvalue()


def test_a_failed_sync_answers_503_and_the_next_call_is_stored(
    db: Path, gated_sync: GatedSync, caplog: pytest.LogCaptureFixture
) -> None:
    gated_sync.fail = True
    gated_sync.open()
    with Engine(db) as engine, make_app(engine, max_wait=0) as app:
        with caplog.at_level(logging.ERROR, logger="identity.beacon"):
            answer = request(app, "/e", "_k=K&_p=lost&_n=x")
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/s", "QUERY_STRING": "_k=K&_p=q"}
            setup_testing_defaults(environ)
            sent: list[str] = []
            assert app.start(environ, lambda answer: sent.append(answer[0]))
            wait_for(lambda: bool(sent), "the answer")
        assert (answer.code, answer.headers["Retry-After"]) == (503, "1")
        assert sent == ["503 Service Unavailable"]
        assert "cannot sync" in caplog.text
        gated_sync.fail = False
        assert_gif(request(app, "/e", "_k=K&_p=kept&_n=x"))
        assert app.writer.stats()["failed"] == 2


def test_the_sync_is_paced_only_when_the_disk_makes_syncs_wait() -> None:
    log = LogSync("unused", max_delay=0.005)
    for _ in range(5):
        log._pace(0.0002)  # a fast disk: no hold
    assert log.delay == 0
    for _ in range(20):
        log._pace(0.004)  # a disk that takes 4 ms whenever the sync is issued
    assert log.delay == 0.005  # held, at most max_delay
    for _ in range(40):
        log._pace(0.0002)
    assert log.delay == 0


def test_a_paced_commit_is_held_only_while_more_calls_are_coming(engine: Engine) -> None:
    answered: list[tuple[str, bool, float]] = []
    more = threading.Event()
    more.set()
    with Writer(engine, max_wait=0.5) as writer:
        writer.expecting = more.is_set
        log = writer._sync
        assert log is not None
        log.delay, log.last_end = 0.5, time.monotonic()  # as after syncs that had to wait
        start = time.monotonic()

        def send(person: str) -> None:
            call = parse_query(f"/e?_k=K&_p={person}&_n=x", received=1)
            assert writer.send(call, lambda ok: answered.append((person, ok, time.monotonic())))

        send("held")
        time.sleep(0.05)
        assert answered == []  # more calls are on their way: the commit waits for them
        more.clear()
        send("last")  # nothing more coming: both are committed and synced at once
        wait_for(lambda: len(answered) == 2, "the answers")
        stats = writer.stats()
    assert [(person, ok) for person, ok, _ in answered] == [("held", True), ("last", True)]
    assert answered[0][2] - start < 0.45  # not held to the end of its delay
    assert stats["batches"] == 1


@pytest.mark.parametrize("slow", [False, True])
def test_the_event_loop_leads_a_complete_round_unless_rounds_are_slow(
    engine: Engine, slow: bool
) -> None:
    answered: list[tuple[str, bool, int]] = []
    expected = ["a", "b"]
    with Writer(engine, max_wait=0.5) as writer:
        writer.leader = threading.get_ident()
        writer.expecting = lambda: bool(expected)
        log = writer._sync
        assert log is not None
        log.delay, log.last_end = 0.5, time.monotonic()
        if slow:
            writer._last_round = 1.0  # a slow disk: the loop must not block on it
        for person in ("a", "b"):
            expected.remove(person)
            call = parse_query(f"/e?_k=K&_p={person}&_n=x", received=1)
            then = functools.partial(
                lambda p, ok: answered.append((p, ok, threading.get_ident())), person
            )
            assert writer.send(call, then)
            if person == "a":
                wait_for(lambda: writer._state == "paced", "the writer to wait for b")
        writer.lead()
        if not slow:  # committed, synced and answered here, before lead() returned
            assert [(p, ok) for p, ok, _ in answered] == [("a", True), ("b", True)]
        wait_for(lambda: len(answered) == 2, "the answers")
        stats = writer.stats()
    here = threading.get_ident()
    assert all((thread == here) != slow for _, _, thread in answered)
    assert stats["batches"] == 1


def test_the_writer_checkpoints_the_log_every_so_many_calls(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_CALLS", 3)
    modes: list[str] = []
    real = engine.store.checkpoint

    def checkpoint(mode: str = "PASSIVE") -> tuple[int, int, int]:
        modes.append(mode)
        return real(mode)

    monkeypatch.setattr(engine.store, "checkpoint", checkpoint)
    with Writer(engine, max_wait=0) as writer:
        for n in range(7):
            assert writer.commit(parse_query(f"/e?_k=K&_p=p{n}&_n=x", received=1))
    assert modes == ["RESTART", "RESTART"]
    assert len(list(engine.people("K"))) == 7
    engine.check()


# --- group commit ------------------------------------------------------------------------


def test_group_commit_many_threads_each_call_once_and_answered_after_commit(db: Path) -> None:
    threads, per_thread = 16, 25
    problems: list[str] = []
    with Engine(db) as engine, make_app(engine, max_wait=0.005) as app:

        def client(n: int) -> None:
            with Engine(db) as reader:  # another connection sees only what is committed
                for i in range(per_thread):
                    person = f"p{n}-{i}"

                    def check(status: str, person: str = person) -> None:
                        if status != "200 OK" or not reader.same_person("K", person, person):
                            problems.append(f"{person}: answered {status} before its commit")

                    query = urlencode({"_k": "K", "_p": person, "_n": "Ping", "i": i})
                    answer = request(app, "/e", query, on_start=check)
                    if answer.code != 200:
                        problems.append(f"{person}: {answer.status}")

        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stats = app.writer.stats()
        counts = engine.counts("K")
    assert problems == []
    assert counts["events"] == counts["events_received"] == threads * per_thread
    assert stats["calls"] == threads * per_thread
    assert stats["batches"] < stats["calls"]  # calls shared transactions


def test_close_commits_what_was_received(engine: Engine) -> None:
    writer = Writer(engine, max_wait=0.2)
    writer.announce()  # one more call is "on its way", so the batch waits for it
    done: list[bool] = []
    thread = threading.Thread(
        target=lambda: done.append(writer.commit(parse_query("/s?_k=K&_p=bob&x=1", received=1)))
    )
    thread.start()
    wait_for(lambda: bool(writer._open.calls), "the call in the open batch")
    writer.close()
    thread.join()
    writer.withdraw()
    assert done == [True]
    assert engine.properties("K", "bob") == {"x": "1"}
    assert writer.commit(parse_query("/s?_k=K&_p=bob&x=2", received=1)) is False
    assert not writer.accepting


def test_app_answers_503_once_closed(app: Beacon, engine: Engine) -> None:
    app.close()
    answer = request(app, "/e", "_k=K&_p=bob&_n=x")
    assert answer.code == 503
    assert engine.counts()["events"] == 0


def test_shared_writer_is_left_running(engine: Engine) -> None:
    writer = Writer(engine)
    app = make_app(writer)
    app.close()
    assert writer.accepting
    writer.close()


def test_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        Writer(Engine(), batch_size=0)
    with pytest.raises(ConfigurationError):
        Writer(Engine(), max_wait=-1)
    with pytest.raises(ConfigurationError):
        rules_for_keys(" , ")
    with pytest.raises(ConfigurationError, match="IDENTITY_DB"):
        app_from_env({})
    with pytest.raises(ConfigurationError, match="IDENTITY_BATCH_SIZE"):
        app_from_env({"IDENTITY_DB": ":memory:", "IDENTITY_BATCH_SIZE": "many"})


# --- access log --------------------------------------------------------------------------


def test_access_log_is_combined_log_format(engine: Engine) -> None:
    log = io.StringIO()
    with make_app(engine, access_log=log, clock=lambda: 1262304000.9) as app:
        request(
            app,
            "/e",
            "_k=K&_p=bob&_n=Signed+Up",
            extra={"HTTP_USER_AGENT": 'curl "7"', "HTTP_REFERER": "http://x/"},
        )
        request(app, "/km/s", "_k=K", method="POST", body=b"_p=bob&plan=pro")
        request(app, "/nope")
    lines = log.getvalue().splitlines()
    matches = [CLF.match(line) for line in lines]
    assert all(matches), lines
    first, post, missing = (m.groupdict() for m in matches if m)
    assert first["time"] == "01/Jan/2010:00:00:00 +0000"
    assert first["request"] == "GET /e?_k=K&_p=bob&_n=Signed+Up HTTP/1.0"
    assert (first["status"], first["size"]) == ("200", "43")
    assert first["agent"] == 'curl \\"7\\"'
    assert first["referer"] == "http://x/"
    assert post["request"] == "POST /km/s?_k=K&_p=bob&plan=pro HTTP/1.0"  # replayable
    assert (missing["status"], missing["size"]) == ("404", "10")
    replayed = parse_query(post["request"].split(" ")[1], received=1)
    assert replayed.ok
    assert replayed.properties == (("plan", "plan", "pro"),)


# --- the command, over real sockets --------------------------------------------------------


def test_serve_without_waitress_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "waitress.server", None)
    code = main(["serve", "--db", str(tmp_path / "x.db"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "pip install 'identity[serve]'" in err


class Server:
    def __init__(self, db: Path, log: Path, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "identity.cli",
            "serve",
            "--db",
            str(db),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
        ]
        self.log = log
        with open(log, "wb") as sink:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink, env=env
            )
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", self.text())
            if found:
                self.port = int(found.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"identity serve did not start:\n{self.text()}")
            time.sleep(0.02)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def get(
    conn: http.client.HTTPConnection,
    target: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, target, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_identity_serve_over_real_sockets(tmp_path: Path) -> None:
    pytest.importorskip("waitress")
    db = tmp_path / "served.db"
    server = Server(db, tmp_path / "serve.err", "--keys", "K1,K2", "--threads", "8")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        # the py-KISSmetrics client: GET /e?... with _d/_t, then /s and /a, on one connection
        record = urlencode(
            {
                "_k": "K1",
                "_p": "bob@bob.com",
                "_d": 1,
                "_t": 1381849312,
                "_n": "Signed Up",
                "Plan": "Pro",
            }
        )
        status, headers, body = get(conn, f"/e?{record}")
        assert (status, headers["Content-Type"], body) == (200, "image/gif", GIF)
        assert headers["Cache-Control"] == "no-cache, no-store"
        assert (
            get(conn, "/s?" + urlencode({"_k": "K1", "_p": "bob@bob.com", "a b": "c d"}))[0] == 200
        )
        assert get(conn, "/a?_k=K1&_p=User%2012345&_n=bob%40bob.com")[0] == 200
        # POST form, HEAD, unknown key, other paths and methods, health
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert get(conn, "/km/e", "POST", b"_k=K2&_p=carol&_n=Paid", form)[0] == 200
        status, headers, body = get(conn, "/e?_k=K1&_p=x&_n=y", "HEAD")
        assert (status, headers["Content-Length"], body) == (200, "43", b"")
        assert get(conn, "/e?_k=K3&_p=mallory&_n=x")[0] == 200
        assert get(conn, "/robots.txt")[0] == 404
        assert get(conn, "/e", "PUT", b"")[0] == 405
        assert get(conn, "/healthz")[:3:2] == (200, b"ok\n")
        conn.close()

        # a Host header without a port
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("GET", "/e?_k=K2&_p=dave&_n=NoPort", skip_host=True)
        conn.putheader("Host", "127.0.0.1")
        conn.endheaders()
        assert conn.getresponse().status == 200
        conn.close()

        # clients that hang up: after sending a whole request, and half-way through one
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /e?_k=K2&_p=erin&_n=HungUp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /e HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n_k=")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        assert get(conn, "/healthz")[0] == 200  # still serving
        conn.close()
        with Engine(db, create=False) as reader:  # the hung-up client's call is committed
            wait_for(lambda: reader.same_person("K2", "erin", "erin"), "erin's call")
    finally:
        code = server.stop()
    said = server.text()
    assert code == 0, said
    assert "identity: stopped:" in said
    access = [line for line in said.splitlines() if CLF.match(line)]
    assert len(access) >= 10

    with Engine(db, create=False) as engine:
        counts = engine.counts()
        k1 = {p.id: p for p in engine.people("K1")}
        k2 = sorted(p.id for p in engine.people("K2"))
        quarantined = [(q.reason, q.tenant) for q in engine.quarantine()]
    assert k1["User 12345"].identities == ("User 12345", "bob@bob.com")
    assert dict(k1["User 12345"].properties) == {"Plan": "Pro", "a b": "c d"}
    assert k2 == ["carol", "dave", "erin"]
    assert quarantined == [("unknown_key", "K3")]
    assert counts["events"] == 4  # Signed Up, Paid, NoPort, HungUp; HEAD records nothing


def test_sigterm_under_load_keeps_every_acknowledged_call(tmp_path: Path) -> None:
    pytest.importorskip("waitress")
    db = tmp_path / "load.db"
    access = tmp_path / "access.log"
    server = Server(db, tmp_path / "serve.err", "--threads", "8", "--access-log", str(access))
    acknowledged: list[int] = []
    answers: list[int] = []
    numbers = itertools.count()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        while True:
            n = next(numbers)
            try:
                status = get(conn, f"/e?_k=K&_p=u{n % 10}&_n=Load&seq={n}")[0]
            except (OSError, http.client.HTTPException):
                break  # the server has stopped
            answers.append(status)
            if status == 200:
                acknowledged.append(n)
        conn.close()

    clients = [threading.Thread(target=client) for _ in range(8)]
    try:
        for thread in clients:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 200, "200 acknowledged calls")
    finally:
        code = server.stop()  # while the clients keep sending
        for thread in clients:
            thread.join(30)
    assert code == 0, server.text()
    assert set(answers) <= {200, 503}
    with Engine(db, create=False) as engine:
        stored = [
            int(value)
            for person in engine.people("K")
            for event in engine.events("K", person.id)
            for key, value in event.properties
            if key == "seq"
        ]
    assert len(stored) == len(set(stored))
    assert set(acknowledged) <= set(stored)
    logged = access.read_text(encoding="utf-8").splitlines()
    assert all(CLF.match(line) for line in logged)
