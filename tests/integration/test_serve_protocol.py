"""What `featureline serve`'s own HTTP/1.1 protocol (serve/http.py) owes a client, uvicorn's
protocol having given it before: pipelined answers in order, HEAD, HTTP/1.0 and `Connection:
close`, percent-encoded paths, the concurrency limit (503), a client that does not read its
answers, an Upgrade not taken, and a graceful stop. Real sockets, real Redis."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest
from tests.integration.serving import Server, drop_prefix, make_project

from featureline.plan import ServePlan
from featureline.serve import create_app

pytestmark = pytest.mark.integration

FAST = ServePlan(timeout_s=0.5, header_timeout_s=2.0, body_timeout_s=2.0, keep_alive_s=2.0)
BODY = b'{"service": "user_activity", "entities": [{"user_id": 1}]}'


@pytest.fixture(scope="module")
def project(tmp_path_factory, services):
    d = tmp_path_factory.mktemp("protocol")
    plan, engine, store, T = make_project(d, services.redis_port, events=1_000)
    yield plan
    drop_prefix(store)


@pytest.fixture(scope="module")
def port(project):
    with Server(create_app(project, settings=FAST)) as http:
        yield int(http.base_url.port)


def _conn(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Answers:
    """HTTP/1.1 answers read off a socket one at a time (Content-Length framed)."""

    def __init__(self, s: socket.socket):
        self.s, self.buf, self.closed = s, b"", False

    def _fill(self) -> None:
        chunk = self.s.recv(1 << 16)
        if not chunk:
            self.closed = True
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(lines[0].split()[1]), headers, body

    def at_eof(self, timeout: float = 5) -> bool:
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False


def _post(body: bytes = BODY, path: bytes = b"/features/online", extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        path,
        len(body),
        extra,
        body,
    )


def test_pipelined_requests_are_answered_in_order(port):
    s = _conn(port)
    s.sendall(
        b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
        + _post()
        + b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n"
        + _post(b'{"service": "nope", "entities": []}')
        + b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    got = Answers(s)
    answers = [got.next() for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 404, 404, 200]
    assert answers[0][2] == b'{"status":"ok"}'
    assert b'"user_id":1' in answers[1][2]
    assert b"no such endpoint" in answers[2][2]
    assert b"nope" in answers[3][2]
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")  # and the connection serves on
    assert got.next()[0] == 200
    s.close()


def test_head_gets_the_get_headers_and_no_body(port):
    s = _conn(port)
    s.sendall(b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    s.settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b'{"status":"ok"}'):
        data += s.recv(1 << 16)
    head1, rest = data.split(b"\r\n\r\n", 1)
    assert head1.startswith(b"HTTP/1.1 200 OK") and b"content-length: 15" in head1
    assert rest.startswith(b"HTTP/1.1 200 OK")  # nothing between: HEAD sent no body
    s.close()


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /health HTTP/1.0\r\n\r\n", b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
    ids=["http/1.0", "connection: close"],
)
def test_a_request_that_asks_for_it_closes_the_connection_after_its_answer(port, request_bytes):
    s = _conn(port)
    s.sendall(request_bytes)
    got = Answers(s)
    status, headers, body = got.next()
    assert (status, body, headers.get("connection")) == (200, b'{"status":"ok"}', "close")
    assert got.at_eof()
    s.close()


def test_a_percent_encoded_path_is_decoded_and_a_bad_url_is_400(port):
    s = _conn(port)
    s.sendall(b"GET /he%61lth HTTP/1.1\r\nhost: x\r\n\r\n")
    assert Answers(s).next()[0] == 200
    s.close()
    s = _conn(port)
    s.sendall(b"GET http://[::1 HTTP/1.1\r\nhost: x\r\n\r\n")
    got = Answers(s)
    assert got.next()[0] == 400
    assert got.at_eof()
    s.close()


def test_an_upgrade_is_not_taken_the_request_is_answered_then_the_connection_closes(port):
    s = _conn(port)
    s.sendall(
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    got = Answers(s)
    status, headers, body = got.next()
    assert (status, body) == (200, b'{"status":"ok"}')
    assert got.at_eof()
    s.close()


def test_over_max_connections_a_request_gets_503_and_the_slot_frees_on_close(project):
    app = create_app(project, settings=dataclasses.replace(FAST, max_connections=2))
    with Server(app) as http:
        port = int(http.base_url.port)
        a = _conn(port)
        a.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert Answers(a).next()[0] == 200  # one connection: under the limit
        b = _conn(port)
        b.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        got = Answers(b)
        status, headers, body = got.next()
        assert (status, body, headers.get("connection")) == (503, b"Service Unavailable", "close")
        assert got.at_eof()
        b.close()
        a.close()
        time.sleep(0.2)
        c = _conn(port)
        c.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert Answers(c).next()[0] == 200
        c.close()


def test_a_client_that_does_not_read_its_answers_is_paused_and_then_served_whole(port):
    """100,000 pipelined requests (3.3 MB) sent without reading answers: the server stops reading
    once its answers are not taken (the sender blocks; the server buffers no unbounded pile of
    answers), serves other clients meanwhile, and answers all of them in order once the client
    reads. (Without the pause the server swallowed all 3.3 MB within a second.)"""
    n = 100_000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    s.connect(("127.0.0.1", port))
    reqs = b"".join(b"GET /he%s HTTP/1.1\r\nhost: x\r\n\r\n" % (b"alth" if i % 2 == 0 else b"%61lth") for i in range(n))
    sender = threading.Thread(target=s.sendall, args=(reqs,), daemon=True)
    sender.start()
    time.sleep(2.0)
    assert sender.is_alive(), "the server read every request although no answer was taken"
    other = _conn(port)
    t0 = time.perf_counter()
    other.sendall(_post())
    assert Answers(other).next()[0] == 200
    assert time.perf_counter() - t0 < 2.0  # served while the first client is paused
    other.close()
    got = Answers(s)
    s.settimeout(30)
    statuses = [got.next()[0] for _ in range(n)]
    sender.join(30)
    assert statuses == [200] * n
    s.close()


def test_a_stopping_server_finishes_the_answer_in_progress_and_closes_idle_connections(project):
    """uvicorn's graceful stop calls each connection's shutdown(): an idle one closes at once."""
    app = create_app(project, settings=FAST)
    srv = Server(app)
    http = srv.__enter__()
    port = int(http.base_url.port)
    idle = _conn(port)
    idle.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    got = Answers(idle)
    assert got.next()[0] == 200
    t0 = time.perf_counter()
    srv.__exit__(None, None, None)
    assert not srv.thread.is_alive()
    assert time.perf_counter() - t0 < 1.5  # not held up by the idle keep-alive connection
    assert got.at_eof(1)
    idle.close()
