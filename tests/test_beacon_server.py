"""``identity serve`` over real sockets: pipelining, the access log, stopping with SIGTERM."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from identity import Engine
from identity.beacon import GIF
from tests.test_beacon import CLF, ROOT, Server, get, wait_for

pytest.importorskip("waitress")


def call(tenant: str, n: int, connection: str = "Keep-Alive") -> bytes:
    """One GET /e request as the kissmetrics-php client writes it."""
    return (
        f"GET /e?_k={tenant}&_p=u{n}&_n=Pipelined&seq={n} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nConnection: {connection}\r\n\r\n"
    ).encode()


def form(tenant: str, n: int) -> bytes:
    body = f"_k={tenant}&_p=u{n}&plan=p{n}".encode()
    head = (
        "POST /s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def stored_seqs(engine: Engine, tenant: str) -> list[int]:
    return sorted(
        int(value)
        for person in engine.people(tenant)
        for event in engine.events(tenant, person.id)
        for key, value in event.properties
        if key == "seq"
    )


COUNT = 10


def one_write(sock: socket.socket, tenant: str) -> None:
    sock.sendall(b"".join(call(tenant, n) for n in range(COUNT)))
    sock.close()


def php_client(sock: socket.socket, tenant: str) -> None:
    # kissmetrics-php 0.4.0, Transport\Sockets::submitData: one fwrite a request, the last
    # with "Connection: Close", then fclose() without reading a byte.
    for n in range(COUNT):
        sock.sendall(call(tenant, n, "Close" if n == COUNT - 1 else "Keep-Alive"))
    sock.close()


def shut_down(sock: socket.socket, tenant: str) -> None:
    sock.sendall(b"".join(call(tenant, n) for n in range(COUNT)))
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def reset(sock: socket.socket, tenant: str) -> None:
    sock.sendall(b"".join(call(tenant, n) for n in range(COUNT)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # an RST, not a FIN


def posts(sock: socket.socket, tenant: str) -> None:
    sock.sendall(b"".join(form(tenant, n) for n in range(COUNT)))
    sock.close()


CLIENTS: dict[str, Callable[[socket.socket, str], None]] = {
    "onewrite": one_write,
    "php": php_client,
    "shutdown": shut_down,
    "reset": reset,
}


def test_pipelined_requests_are_all_stored_when_the_client_does_not_read(tmp_path: Path) -> None:
    db, access = tmp_path / "pipelined.db", tmp_path / "access.log"
    server = Server(db, tmp_path / "serve.err", "--access-log", str(access))
    try:
        for tenant, client in {**CLIENTS, "posts": posts}.items():
            client(socket.create_connection(("127.0.0.1", server.port), timeout=10), tenant)
        with Engine(db, create=False) as reader:

            def all_stored() -> bool:
                events = [stored_seqs(reader, tenant) for tenant in CLIENTS]
                sets = reader.counts("posts")["property_records"]
                return events == [list(range(COUNT))] * len(CLIENTS) and sets == COUNT

            wait_for(all_stored, "every pipelined call")
    finally:
        code = server.stop()
    said = server.text()
    assert code == 0, said
    total = COUNT * (len(CLIENTS) + 1)
    assert f"stopped: {total} calls committed" in said
    with Engine(db, create=False) as engine:
        assert {p.id: dict(p.properties) for p in engine.people("posts")} == {
            f"u{n}": {"plan": f"p{n}"} for n in range(COUNT)
        }
        assert list(engine.quarantine()) == []
    logged = access.read_text(encoding="utf-8").splitlines()
    assert len(logged) == total  # every call is in the (replayable) log
    assert all(CLF.match(line) for line in logged)


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` answers (status line and body) from a pipelined connection."""
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            if len(rest) >= length:
                answers.append(head.split(b"\r\n", 1)[0] + b" " + rest[:length])
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        data += chunk
    return answers


def test_pipelined_answers_come_back_in_order_to_a_client_that_reads(tmp_path: Path) -> None:
    db = tmp_path / "ordered.db"
    server = Server(db, tmp_path / "serve.err", "--access-log", os.devnull)
    try:
        targets = [
            "/e?_k=K&_p=a&_n=x",
            "/nope",
            "/healthz",
            "/s?_k=K&_p=a&n=1",
            "/a?_k=K&_p=a&_n=b",
        ]
        pipeline = b"".join(
            f"GET {t} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for t in targets * 3
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(pipeline)
            answers = read_answers(sock, len(targets) * 3)
            # and the connection is still usable
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_answers(sock, 1) == [b"HTTP/1.1 200 OK ok\n"]
    finally:
        code = server.stop()
    assert code == 0, server.text()
    gif = b"HTTP/1.1 200 OK " + GIF
    assert (
        answers
        == [gif, b"HTTP/1.1 404 Not Found not found\n", b"HTTP/1.1 200 OK ok\n", gif, gif] * 3
    )


def test_requests_after_connection_close_are_refused_and_said(tmp_path: Path) -> None:
    db = tmp_path / "close.db"
    server = Server(db, tmp_path / "serve.err", "--access-log", os.devnull)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(call("K", 0, "close") + call("K", 1) + call("K", 2))
            status_line = sock.recv(65536).split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 200 OK"
        wait_for(lambda: "not processed" in server.text(), "the warning")
    finally:
        code = server.stop()
    said = server.text()
    assert code == 0, said
    assert "2 request(s) sent after one that closed the connection were not processed" in said
    assert "GET /e" in said
    with Engine(db, create=False) as engine:
        assert stored_seqs(engine, "K") == [0]  # RFC 9112 §9.6: nothing after the close


def test_access_log_has_every_answered_request_after_kill_9(tmp_path: Path) -> None:
    db, access = tmp_path / "killed.db", tmp_path / "access.log"
    server = Server(db, tmp_path / "serve.err", "--access-log", str(access))
    answered = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for n in range(25):
            if get(conn, f"/e?_k=K&_p=u{n}&_n=Logged&seq={n}")[0] == 200:
                answered.append(n)
        conn.close()
    finally:
        server.proc.kill()
        server.proc.wait(30)
    assert answered == list(range(25))
    logged = access.read_text(encoding="utf-8").splitlines()
    assert all(CLF.match(line) for line in logged)
    assert [int(re.search(r"seq=(\d+)", line).group(1)) for line in logged] == answered  # type: ignore[union-attr]
    with Engine(db, create=False) as engine:
        assert stored_seqs(engine, "K") == answered


def test_sigterm_with_slow_clients_and_a_poison_request_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "slow.db"
    server = Server(db, tmp_path / "serve.err", "--access-log", os.devnull, "--threads", "4")
    sockets: list[socket.socket] = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        assert get(conn, "/e?_k=K&_p=u0&_n=Before&seq=0")[0] == 200
        # a number that once spun the parser, in a query and in a form body
        assert get(conn, "/e?_k=K&_p=poison&_n=x&_d=1&_t=1e100000000")[0] == 200
        body = b"_k=K&_p=poison&_n=x&_d=1&_t=9" + b"9" * 5000
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert get(conn, "/e", "POST", body, headers)[0] == 200
        assert get(conn, "/e?_k=K&_p=u1&_n=Before&seq=1")[0] == 200  # left open, idle
        assert conn.sock is not None
        sockets.append(conn.sock)

        def connect() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sockets.append(sock)
            return sock

        connect().sendall(b"GET /e?_k=K&_p=slow&_n=x HTTP/1.1\r\nHost: 1")  # never finished
        connect().sendall(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n_k=K&")
        many = b"".join(call("K", n) for n in range(2, 2 + COUNT))
        connect().sendall(many)  # a pipeline whose answers are never read, socket left open
        with Engine(db, create=False) as reader:
            wait_for(lambda: len(stored_seqs(reader, "K")) == COUNT + 2, "the pipeline")
    finally:
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=30)
        for sock in sockets:
            sock.close()
    said = server.text()
    assert code == 0, said
    assert "a request cut short" in said
    with Engine(db, create=False) as engine:
        assert stored_seqs(engine, "K") == list(range(COUNT + 2))
        assert sorted(q.reason for q in engine.quarantine()) == ["bad_timestamp"] * 2
        engine.check()


STUCK = textwrap.dedent(
    """
    import sys, threading
    from identity import Engine
    from identity import engine as engine_module
    from identity.beacon.server import serve

    real = engine_module.Engine.apply_batch

    def apply_batch(self, batch, **kwargs):
        if any(call.identity == "stuck" for call in batch):
            print("identity test: stuck", file=sys.stderr, flush=True)
            threading.Event().wait()  # one call that never finishes committing
        return real(self, batch, **kwargs)

    engine_module.Engine.apply_batch = apply_batch
    with Engine(sys.argv[1]) as engine:
        serve(engine, port=0, access_log=None, stop_timeout=2.0)
    """
)


def test_sigterm_works_while_the_writer_is_stuck_on_one_call(tmp_path: Path) -> None:
    db, err = tmp_path / "stuck.db", tmp_path / "serve.err"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(err, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", STUCK, str(db)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
        )

    def text() -> str:
        return err.read_text(encoding="utf-8", errors="replace")

    try:
        wait_for(lambda: "serving on" in text() or proc.poll() is not None, "the server")
        port = int(re.search(r"serving on http://127\.0\.0\.1:(\d+)", text()).group(1))  # type: ignore[union-attr]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert get(conn, "/e?_k=K&_p=u0&_n=Before&seq=0")[0] == 200
        conn.close()
        stuck = socket.create_connection(("127.0.0.1", port), timeout=10)
        stuck.sendall(b"GET /e?_k=K&_p=stuck&_n=x HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: "identity test: stuck" in text(), "the writer to be stuck")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    said = text()
    assert code == 0, said
    assert "stopped:" in said
    stuck.settimeout(10)
    assert not stuck.recv(1024).startswith(b"HTTP/1.1 200")  # never acknowledged
    stuck.close()
    with Engine(db, create=False) as engine:
        assert stored_seqs(engine, "K") == [0]
        assert not engine.same_person("K", "stuck", "stuck")


def status(sock: socket.socket) -> int:
    return int(sock.recv(1024).split(b" ", 2)[1])


def test_oversized_requests_get_a_safe_answer_and_the_server_stays_up(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    server = Server(db, tmp_path / "serve.err", "--access-log", os.devnull)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        long_query = "/s?_k=K&_p=bob&x=" + "y" * 100_000
        assert get(conn, long_query)[0] == 200  # beyond max_query: quarantined, answered
        conn.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /e?_k=K HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 300_000 + b"\r\n\r\n"
            )
            assert status(sock) == 431  # headers are bounded
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n_k=K")
            assert status(sock) == 413  # not read, not waited for
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
            sock.sendall(head + chunk * 20)  # 1.3 MB, no length given
            assert status(sock) == 413
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        assert get(conn, "/healthz")[0] == 200
        conn.close()
    finally:
        code = server.stop()
    assert code == 0, server.text()
    with Engine(db, create=False) as engine:
        [item] = engine.quarantine()
        assert (item.reason, item.tenant) == ("too_large", "K")
        assert len(item.raw) < 2000


GATED = textwrap.dedent(
    """
    import os, sys, time
    from identity import Engine
    from identity.beacon.server import serve

    gate, fail = sys.argv[2] + ".gate", sys.argv[2] + ".fail"

    def fdatasync(fd):
        if os.path.exists(gate):
            print("identity test: sync held", file=sys.stderr, flush=True)
            while os.path.exists(gate):
                time.sleep(0.01)
        if os.path.exists(fail):
            raise OSError(5, "Input/output error (injected)")

    os.fdatasync = fdatasync
    with Engine(sys.argv[1]) as engine:
        serve(engine, port=0, access_log=None, stop_timeout=5.0)
    """
)


def test_served_calls_are_answered_only_after_the_wal_is_synced(tmp_path: Path) -> None:
    """Over real sockets, on the path without request threads: 200 only after the sync."""
    db, err, flag = tmp_path / "gated.db", tmp_path / "serve.err", tmp_path / "flag"
    gate, fail = Path(f"{flag}.gate"), Path(f"{flag}.fail")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(err, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", GATED, str(db), str(flag)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
        )

    def text() -> str:
        return err.read_text(encoding="utf-8", errors="replace")

    try:
        wait_for(lambda: "serving on" in text() or proc.poll() is not None, "the server")
        port = int(re.search(r"serving on http://127\.0\.0\.1:(\d+)", text()).group(1))  # type: ignore[union-attr]
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        gate.touch()
        sock.sendall(call("K", 1) + call("K", 2))  # pipelined, keep-alive
        wait_for(lambda: "sync held" in text(), "the sync")
        with Engine(db, create=False) as reader:
            wait_for(lambda: stored_seqs(reader, "K") == [1], "the commit")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)  # committed but not on the disk: no answer
        gate.unlink()
        sock.settimeout(10)
        answers = read_answers(sock, 2)
        assert answers == [b"HTTP/1.1 200 OK " + GIF] * 2
        fail.touch()
        sock.sendall(call("K", 3))
        [refused] = read_answers(sock, 1)
        assert refused == b"HTTP/1.1 503 Service Unavailable not committed; retry\n"
        fail.unlink()
        sock.sendall(call("K", 4))
        assert read_answers(sock, 1) == [b"HTTP/1.1 200 OK " + GIF]
        sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, text()
    assert "cannot sync" in text()
