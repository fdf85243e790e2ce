"""`featureline serve` under hostile clients and a stalled Redis (issue 13): bodies cut while
read, the event loop never blocked by Redis, slow clients dropped, inputs bounded with short 4xx
answers (no 500, no traceback in the log), bearer tokens, /metrics on its own port. Each test
talks to a real server on a loopback socket; reads go to the real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from tests.integration.serving import Server, drop_prefix, free_port, make_project

from featureline.plan import ServePlan
from featureline.serve import create_app

pytestmark = pytest.mark.integration

FAST = ServePlan(timeout_s=0.5, header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_s=1.0)


@pytest.fixture(scope="module")
def project(tmp_path_factory, services):
    d = tmp_path_factory.mktemp("limits")
    plan, engine, store, T = make_project(d, services.redis_port, events=2_000)
    yield d, plan
    drop_prefix(store)


@pytest.fixture(scope="module")
def server(project):
    d, plan = project
    with Server(create_app(plan, settings=FAST)) as client:
        yield client


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_all(s: socket.socket, timeout: float = 10) -> bytes:
    """What the server sends until it closes the connection (or `timeout`)."""
    out = b""
    s.settimeout(timeout)
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def _status(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


# -- 1. the body limit holds without Content-Length ---------------------------------------------


def test_a_chunked_body_is_refused_at_the_limit_not_after_reading_it(server):
    """A 40 MiB chunked body (no Content-Length): 413 once 1 MiB is in, the rest never read
    (before: the whole body was read into memory, then refused)."""
    port = int(server.base_url.port)
    s = _raw(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    s.sendall(b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
    sent, reply = 0, b""
    s.settimeout(5)
    try:
        while sent < 40 << 20:
            s.sendall(chunk)
            sent += 1 << 16
            if select.select([s], [], [], 0)[0]:
                break
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass  # the server stopped reading: what is asked
    reply = _read_all(s, 5)
    s.close()
    # the server stops at 1 MiB; what the kernel's socket buffers hold on top varies (up to a few MiB)
    assert sent < 16 << 20, f"the server read {sent:,} bytes before answering"
    if reply:  # the answer may be lost to the reset of the unread rest
        assert _status(reply) == 413 and b"the limit" in reply


@pytest.mark.parametrize("length, status", [(str(5 << 20), 413), ("99999999999999999999", 400), ("12abc", 400), ("-1", 400)])
def test_a_declared_content_length_is_judged_before_the_body(server, length, status):
    s = _raw(int(server.base_url.port))
    s.sendall(
        b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %s\r\n\r\n{}" % length.encode()
    )
    reply = _read_all(s, 5)
    s.close()
    assert _status(reply) == status, reply[:300]


def _counting(app):
    """The app, counting the requests its routes are woken for (by path)."""
    seen: dict[str, int] = {}

    def counted(path, fn):
        async def handler(request):
            seen[path] = seen.get(path, 0) + 1
            return await fn(request)

        return handler

    for path, methods in app.routes.items():
        for method, fn in methods.items():
            methods[method] = counted(path, fn)
    app.seen = seen
    return app


def test_a_refused_body_never_wakes_the_app_and_a_good_one_does_once_complete(project):
    """The flood's cost: an oversized chunked body is refused by the protocol alone (before: the
    app was started for it and read it chunk by chunk); a good chunked body reaches the app."""
    d, plan = project
    app = _counting(create_app(plan, settings=dataclasses.replace(FAST, refusal_delay_s=0.0)))
    with Server(app) as http:
        port = int(http.base_url.port)
        s = _raw(port)
        s.sendall(b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        try:
            for _ in range(40):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _read_all(s, 2)
        s.close()
        assert app.seen.get("/features/online", 0) == 0, app.seen
        body = b'{"service": "user_activity", "entities": [{"user_id": 1}]}'
        s = _raw(port)
        s.sendall(b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (body[:10], body[10:]):
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.05)
        s.sendall(b"0\r\n\r\n")
        s.settimeout(5)
        reply = s.recv(65536)
        s.close()
        assert _status(reply) == 200, reply[:300]
        assert app.seen["/features/online"] == 1


def test_expect_100_continue_gets_its_interim_answer_before_the_body(server):
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for it (1 s by default)."""
    body = b'{"service": "user_activity", "entities": [%s]}' % b", ".join(b'{"user_id": %d}' % i for i in range(100))
    s = _raw(int(server.base_url.port))
    s.sendall(
        b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    s.settimeout(0.5)
    interim = s.recv(65536)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
    s.sendall(body)
    s.settimeout(5)
    reply = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :] or s.recv(65536)
    s.close()
    assert _status(reply) == 200 and reply.count(b"HTTP/1.1 100") == 0, reply[:300]


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_an_oversized_request_is_answered_after_the_refusal_delay_and_others_are_served_meanwhile(project, delay):
    """`serve.refusal_delay` (a tarpit): a client sending oversized requests back to back waits
    for each 413/431, so it cannot make the server refuse (and read) a thousand a second."""
    d, plan = project
    with Server(create_app(plan, settings=dataclasses.replace(FAST, refusal_delay_s=delay))) as http:
        port = int(http.base_url.port)
        s = _raw(port)
        t0 = time.perf_counter()
        s.sendall(b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (1 << 30))
        served = []
        if delay:
            while time.perf_counter() - t0 < delay / 2:
                t1 = time.perf_counter()
                assert http.get("/health").status_code == 200
                served.append(time.perf_counter() - t1)
        reply = _read_all(s, 5)
        took = time.perf_counter() - t0
        s.close()
        assert _status(reply) == 413, reply[:300]
        if delay:
            assert delay * 0.9 <= took < delay + 2, took
            # never held for the tarpit's delay (a blocked server would answer after ~delay); a
            # busy machine's stall of a few hundred ms is not that
            assert served and max(served) < delay / 2 and sorted(served)[len(served) // 2] < 0.05, served
        else:
            assert took < 0.5, took


# -- 2. a stalled Redis never blocks the loop ----------------------------------------------------


class _BlackHole:
    """A TCP server that accepts connections and reads, but never answers: a hung Redis."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except TimeoutError:
                pass
            except OSError:  # closed
                return

    def close(self) -> None:
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_redis_that_never_answers_gives_503_in_time_and_health_stays_fast(project):
    d, plan = project
    hole = _BlackHole()
    try:
        hung = dataclasses.replace(plan, project=dataclasses.replace(plan.project, redis_url=f"redis://127.0.0.1:{hole.port}/0"))
        with Server(create_app(hung, settings=FAST)) as http:
            url = f"http://127.0.0.1:{http.base_url.port}"

            async def main():
                async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                    body = {"service": "user_activity", "entities": [{"user_id": 1}]}

                    async def read():
                        t0 = time.perf_counter()
                        r = await c.post("/features/online", json=body)
                        return r, time.perf_counter() - t0

                    async def health():
                        await asyncio.sleep(0.1)  # while the reads wait on Redis
                        times = []
                        for _ in range(5):
                            t0 = time.perf_counter()
                            assert (await c.get("/health")).status_code == 200
                            times.append(time.perf_counter() - t0)
                            await asyncio.sleep(0.05)
                        return times

                    return await asyncio.gather(*(read() for _ in range(4)), health())

            *reads, health_times = asyncio.run(main())
        for r, took in reads:
            assert r.status_code == 503 and "did not answer within 0.5s" in r.json()["error"]
            assert took < 1.5, f"a read took {took:.2f}s (the reads were served one after another?)"
        # /health answered while four reads waited (before: blocked 3.7 s); 50 ms here, 250 ms to spare a busy CI machine
        assert max(health_times) < 0.25, health_times
    finally:
        hole.close()


# -- 3. slow clients are dropped -----------------------------------------------------------------


def test_a_client_trickling_its_headers_is_cut_off_after_the_header_timeout(server):
    s = _raw(int(server.base_url.port))
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")
    t0 = time.perf_counter()
    closed_after = None
    s.settimeout(0.2)
    reply = b""
    while time.perf_counter() - t0 < 10:
        try:
            s.sendall(b"x-slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.perf_counter() - t0
            break
        try:
            chunk = s.recv(4096)
            reply += chunk
            if not chunk:
                closed_after = time.perf_counter() - t0
                break
        except TimeoutError:
            pass
        time.sleep(0.2)
    s.close()
    assert closed_after is not None and closed_after < 3, f"still open after {time.perf_counter() - t0:.1f}s"
    if reply:
        assert _status(reply) == 408


def test_a_connection_that_sends_nothing_is_closed(server):
    s = _raw(int(server.base_url.port))
    t0 = time.perf_counter()
    assert _read_all(s, 10) == b""  # closed without a word
    assert time.perf_counter() - t0 < 3
    s.close()


def test_headers_over_64_kib_are_refused(server):
    s = _raw(int(server.base_url.port))
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(80)) + b"\r\n")
    reply = _read_all(s, 5)
    s.close()
    assert _status(reply) == 431


def test_a_client_trickling_its_body_gets_408(server):
    s = _raw(int(server.base_url.port))
    s.sendall(b"POST /features/online HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
    t0 = time.perf_counter()
    reply = b""
    s.settimeout(0.3)
    while time.perf_counter() - t0 < 10 and not reply:
        try:
            s.sendall(b" ")
            reply = s.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    s.close()
    assert _status(reply) == 408 and time.perf_counter() - t0 < 3


def test_an_idle_keep_alive_connection_is_closed(server):
    s = _raw(int(server.base_url.port))
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    t0 = time.perf_counter()
    reply = _read_all(s, 10)
    assert _status(reply) == 200 and 0.5 < time.perf_counter() - t0 < 3  # answered, then closed after keep_alive (1s)
    s.close()


def test_a_well_behaved_client_keeps_its_connection_across_requests(server):
    with httpx.Client(base_url=str(server.base_url)) as c:
        for _ in range(3):
            assert c.get("/health").status_code == 200
            time.sleep(0.3)  # under keep_alive


# -- 5. hostile inputs: short 4xx, never a 500 or a traceback ------------------------------------

_JSON = {"content-type": "application/json"}
HOSTILE = [
    ("nested 10k", b'{"service": "user_activity", "entities": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400, "nested too deeply"),
    ("nested 100k", b"[" * 100_000, 400, "nested too deeply"),
    ("at 1e30", {"service": "user_activity", "entities": [{"user_id": 1}], "at": 1e30}, 422, "`at` must be"),
    ("at 10**30", {"service": "user_activity", "entities": [{"user_id": 1}], "at": 10**30}, 422, "between 1970-01-01 and 2200-01-01"),
    ("at -1", {"service": "user_activity", "entities": [{"user_id": 1}], "at": -1}, 422, "between 1970-01-01"),
    ("at year 9999", {"service": "user_activity", "entities": [{"user_id": 1}], "at": "9999-12-31T00:00:00Z"}, 422, "between"),
    ("at 500 kB", {"service": "user_activity", "entities": [{"user_id": 1}], "at": "2" * 500_000}, 422, "is not a time"),
    ("400-digit key", {"service": "user_activity", "entities": [{"user_id": 10**399}]}, 422, "within int64, got an integer of 400 digits"),
    ("2^63 key", {"feature_service": "user_activity", "entities": {"user_id": [2**63]}}, 422, "within int64"),
    ("500 kB feature", {"features": ["user_transactions:" + "x" * 500_000], "entities": [{"user_id": 1}]}, 400, "the limit is 256"),
    ("500 kB service", {"service": "s" * 500_000, "entities": [{"user_id": 1}]}, 400, "the limit is 256"),
    ("3 MB body", {"service": "s" * 3_000_000, "entities": [{"user_id": 1}]}, 413, "the limit is 1,048,576"),
    ("501 features", {"features": [f"user_transactions:f{i}" for i in range(501)], "entities": [{"user_id": 1}]}, 413, "the limit is 500"),
    ("a million rows", {"service": "user_activity", "entities": [{"user_id": 1}] * 1_000_000}, 413, "the limit is"),
    ("invalid UTF-8", b'{"service": "\xff\xfe", "entities": []}', 400, "malformed JSON"),
    ("lone surrogate", b'{"service": "\\ud800", "entities": []}', 400, "surrogate"),
    ("NUL in a key", {"service": "user_activity", "entities": [{"user_id": 1, "\x00": 2}]}, 422, "unknown key(s)"),
    ("huge key name", {"service": "user_activity", "entities": [{"user_id": 1, "k" * 100_000: 2}]}, 422, "unknown key(s)"),
    ("1000 entity rows", {"service": "user_activity", "entities": [{"user_id": i} for i in range(1001)]}, 413, "the limit is 1000"),
    ("a number too big", b'{"service": "user_activity", "entities": [{"user_id": 1e400}]}', 400, "malformed JSON"),
    ("5000-digit int", b'{"service": "user_activity", "entities": [{"user_id": ' + b"9" * 5000 + b"}]}", 400, "malformed JSON"),
    ("array body", b"[1, 2]", 400, "must be a JSON object"),
]


@pytest.mark.parametrize("body, status, message", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_inputs_get_a_short_4xx_and_no_traceback(server, caplog, body, status, message):
    path = "/get-online-features" if isinstance(body, dict) and "feature_service" in body else "/features/online"
    with caplog.at_level(logging.INFO, logger="featureline.serve"):
        if isinstance(body, bytes):
            r = server.post(path, content=body, headers=_JSON)
        else:
            r = server.post(path, json=body)
    assert r.status_code == status, r.text[:300]
    assert message in r.json()["error"], r.json()
    assert len(r.content) < 1024  # nothing echoed back at length
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


# -- 6. bearer tokens ----------------------------------------------------------------------------

T1, T2 = "tok-one-0123456789abcdef", "tok-two-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(project):
    d, plan = project
    os.environ["FL_TEST_TOKEN_A"], os.environ["FL_TEST_TOKEN_B"] = T1, T2
    try:
        settings = dataclasses.replace(FAST, auth_token_envs=("FL_TEST_TOKEN_A", "FL_TEST_TOKEN_B"))
        with Server(create_app(plan, settings=settings)) as client:
            yield client
    finally:
        del os.environ["FL_TEST_TOKEN_A"], os.environ["FL_TEST_TOKEN_B"]


@pytest.mark.parametrize(
    "method, path", [("POST", "/features/online"), ("POST", "/get-online-features"), ("GET", "/metrics"), ("GET", "/openapi.json")]
)
def test_tokens_guard_the_feature_endpoints_and_metrics(guarded, method, path):
    body = {"service": "user_activity", "feature_service": "user_activity", "entities": {"user_id": [1]}}
    if path == "/features/online":
        body = {"service": "user_activity", "entities": [{"user_id": 1}]}
    if path == "/get-online-features":
        body = {"feature_service": "user_activity", "entities": {"user_id": [1]}}
    kw = {"json": body} if method == "POST" else {}
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}, {"authorization": T1}, {"authorization": "Basic " + T1}):
        r = guarded.request(method, path, headers=headers, **kw)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
    for tok in (T1, T2):  # either token: rotation
        r = guarded.request(method, path, headers={"authorization": f"Bearer {tok}"}, **kw)
        assert r.status_code == 200, r.text


def test_health_and_ready_need_no_token(guarded):
    assert guarded.get("/health").status_code == 200
    assert guarded.get("/ready").status_code == 200


def test_a_token_variable_that_is_not_set_stops_the_server_at_start(project):
    from featureline.serve import ServeError

    d, plan = project
    with pytest.raises(ServeError, match="FL_TEST_UNSET_TOKEN is not set"):
        create_app(plan, settings=dataclasses.replace(FAST, auth_token_envs=("FL_TEST_UNSET_TOKEN",)))


# -- /metrics on its own port (the CLI) -----------------------------------------------------------


def test_metrics_port_serves_metrics_there_and_not_on_the_feature_port(project):
    d, plan = project
    port, mport = free_port(), free_port()
    yaml = (d / "featureline.yaml").read_text()
    (d / "featureline.yaml").write_text(yaml + f"serve:\n  metrics_port: {mport}\n")
    exe = os.path.join(os.path.dirname(sys.executable), "featureline")
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "-p", str(d)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "no answer"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.post(f"http://127.0.0.1:{port}/features/online", json={"service": "user_activity", "entities": [{"user_id": 1}]})
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics").text
        assert 'featureline_http_requests_total{endpoint="/features/online",status="200"} 1.0' in text
    finally:
        proc.terminate()
        proc.wait(10)
        (d / "featureline.yaml").write_text(yaml)
