"""uvicorn for `featureline serve`: a deadline and a size cap on every request's head.

uvicorn bounds neither: a client trickling one header line a second keeps its connection (and a
`limit_concurrency` slot) forever, and a connection that sends nothing is never closed. This is
uvicorn's httptools protocol with both, configured by `configure()` (each worker process calls
it through the app factory, before it serves):

- from a connection's start, or a request's first byte, to the request's last header: at most
  `header_timeout` seconds, else 408 and the connection closes (silently if nothing came);
- the request line and headers: at most `max_head` bytes, else 431 and the connection closes;
- the body: held in the protocol until complete (the app is woken once, not per chunk), at most
  `max_body` bytes, declared (Content-Length, refused before any of it is read) or as it
  arrives (chunked), else 413 and the connection closes.

The body's deadline is the app's (`app.py`: `body_timeout`, 408), which checks the size again. The protocol relies
on uvicorn's internals (pinned in pyproject.toml; tests/integration/test_serve_limits.py checks
each bound against a real socket).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass
class Limits:
    header_timeout: float = 5.0
    max_head: int = 64 << 10
    max_body: int = 1 << 20


LIMITS = Limits()


def configure(header_timeout: float, max_body: int, max_head: int = 64 << 10) -> None:
    LIMITS.header_timeout = header_timeout
    LIMITS.max_body = max_body
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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head = 0
        self._body = 0
        self._pending: list[bytes] = []
        self._refused = False
        self._head_timer = None
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

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm()
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
        for name, value in self.headers:
            why = too_large(value.decode("latin-1"), LIMITS.max_body) if name == b"content-length" else None
            if why:
                self._refuse(413, why)
                return
        super().on_headers_complete()

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
        if self._pending:
            body = b"".join(self._pending)
            self._pending.clear()
            super().on_body(body)
        super().on_message_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
