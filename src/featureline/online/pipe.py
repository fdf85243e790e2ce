"""Pipelined commands on redis-py's connections, replies parsed by hiredis in one loop.

The read path sends all its commands in one write and reads every reply at once. redis-py
connects (AUTH, SELECT, TLS, timeouts); its per-reply `read_response` (health checks,
observability hooks, pool bookkeeping) measured ~40 us a reply here, more than Redis takes to
answer, so replies are parsed by a hiredis reader of our own: from the socket (`exchange`,
sync) or as an asyncio protocol that takes the connected socket over (`take_over`, `ask`:
a StreamReader and `asyncio.timeout` cost ~30 us a call over a bare protocol). This relies
on redis-py's connection internals (`_sock`, `_reader`, `_writer`): redis is pinned in
pyproject.toml and the online-store tests exercise both paths. Errors come out as redis-py's
(ConnectionError, TimeoutError, ResponseError). An error reply, a failure or a timeout
mid-exchange leaves the connection in an unknown state: the caller drops it.
"""

from __future__ import annotations

import asyncio

import hiredis
import redis.exceptions as rx


def _take(rd: hiredis.Reader, out: list, count: int) -> None:
    while len(out) < count:
        x = rd.gets()
        if x is False:
            return
        if isinstance(x, hiredis.ReplyError):
            raise rx.ResponseError(str(x))
        out.append(x)


def _socket_error(e: OSError) -> Exception:
    """A socket's error as redis-py's (its callers handle those): a timeout, or a dead connection."""
    if isinstance(e, TimeoutError):  # the socket's timeout
        return rx.TimeoutError("Redis did not answer in time")
    return rx.ConnectionError(f"Redis connection: {type(e).__name__}")


def exchange(conn, packed: bytes, count: int) -> list:
    """Send `packed` (RESP, `count` commands) on a redis-py Connection; their replies."""
    if conn._sock is None:
        conn.connect()
        conn._fl_reader = hiredis.Reader()  # a fresh connection: nothing buffered
    sock, rd, out = conn._sock, conn._fl_reader, []
    try:
        sock.sendall(packed)
        while True:
            _take(rd, out, count)
            if len(out) == count:
                return out
            data = sock.recv(1 << 16)
            if not data:
                raise rx.ConnectionError("Redis closed the connection")
            rd.feed(data)
    except OSError as e:
        raise _socket_error(e) from e


class Replies(asyncio.Protocol):
    """An asyncio read connection once redis-py has connected it (`take_over`): replies are
    parsed by hiredis as they arrive and a call's future is resolved when all came (no
    StreamReader, no task woken per chunk)."""

    def __init__(self, transport):
        self.transport = transport
        self.reader = hiredis.Reader()
        self.out: list = []
        self.count = 0
        self.fut: asyncio.Future | None = None
        self.streams = None

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        fut = self.fut
        if fut is None or fut.done():  # replies nobody waits for: the caller drops this connection
            return
        try:
            _take(self.reader, self.out, self.count)
        except rx.ResponseError as e:
            self.fut = None
            fut.set_exception(e)
            return
        if len(self.out) == self.count:
            self.fut = None
            fut.set_result(self.out)

    def connection_lost(self, exc) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(rx.ConnectionError("Redis closed the connection"))

    def close(self) -> None:
        self.transport.close()


def take_over(conn) -> Replies:
    """A connected redis.asyncio Connection's socket, as `Replies` (redis-py lets go of it)."""
    if getattr(conn._reader, "_buffer", b""):  # bytes after the handshake answer nothing asked
        raise rx.ConnectionError("Redis sent what no command asked for")
    transport = conn._writer.transport
    proto = Replies(transport)
    transport.set_protocol(proto)
    proto.streams = conn._reader, conn._writer  # kept: a collected StreamWriter closes its transport
    conn._reader = conn._writer = None  # redis-py lets go of it (its own close and collection)
    return proto


def _late(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(rx.TimeoutError("Redis did not answer in time"))


async def ask(proto: Replies, packed: bytes, count: int, deadline: float) -> list:
    """Send `packed` (RESP, `count` commands) on `proto`; their replies, by `deadline` (loop time)."""
    if proto.transport.is_closing():
        raise rx.ConnectionError("Redis closed the connection")
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    proto.out, proto.count, proto.fut = [], count, fut
    proto.transport.write(packed)
    timer = loop.call_at(deadline, _late, fut)
    try:
        return await fut
    finally:
        timer.cancel()


def pack(*args) -> bytes:
    """One command as RESP."""
    return hiredis.pack_command(args)
