"""Pipelined commands on redis-py's connections, replies parsed by hiredis in one loop.

The read path sends all its commands in one write and reads every reply at once. redis-py
connects (AUTH, SELECT, TLS, timeouts) and owns the socket; its per-reply `read_response`
(health checks, observability hooks, pool bookkeeping) measured ~40 us a reply here, more
than Redis takes to answer, so replies are parsed straight from the socket by a hiredis
reader of our own. This relies on redis-py's connection internals (`_sock`, `_reader`,
`_writer`): redis is pinned in pyproject.toml and the online-store tests exercise both paths.
An error reply, a failure or a timeout mid-exchange leaves the connection in an unknown
state: the caller disconnects it.
"""

from __future__ import annotations

import hiredis
from redis.exceptions import ConnectionError, ResponseError


def _reader(conn) -> hiredis.Reader:
    rd = getattr(conn, "_fl_reader", None)
    if rd is None:
        rd = conn._fl_reader = hiredis.Reader()
    return rd


def _take(rd: hiredis.Reader, out: list, count: int) -> None:
    while len(out) < count:
        x = rd.gets()
        if x is False:
            return
        if isinstance(x, hiredis.ReplyError):
            raise ResponseError(str(x))
        out.append(x)


def exchange(conn, packed: bytes, count: int) -> list:
    """Send `packed` (RESP, `count` commands) on a redis-py Connection; their replies."""
    if conn._sock is None:
        conn.connect()
        conn._fl_reader = hiredis.Reader()  # a fresh connection: nothing buffered
    sock, rd, out = conn._sock, _reader(conn), []
    sock.sendall(packed)
    while True:
        _take(rd, out, count)
        if len(out) == count:
            return out
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("Redis closed the connection")
        rd.feed(data)


async def exchange_async(conn, packed: bytes, count: int) -> list:
    """`exchange` on a redis.asyncio Connection (the caller bounds it with a timeout)."""
    if conn._writer is None:
        await conn.connect()
        conn._fl_reader = hiredis.Reader()
    rd, out = _reader(conn), []
    conn._writer.write(packed)
    while True:
        _take(rd, out, count)
        if len(out) == count:
            return out
        data = await conn._reader.read(1 << 16)
        if not data:
            raise ConnectionError("Redis closed the connection")
        rd.feed(data)


def pack(*args) -> bytes:
    """One command as RESP."""
    return hiredis.pack_command(args)
