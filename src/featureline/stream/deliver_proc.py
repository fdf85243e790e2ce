"""The stream's Kafka transactions (dead letters + offsets, sinks.Deliver) in a child process.

kafka-python builds each produced record in pure Python (~100 us per dead letter with its
headers here) and a transaction's commit waits on the broker (50-250 ms): in the stream's own
process both stalled the merges. `DeliverProcess` hands each micro-batch's dead letters and
next offset to one child process (`python -m featureline.stream.deliver_proc`) that runs
`sinks.Deliver` there, in the order given, and answers each with "ok" or the error. The
caller goes on with the next micro-batch meanwhile; at most `max_in_flight` batches wait.

Order and safety are the same as in-process: a batch is handed over only after Redis
acknowledged its effects, and its dead letters and offset commit in one transaction. If
the job dies, the child abandons what it has not started (it checks that its parent is
alive before each transaction): a restart replays those batches, whose merges are
idempotent and whose dead letters were never committed. `close()` waits for all.

Pipe protocol: 4-byte little-endian length + pickle, both ways.
    parent -> child: ("init", kafka_config, group_id, contracts) first, then
                     ("fence", seq, [(topic, partition)]), ("deliver", seq, Outcome without
                     its arrays), ("close",)
    child -> parent: ("ok", seq) | ("error", seq, message)
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
from dataclasses import replace

from .errors import StreamStopped
from .pipe import child_fds, finish, spawn
from .pipe import recv as _recv
from .pipe import send as _send


class DeliverError(StreamStopped):
    pass


class DeliverProcess:
    """Same use as sinks.Deliver (deliver each Outcome, then close), run by a child process."""

    def __init__(self, config: dict, group_id: str, contracts: dict, *, max_in_flight: int = 2):
        self.max_in_flight = max_in_flight
        self.proc = spawn("featureline.stream.deliver_proc")
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.seq = 0
        self.pending: set[int] = set()
        self._closed = False
        # a batch's dead letters can be more than a pipe holds: a thread writes, the caller goes on
        self._queue: queue.Queue = queue.Queue()
        self._write_error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="featureline-deliver-pipe", daemon=True)
        self._writer.start()
        self._put(("init", config, group_id, contracts))

    def _write_loop(self) -> None:
        while True:
            cmd = self._queue.get()
            if cmd is None:
                return
            try:
                _send(self._in, cmd)
            except OSError as e:
                self._write_error = e
                return

    def _put(self, cmd) -> None:
        if self._write_error is not None:
            raise DeliverError(self._why()) from self._write_error
        self._queue.put(cmd)

    def _why(self) -> str:
        rc = self.proc.poll()
        return f"the stream's Kafka transaction process exited ({'still running' if rc is None else f'exit code {rc}'}); see its messages above"

    def _take(self, timeout: float | None) -> bool:
        """Read one answer (waiting up to timeout; None: as long as it takes). False: none came."""
        if timeout is not None and not select.select([self._out], [], [], timeout)[0]:
            return False
        msg = _recv(self._out)
        if msg is None:
            raise DeliverError(self._why())
        if msg[0] == "error":
            raise DeliverError(f"Kafka transaction of a micro-batch failed: {msg[2]}")
        self.pending.discard(msg[1])
        return True

    def fence(self, partitions, *, wait: bool = True) -> None:
        """Start the transactional producers of these (topic, partition)s now and wait: a job that
        died is fenced (its open transaction aborted, or its last commit finished) before this one
        reads where the consumer group stands."""
        self.seq += 1
        self.pending.add(self.seq)
        self._put(("fence", self.seq, list(partitions)))
        if wait:
            self.flush()

    def deliver(self, out) -> None:
        while self._take(0):  # answers already there (errors surface here)
            pass
        while len(self.pending) >= self.max_in_flight:
            self._take(None)
        self.seq += 1
        self.pending.add(self.seq)
        self._put(("deliver", self.seq, replace(out, timestamps_ms=None)))

    def flush(self) -> None:
        """Wait until every batch handed over is committed (or raise its error)."""
        while self.pending:
            self._take(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._put(("close",))
        finally:
            self._queue.put(None)
            self._writer.join(30)
            finish(self.proc, 30)


def child_main() -> int:
    from kafka import KafkaProducer  # noqa: F401 - imported before the first command (prewarm)

    from .sinks import Abandoned, Deliver

    fin, fout = child_fds()
    parent = os.getppid()
    cmd = _recv(fin)
    if cmd is None:
        return 0
    _, config, group_id, contracts = cmd
    d = Deliver(config, group_id, contracts, alive=lambda: os.getppid() == parent)
    try:
        while True:
            cmd = _recv(fin)
            if cmd is None or cmd[0] == "close":
                return 0
            if os.getppid() != parent:
                return 0  # the job died: leave the rest to its restart (nothing of it is committed)
            _, seq, arg = cmd
            try:
                if cmd[0] == "fence":
                    d.start(arg)
                else:
                    d.deliver(arg)
                _send(fout, ("ok", seq))
            except Abandoned:
                return 0  # the job died: nothing of this batch is committed, its restart replays it
            except Exception as e:  # reported to the parent, which stops the job
                _send(fout, ("error", seq, f"{type(e).__name__}: {e}"))
                return 1
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        d.close()


if __name__ == "__main__":
    sys.exit(child_main())
