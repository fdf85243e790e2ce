"""Pipelined commands on redis-py's connections, replies parsed by hiredis in one loop.

The read path sends all its commands in one write and reads every reply at once. redis-py
connects (AUTH, SELECT, TLS, timeouts) and owns the socket; its per-reply `read_response`
(health checks, observability hooks, pool bookkeeping) measured ~40 us a reply here, more
than Redis takes to answer, so replies are parsed straight from the socket by a hiredis
reader of our own. This relies on redis-py's connection internals (`_sock`, `_reader`,
`_writer`): redis is pinned in pyproject.toml and the online-store tests exercise both paths.
Socket errors come out as redis-py's (ConnectionError, TimeoutError), as from redis-py. An
error reply, a failure or a timeout mid-exchange leaves the connection in an unknown state:
the caller disconnects it.
"""

from __future__ import annotations

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


async def exchange_async(conn, packed: bytes, count: int) -> list:
    """`exchange` on a redis.asyncio Connection (the caller bounds it with a timeout)."""
    if conn._writer is None:
        await conn.connect()
        conn._fl_reader = hiredis.Reader()
    rd, out = conn._fl_reader, []
    try:
        conn._writer.write(packed)
        while True:
            _take(rd, out, count)
            if len(out) == count:
                return out
            data = await conn._reader.read(1 << 16)
            if not data:
                raise rx.ConnectionError("Redis closed the connection")
            rd.feed(data)
    except OSError as e:
        raise _socket_error(e) from e


def pack(*args) -> bytes:
    """One command as RESP."""
    return hiredis.pack_command(args)
