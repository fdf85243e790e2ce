"""The HTTP/1.1 protocol of `featureline serve`, the `http=` class uvicorn runs.

uvicorn keeps the process side (listening sockets, `--workers`, signals, graceful shutdown, the
ASGI lifespan); this protocol parses requests with httptools (llhttp, as uvicorn does) and
answers each from the app's routes (`App.dispatch`), head and body in one write. uvicorn's own
protocol (a request cycle, ASGI messages, a task and header checks per answer, head and body
written apart) answering a bare ASGI app took ~270 us of CPU per request at 200 req/s here, a
bare httptools protocol ~80 us.

Bounds, configured by `configure()` (each worker process calls it through the app factory):

- from a connection's start, or a request's first byte, to the request's last header: at most
  `header_timeout` seconds, else 408 and the connection closes (silently if nothing came);
- the request line and headers: at most `max_head` bytes, else 431 and the connection closes;
- the body: at most `max_body` bytes, declared (Content-Length, refused before any of it is
  read) or as it arrives (chunked), else 413; within `body_timeout` seconds of the head, else
  408; the connection closes after either. A request reaches the app only once its body is
  complete (never for a refused body). `Expect: 100-continue` is answered when the head passes;
- a 413 or 431 is answered `refusal_delay` after the limit is crossed (a tarpit, see
  `_refuse`), for at most TARPIT_MAX connections of a worker at once;
- an idle kept-alive connection closes after uvicorn's `timeout_keep_alive`; with
  `limit_concurrency` connections or requests in progress a request gets 503 (as uvicorn);
- pipelined requests are answered in order, one at a time, reading paused meanwhile; reading
  pauses too while the client does not read its answers (the transport's write buffer is full);
- a malformed request is answered 400 and the connection closes; an Upgrade is not taken (the
  request is answered as plain HTTP, then the connection closes).

uvicorn is pinned in pyproject.toml (this uses its Config and ServerState);
tests/integration/test_serve_limits.py checks each bound against a real socket.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass

import httptools
import msgspec

from .asgi import Answer, App, Request


@dataclass
class Limits:
    header_timeout: float = 5.0
    max_head: int = 64 << 10
    max_body: int = 1 << 20
    body_timeout: float = 10.0
    refusal_delay: float = 1.0


LIMITS = Limits()


def configure(
    header_timeout: float, max_body: int, body_timeout: float = 10.0, refusal_delay: float = 1.0, max_head: int = 64 << 10
) -> None:
    LIMITS.header_timeout = header_timeout
    LIMITS.max_body = max_body
    LIMITS.body_timeout = body_timeout
    LIMITS.refusal_delay = refusal_delay
    LIMITS.max_head = max_head
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OncePerMinute) for f in log.filters):
        log.addFilter(OncePerMinute())


class OncePerMinute(logging.Filter):
    """uvicorn's warnings about clients ("Invalid HTTP request received.", "Exceeded concurrency
    limit."): each message at most once a minute, with how many were dropped since, so a
    hostile client cannot flood the log."""

    def __init__(self, every: float = 60.0):
        super().__init__()
        self.every = every
        self.seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = str(record.msg)
        now = time.monotonic()
        last, dropped = self.seen.get(key, (-self.every, 0))
        if now - last < self.every:
            self.seen[key] = (last, dropped + 1)
            return False
        self.seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped:,} more in the last {now - last:.0f}s, not shown)"
        return True


def too_large(content_length: str, limit: int) -> str | None:
    """Why a declared Content-Length (digits; anything else is the parser's to refuse) is over `limit`."""
    if not content_length.isdigit():
        return None
    if len(content_length) > 18:
        return f"request body of over 10^18 bytes; the limit is {limit:,}"
    if int(content_length) > limit:
        return f"request body of {int(content_length):,} bytes; the limit is {limit:,}"
    return None


_REASONS = {408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


TARPIT_MAX = 64  # connections of one worker waiting for a delayed 413/431 at once; more are answered at once


_PHRASES = {c.value: c.phrase.encode() for c in http.HTTPStatus}
_UNAVAILABLE = Answer(503, b"Service Unavailable", (), b"text/plain; charset=utf-8")
_MALFORMED = Answer(400, b"Invalid HTTP request received.", (), b"text/plain; charset=utf-8")
HEAD, BODY, IDLE = "head", "body", "idle"  # what a connection's deadline is for
_CLOSE = (b"connection", b"close")
log = logging.getLogger("uvicorn.error")  # where uvicorn's protocol logs (OncePerMinute filters it)


def _featureline_app(app):
    """The `App` inside what uvicorn loaded (it may wrap it in middleware)."""
    seen = app
    while not isinstance(seen, App):
        seen = getattr(seen, "app", None)
        if seen is None:
            raise TypeError(f"serve/http.py's protocol serves featureline's App, got {type(app).__name__}")
    return seen


class HttpProtocol(asyncio.Protocol):
    tarpitted = 0  # this process's connections waiting for a delayed answer

    def __init__(self, config, server_state, app_state=None, _loop=None):
        if not config.loaded:
            config.load()
        self.app = _featureline_app(config.loaded_app)
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.limit = config.limit_concurrency
        self.keep_alive_s = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn: answer what came before a close
        self.transport = None
        self.queue: deque = deque()  # complete requests (or _MALFORMED) waiting for the one in progress
        self.busy = False  # a request is being answered
        self.last = False  # no request after the queued ones: close once they are answered
        self.paused = False
        self.write_paused = False
        # one deadline at a time, on one lazily moved timer (no timer made or cancelled per request)
        self._kind: str | None = None  # HEAD, BODY or IDLE
        self._at = 0.0
        self._timer = None
        self._tarpit_timer = None  # a refused request's delayed answer
        # the request being read
        self._url = b""
        self._headers: list = []
        self._keep = True
        self._head = 0
        self._body = 0
        self._pending: list[bytes] = []
        self._refused = False
        self._tarpit = False  # this connection's answer is delayed (counted in `tarpitted`)
        self._started = False  # any byte of the current head received

    # the connection
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.server_state.connections.add(self)
        self.transport = transport
        self._due(HEAD, LIMITS.header_timeout)

    def connection_lost(self, exc) -> None:
        self.server_state.connections.discard(self)
        self._kind = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_tarpit()
        self.queue.clear()
        self.last = True

    def eof_received(self) -> None:
        pass

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after the answer in progress."""
        if not self.busy:
            self.transport.close()
        else:
            self.queue.clear()
            self.last = True

    def pause_writing(self) -> None:  # the client is not reading its answers: read no more requests
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.queue:
            self._resume()

    def _pause(self) -> None:
        if not self.paused and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.write_paused and not self._tarpit and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()

    # deadlines: the head's, the body's, an idle connection's
    def _due(self, kind: str, seconds: float) -> None:
        self._kind = kind
        self._at = at = self.loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > at:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        kind = self._kind
        if kind is None or self.transport.is_closing():
            return
        if self.loop.time() < self._at:  # moved later since: wait on
            self._timer = self.loop.call_at(self._at, self._fire)
            return
        self._kind = None
        if kind is BODY:
            self._refuse(408, f"request body not received within {LIMITS.body_timeout:g}s")
        elif kind is HEAD and self._started:
            self._refuse(408, "request headers not received in time")
        elif not self.busy:
            self.transport.close()  # an idle connection: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._kind = None
        self._started = False
        self._stop_tarpit()
        if self.transport.is_closing():
            return
        if status in (413, 431) and LIMITS.refusal_delay > 0 and HttpProtocol.tarpitted < TARPIT_MAX:
            # a tarpit (HAProxy's `timeout tarpit`): a client sending oversized requests back to
            # back waits for each answer instead of making the server refuse (and read) one a
            # millisecond. Nothing more is read meanwhile, so a client that leaves keeps its slot
            # until the answer is due: at most TARPIT_MAX wait, far below max_connections.
            self._pause()
            HttpProtocol.tarpitted += 1
            self._tarpit = True
            self._tarpit_timer = self.loop.call_later(LIMITS.refusal_delay, self._answer_refusal, status, message)
            return
        self._answer_refusal(status, message)

    def _stop_tarpit(self) -> None:
        if self._tarpit_timer is not None:
            self._tarpit_timer.cancel()
            self._tarpit_timer = None
        self._untarpit()

    def _untarpit(self) -> None:
        if self._tarpit:
            self._tarpit = False
            HttpProtocol.tarpitted -= 1

    def _answer_refusal(self, status: int, message: str) -> None:
        self._tarpit_timer = None
        self._untarpit()
        if not self.transport.is_closing():
            self._write("GET", Answer(status, msgspec.json.encode({"error": message})), keep=False)

    # reading requests
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._kind is IDLE:  # a request's first bytes: its head's deadline runs from now
            self._due(HEAD, LIMITS.header_timeout)
        if self._kind is HEAD:
            self._started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # not taken: what came is answered, then the connection closes
            self.last = True
            self._refused = True
            self._pause()
        except httptools.HttpParserError:
            log.warning("Invalid HTTP request received.")
            self._refused = True
            self._kind = None
            self._queue(_MALFORMED)
            return
        if self._head > LIMITS.max_head and not self._refused:
            self._refuse(431, f"request line and headers over {LIMITS.max_head:,} bytes")

    def on_message_begin(self) -> None:
        if self._kind is not HEAD:
            self._due(HEAD, LIMITS.header_timeout)
        self._started = True
        self._head = 0
        self._url = b""
        self._headers = []
        self._body = 0
        self._pending = []

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head <= LIMITS.max_head:
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._kind = None
        self._started = False
        if self._head > LIMITS.max_head:
            self._refuse(431, f"request line and headers over {LIMITS.max_head:,} bytes")
            return
        has_body = expect = False
        for name, value in self._headers:
            if name == b"content-length":
                why = too_large(value.decode("latin-1"), LIMITS.max_body)
                if why:
                    self._refuse(413, why)
                    return
                has_body = has_body or value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        self._keep = self.parser.should_keep_alive()
        if has_body:
            if expect:  # the client waits for this before its body
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._due(BODY, LIMITS.body_timeout)

    def on_body(self, body: bytes) -> None:
        # held here until the body is complete: the app is woken once per request, not per chunk
        if self._refused:
            return
        self._body += len(body)
        if self._body > LIMITS.max_body:
            self._pending.clear()
            self._refuse(413, f"request body over {LIMITS.max_body:,} bytes (the limit)")
            return
        self._pending.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._kind = None
        try:
            raw = httptools.parse_url(self._url).path
        except httptools.HttpParserInvalidURLError:
            self._refused = True
            self._queue(_MALFORMED)
            return
        path = raw.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        body = b"".join(self._pending)
        self._pending = []
        method = self.parser.get_method().decode("ascii")
        self._queue((Request(method, path, self._headers, body), self._keep))

    # answering them, in order
    def _queue(self, item) -> None:
        self.queue.append(item)
        if self.busy:
            self._pause()  # pipelined: the rest waits in the socket
        else:
            self._next()

    def _next(self) -> None:
        if not self.queue:
            self.busy = False
            if self.last:
                self.transport.close()
                return
            self._resume()
            if self._kind is None and not self.transport.is_closing():
                self._due(IDLE, self.keep_alive_s)
            return
        item = self.queue.popleft()
        self.busy = True
        if item is _MALFORMED:
            self._write("GET", _MALFORMED, keep=False)
            return
        request, keep = item
        state = self.server_state
        if self.limit is not None and (len(state.connections) >= self.limit or len(state.tasks) >= self.limit):
            log.warning("Exceeded concurrency limit.")
            self._write(request.method, _UNAVAILABLE, keep=False)
            return
        task = self.loop.create_task(self._run(request, keep))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _run(self, request: Request, keep: bool) -> None:
        try:
            answer = await self.app.dispatch(request)
        except Exception:  # the routes answer their own errors; this is a bug
            log.exception("internal error answering %s", request.path[:100])
            answer = Answer(500, b'{"error":"internal error"}')
        self.server_state.total_requests += 1
        self._write(request.method, answer, keep)
        if not self.transport.is_closing():
            self._next()

    def _write(self, method: str, answer: Answer, keep: bool) -> None:
        if self.transport.is_closing():
            return
        closes = _CLOSE in answer.headers
        keep = keep and not self.last and not closes
        parts = [
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            % (answer.status, _PHRASES.get(answer.status, b""), answer.content_type, len(answer.body))
        ]
        for name, value in answer.headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        if not keep and not closes:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if method != "HEAD":
            parts.append(answer.body)
        self.transport.write(b"".join(parts))
        if not keep:
            self.transport.close()
