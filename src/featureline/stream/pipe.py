"""Pipes to the stream's helper processes (reader_proc.py, deliver_proc.py): framing and a pool.

Standard library only, so a helper starts fast: it imports this, then what it needs.
A frame is a 4-byte little-endian length + the bytes; `send`/`recv` carry one pickled object.
`prewarm` starts helpers ahead (they import their modules and wait for a first command) so a
job's start-up overlaps theirs; `spawn` takes a prewarmed one if there is one.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

LEN = struct.Struct("<I")


def write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            return None
        got += k
    return buf


def send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    write_all(fd, LEN.pack(len(data)) + data)


def recv(fd: int):
    """The next pickled object, or None at EOF (the other side closed or died)."""
    head = read_exact(fd, LEN.size)
    if head is None:
        return None
    body = read_exact(fd, LEN.unpack(head)[0])
    return None if body is None else pickle.loads(body)  # noqa: S301 - both sides are ours


def child_fds() -> tuple[int, int]:
    """A helper's start: Ctrl-C reaches the whole process group, but the parent decides, and the
    helper ends with its pipe. Returns its (stdin, stdout) descriptors."""
    import logging
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # kafka-python logs every failed connection (a wall of lines per outage): the helpers report
    # outages themselves, one line each (outage.py)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return sys.stdin.fileno(), sys.stdout.fileno()


_POOL: dict[str, list[subprocess.Popen]] = {}


def _start(module: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True)


def spawn(module: str) -> subprocess.Popen:
    """A child `python -m <module>` with pipes on stdin/stdout: a prewarmed one if there is one."""
    pool = _POOL.get(module)
    while pool:
        proc = pool.pop()
        if proc.poll() is None:
            return proc
    return _start(module)


def prewarm(module: str, n: int) -> None:
    """Start n children of `module` now (they import what they need and wait for their first
    command), so a job's start-up overlaps theirs. `release_pool` ends the unused ones."""
    pool = _POOL.setdefault(module, [])
    pool.extend(_start(module) for _ in range(n - len(pool)))


def finish(proc: subprocess.Popen, timeout_s: float = 5) -> None:
    """Close a helper's pipes (it ends at EOF) and reap it; kill it if it does not end in time."""
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except OSError:
            pass
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def release_pool() -> None:
    """End the prewarmed helpers nobody took."""
    for pool in _POOL.values():
        while pool:
            finish(pool.pop())
