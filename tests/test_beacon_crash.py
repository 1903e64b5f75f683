"""Crash test: SIGKILL ``identity serve`` under load; every answered request must be stored."""

from __future__ import annotations

import http.client
import itertools
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity import Engine
from tests.test_beacon import CLF, Server, get, wait_for

pytest.importorskip("waitress")

CLIENTS = 4
#: How many answers each run gets before it is killed: at once, under way, well into it.
KILLS_AFTER = (1, 150, 500)


def target(n: int) -> str:
    """The n-th call of the load: events, property sets and aliases in turn."""
    kind = n % 3
    if kind == 0:
        return f"/e?_k=K&_p=u{n % 13}&_n=Load&seq={n}"
    if kind == 1:
        return f"/s?_k=K&_p=u{n % 13}&mark=m{n}"
    return f"/a?_k=K&_p=u{n % 13}&_n=v{n % 11}"


def check_stored(engine: Engine, answered: list[int]) -> None:
    """Every answered call of the load is in `engine`, and the database is consistent."""
    engine.check()  # raises InconsistentStoreError on any disagreement
    people = list(engine.people("K"))
    events = {
        int(value)
        for person in people
        for event in engine.events("K", person.id)
        for key, value in event.properties
        if key == "seq"
    }
    marks = {
        int(record.value[1:])
        for person in people
        for record in engine.property_history("K", person.id, "mark")
    }

    def stored(n: int) -> bool:
        if n % 3 == 0:
            return n in events
        if n % 3 == 1:
            return n in marks
        return engine.same_person("K", f"u{n % 13}", f"v{n % 11}")

    missing = [target(n) for n in answered if not stored(n)]
    assert missing == [], f"answered 200 but not stored: {missing[:5]}"


def run_and_kill(server: Server, numbers: Iterator[int], kill_after: int) -> list[int]:
    """Load `server` from several clients; SIGKILL it after `kill_after` answers.

    Returns the calls (their numbers) answered ``200``.
    """
    answered: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            while True:
                with lock:
                    n = next(numbers)
                try:
                    status = get(conn, target(n))[0]
                except (OSError, http.client.HTTPException):
                    return  # killed
                if status == 200:
                    with lock:
                        answered.append(n)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answered) >= kill_after, f"{kill_after} answers")
    finally:
        server.proc.kill()  # SIGKILL, in the middle of the load
        server.proc.wait(30)
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return answered


def test_sigkill_under_load_loses_no_answered_request(tmp_path: Path) -> None:
    db, access = tmp_path / "crash.db", tmp_path / "access.log"
    numbers = itertools.count()
    answered: list[int] = []  # over every run, against the same database
    for run, kill_after in enumerate(KILLS_AFTER):
        args = ("--threads", "8", "--access-log", str(access))
        server = Server(db, tmp_path / f"serve{run}.err", *args)
        answered += run_and_kill(server, numbers, kill_after)
        with Engine(db, create=False) as engine:
            check_stored(engine, answered)
    logged = {
        int(found.group(1))
        for line in access.read_text(encoding="utf-8").splitlines()
        if CLF.match(line) and (found := re.search(r"(?:seq=|mark=m)(\d+)", line))
    }
    assert {n for n in answered if n % 3 != 2} <= logged  # the access log has them too
