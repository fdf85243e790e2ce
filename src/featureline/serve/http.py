"""uvicorn for `featureline serve`: a deadline and a size cap on every request's head.

uvicorn bounds neither: a client trickling one header line a second keeps its connection (and a
`limit_concurrency` slot) forever, and a connection that sends nothing is never closed. This is
uvicorn's httptools protocol with both, configured by `configure()` (each worker process calls
it through the app factory, before it serves):

- from a connection's start, or a request's first byte, to the request's last header: at most
  `header_timeout` seconds, else 408 and the connection closes (silently if nothing came);
- the request line and headers: at most `max_head` bytes, else 431 and the connection closes;
- the body: at most `max_body` bytes, declared (Content-Length, refused before any of it is
  read) or as it arrives (chunked), else 413; within `body_timeout` seconds of the head, else
  408; the connection closes after either. A request with a body reaches the app only once the
  body is complete (the app is woken once, not per chunk, and never for a refused body: a client
  sending oversized bodies back to back costs the server reading, not a request's work).
  `Expect: 100-continue` is answered here, when the head has passed its checks.

The app checks size and deadline again (`app.py`), for servers without this protocol. The
protocol relies on uvicorn's internals (pinned in pyproject.toml;
tests/integration/test_serve_limits.py checks each bound against a real socket).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .asgi import WHOLE_BODY


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


class _OneWrite:
    """A connection's transport as uvicorn's request cycle sees it: a response's head is held
    and written with the first part of its body, in one write (uvicorn writes them apart: two
    segments, so two wake-ups of the client per answer, ~90 us of its latency at 200 req/s)."""

    __slots__ = ("transport", "held", "head_next")

    def __init__(self, transport):
        self.transport = transport
        self.held = b""
        self.head_next = False  # a cycle started: its first write (but a 100 Continue) is the head

    def write(self, data: bytes) -> None:
        if self.held:
            data, self.held = self.held + data, b""
        elif self.head_next and not data.startswith(b"HTTP/1.1 100 "):
            self.head_next = False
            self.held = data
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self.held:
            data, self.held = self.held, b""
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name):
        return getattr(self.transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    tarpitted = 0  # this process's connections waiting for a delayed answer

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._out = _OneWrite(transport)
        self._head = 0
        self._body = 0
        self._pending: list[bytes] = []
        self._refused = False
        self._head_timer = None
        self._body_timer = None  # the body's deadline, or a refused request's delayed answer
        self._tarpit = False  # this connection's answer is delayed (counted in `tarpitted`)
        self._deferred = False  # the head passed; the app starts when the body is complete
        self._started = False  # any byte of the current head received
        self._arm()

    # the head's deadline
    def _arm(self) -> None:
        if self._head_timer is None:
            self._head = 0
            self._head_timer = self.loop.call_later(LIMITS.header_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._started = False

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._started:
            self._refuse(408, "request headers not received in time")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            self._refuse(408, f"request body not received within {LIMITS.body_timeout:g}s")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm()
        self._stop_body_timer()
        if self.transport.is_closing():
            return
        if status in (413, 431) and LIMITS.refusal_delay > 0 and GuardedHttpToolsProtocol.tarpitted < TARPIT_MAX:
            # a tarpit (HAProxy's `timeout tarpit`): a client sending oversized requests back to
            # back waits for each answer instead of making the server refuse (and read) one a
            # millisecond. Nothing more is read meanwhile, so a client that leaves keeps its slot
            # until the answer is due: at most TARPIT_MAX wait, far below max_connections.
            self.transport.pause_reading()
            GuardedHttpToolsProtocol.tarpitted += 1
            self._tarpit = True
            self._body_timer = self.loop.call_later(LIMITS.refusal_delay, self._answer, status, message)
            return
        self._answer(status, message)

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
            self._untarpit()

    def _untarpit(self) -> None:
        if self._tarpit:
            self._tarpit = False
            GuardedHttpToolsProtocol.tarpitted -= 1

    def _answer(self, status: int, message: str) -> None:
        self._body_timer = None
        self._untarpit()
        if self.transport.is_closing():
            return
        body = msgspec.json.encode({"error": message})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()

    # uvicorn's callbacks, counted and cut short
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_timer is not None:
            self._started = True
        super().data_received(data)
        if self._head > LIMITS.max_head and not self._refused:
            self._refuse(431, f"request line and headers over {LIMITS.max_head:,} bytes")

    def on_message_begin(self) -> None:
        self._arm()
        self._started = True
        self._body = 0
        self._deferred = False
        self._pending: list[bytes] = []
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head <= LIMITS.max_head:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._head > LIMITS.max_head:
            self._refuse(431, f"request line and headers over {LIMITS.max_head:,} bytes")
            return
        has_body = False
        for name, value in self.headers:
            if name == b"content-length":
                why = too_large(value.decode("latin-1"), LIMITS.max_body)
                if why:
                    self._refuse(413, why)
                    return
                has_body = has_body or value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
        if has_body and not self.parser.should_upgrade():
            self._deferred = True
            if self.expect_100_continue:  # the client waits for this before its body
                self.expect_100_continue = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._body_timer = self.loop.call_later(LIMITS.body_timeout, self._body_timeout)
            return
        super().on_headers_complete()

    def _start_asgi_task(self, cycle, app) -> None:  # a request's cycle starts (pipelined ones in turn)
        self._out.flush()
        self._out.head_next = True
        cycle.transport = self._out
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        self._out.flush()  # a head without a body (HEAD, 204)
        super().on_response_complete()

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
        if self._deferred:
            self._deferred = False
            self._stop_body_timer()
            self.scope.setdefault("extensions", {})[WHOLE_BODY] = True
            super().on_headers_complete()
        if self._pending:
            body = b"".join(self._pending)
            self._pending.clear()
            super().on_body(body)
        super().on_message_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        self._stop_body_timer()
        super().connection_lost(exc)
