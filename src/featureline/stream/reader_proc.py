"""A Kafka partition read in child processes: kafka-python's record decoding off the stream's core.

kafka-python parses records in pure Python (13-17 us per record here): in the stream's own
process that is half of its time per record. A `PartitionReader` runs one kafka-python
consumer for one partition in a child process (`python -m featureline.stream.reader_proc`),
which polls ahead and sends each poll as an Arrow record batch (columns offset, key, value,
timestamp_ms) over a pipe, with what the caller's `decode` (a picklable callable, run in the
child) made of it: the stream checks each record against its contract there, so JSON decoding
and the checks leave the main process too. The child reads at most one poll ahead: its next
write blocks until the parent has taken the last one.

One such process reads ~45k records/s here at best, decoding and checking included. A
`StripedReader` reads one partition with n of them in turns: the offsets are cut in chunks
(one poll each), chunk k goes to process k mod n, and the frames are taken back in offset
order, so the job sees exactly what one reader would send, while the other processes read
their next chunks. Live, only the backlog is cut: from the broker's high watermark on, one
process reads on without chunks (a chunk cannot start past the partition's end), and chunks
start again when that process falls behind by `RESPLIT_BEHIND` polls.

Pipe protocol (all integers little-endian):
    parent -> child: 4-byte length + pickled command
        ("config", kafka_config, topic, partition, max_records, poll_timeout_ms, decode)   first
        ("start", generation, start_offset, stop_offset, poll_records)   seek and read [start,
            stop); poll_records > 0: poll that many at once (a chunk), 0: small polls first
    child -> parent: header (generation i64, position i64, high watermark i64 (-1: unknown),
        flags u8 (1: caught up, 2: a notice), nbytes u32) + nbytes of pickled (Arrow batch,
        decode(batch) or None) (0: no records), or of a notice: {"kind": "gap", "from", "to",
        "skipped"} when the records from `from` on were deleted before being read
A frame is sent for every poll that returned records, moved the position (gaps, transaction
markers) or found the partition caught up; frames of an older generation (before a seek)
are skipped by the parent.

The child exits when its stdin reaches EOF or its stdout breaks: the parent closed it or
died (kill -9 included), so no reader outlives the job.
"""

from __future__ import annotations

import pickle
import select
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import pyarrow as pa

from .errors import StreamStopped
from .pipe import child_fds, finish, read_exact, recv, send, spawn, write_all

HEADER = struct.Struct("<qqqBI")
NOTICE = 2  # flag in a frame's caught_up byte: the body is a pickled notice (dict), not records
FIRST_POLL_RECORDS = 10_000
# a live StripedReader cuts chunks again when its one reader is this many polls behind
RESPLIT_BEHIND = 4


SCHEMA = pa.schema(
    [
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
    ]
)

_offset = attrgetter("offset")
_key = attrgetter("key")
_value = attrgetter("value")
_timestamp = attrgetter("timestamp")


def records_to_batch(records: Sequence[Any]) -> pa.RecordBatch:
    """kafka-python ConsumerRecords -> an Arrow batch in SCHEMA (one list per column, no per-record objects)."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array(list(map(_offset, records)), pa.int64()),
            pa.array(list(map(_key, records)), pa.binary()),
            pa.array(list(map(_value, records)), pa.binary()),
            pa.array(list(map(_timestamp, records)), pa.int64()),
        ],
        schema=SCHEMA,
    )


# -- parent side ---------------------------------------------------------------------------


class ReaderGone(RuntimeError):
    pass


class OffsetGapError(StreamStopped):
    """Records of a partition were deleted (retention, truncation) before the stream read them.
    (One message argument, so Beam can raise it again from a DoFn: `make` builds it.)"""

    @classmethod
    def make(cls, topic: str, partition: int, lo: int, hi: int) -> OffsetGapError:
        return cls(
            f"{topic}:{partition}: offsets {lo:,} to {hi - 1:,} ({hi - lo:,} records at most) were deleted before the stream read "
            f"them (retention or a truncated log); to go on from offset {hi:,} and count them as lost, run with --skip-lost"
        )


class PartitionReader:
    """The parent's handle on one child reader of one partition."""

    def __init__(
        self, config: dict, topic: str, partition: int, max_records: int, poll_timeout_ms: int, decode=None, skip_lost: bool = False
    ):
        self.topic, self.partition = topic, partition
        self.proc = spawn("featureline.stream.reader_proc")
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.gen = 0
        self.position: int | None = None  # where the frames taken so far end
        self.caught_up = False
        self.highwater = -1  # the partition's end offset at the last frame taken (-1: unknown)
        self.frames = 0  # frames taken
        self.lost = 0  # offsets skipped over deleted records (skip_lost), not yet taken by the caller
        self._send(("config", config, topic, partition, max_records, poll_timeout_ms, decode, skip_lost))

    def _send(self, cmd) -> None:
        try:
            send(self._in, cmd)
        except OSError as e:
            raise ReaderGone(self._why()) from e

    def _why(self) -> str:
        rc = self.proc.poll()
        return f"Kafka reader process for {self.topic}:{self.partition} exited ({'still running' if rc is None else f'exit code {rc}'}); see its messages above"

    def start(self, start: int, stop: int, poll_records: int = 0) -> None:
        """Read [start, stop) from here on (a seek): frames of earlier starts are dropped.
        poll_records: poll that many records at once (0: small first polls, then doubling)."""
        self.gen += 1
        self.position, self.caught_up = start, False
        self._send(("start", self.gen, start, stop, poll_records))

    def take(self, timeout_s: float):
        """The next frame of the current start within timeout_s: (Arrow batch or None, what
        decode made of it, position, caught_up), or None when none came in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._out], [], [], left)
            if not ready:
                return None
            head = read_exact(self._out, HEADER.size)
            if head is None:
                raise ReaderGone(self._why())
            gen, position, highwater, caught_up, nbytes = HEADER.unpack(head)
            body = read_exact(self._out, nbytes) if nbytes else b""
            if body is None:
                raise ReaderGone(self._why())
            if gen != self.gen:
                continue  # read ahead before a seek
            if caught_up & NOTICE:
                gap = pickle.loads(body)  # noqa: S301 - our own child
                if not gap["skipped"]:
                    raise OffsetGapError.make(self.topic, self.partition, gap["from"], gap["to"])
                self.lost += gap["to"] - gap["from"]
                continue
            self.frames += 1
            batch, decoded = pickle.loads(body) if nbytes else (None, None)  # noqa: S301 - our own child
            self.position, self.caught_up = position, bool(caught_up)
            self.highwater = max(self.highwater, highwater)
            return batch, decoded, position, bool(caught_up)

    def close(self) -> None:
        finish(self.proc)


class StripedReader:
    """One partition read by n reader processes in turns (see the module doc); the interface of
    a PartitionReader: `start`, `take`, `close`, and the last frame's position/caught_up."""

    def __init__(
        self,
        config: dict,
        topic: str,
        partition: int,
        max_records: int,
        poll_timeout_ms: int,
        decode=None,
        skip_lost: bool = False,
        n: int = 2,
    ):
        if n < 2:
            raise ValueError("a StripedReader needs n >= 2 reader processes (use a PartitionReader)")
        self.max_records = max_records
        self.readers = [PartitionReader(config, topic, partition, max_records, poll_timeout_ms, decode, skip_lost) for _ in range(n)]
        self.position: int | None = None
        self.caught_up = False
        self.highwater = -1
        self.frames = 0
        self._size = min(max_records, FIRST_POLL_RECORDS)  # the next chunk's size: doubling up to max_records
        self._queue: deque[tuple[PartitionReader, int]] = deque()  # (reader, end of its range), in offset order
        self._free: list[PartitionReader] = []
        self._next = self._stop = 0

    def start(self, start: int, stop: int) -> None:
        """Read [start, stop) from here on (a seek of every process)."""
        self.position, self.caught_up = start, False
        self._next, self._stop = start, stop
        self._queue.clear()
        self._free = list(self.readers)
        self._assign()

    def _assign(self) -> None:
        """Give the free processes the next ranges: a chunk while the offsets after it are known
        to exist (a bounded read's stop; live, the high watermark), else the rest."""
        while self._free and self._next < self._stop:
            lo, size = self._next, self._size
            known = self._stop if self._stop < sys.maxsize else self.highwater
            r = self._free.pop(0)
            if known - lo > size:
                r.start(lo, lo + size, size)
                self._size = min(self.max_records, 2 * size)
                self._next = lo + size
            else:
                r.start(lo, self._stop)
                self._next = self._stop
            self._queue.append((r, self._next))

    def take(self, timeout_s: float):
        """The next frame in offset order within timeout_s (see PartitionReader.take)."""
        if not self._queue:
            return None, None, self.position, self.caught_up  # an empty range: nothing to read
        r, end = self._queue[0]
        got = r.take(timeout_s)
        if got is None:
            return None
        self.frames += 1
        self.highwater = max(self.highwater, r.highwater)
        _, _, position, caught_up = got
        self.position, self.caught_up = position, caught_up
        if position >= end and end < self._stop:
            # its range is done: the next process goes on, this one takes the next free range
            self._queue.popleft()
            self._free.append(r)
            self._assign()
        elif len(self._queue) == 1 and min(self._stop, self.highwater) - position >= RESPLIT_BEHIND * self.max_records:
            self.start(position, self._stop)  # one process reading far behind the end: cut chunks again
        return got

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.readers)

    @lost.setter
    def lost(self, value: int) -> None:
        assert value == 0, "only reset"
        for r in self.readers:
            r.lost = 0

    def close(self) -> None:
        for r in self.readers:
            r.close()


# -- child side ----------------------------------------------------------------------------


def _frame(records, decode) -> bytes:
    batch = records_to_batch(records)
    return pickle.dumps((batch, decode(batch) if decode is not None else None), protocol=5)


def child_main() -> int:
    fin, fout = child_fds()
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError, OffsetOutOfRangeError
    from kafka.structs import TopicPartition

    from .check import ContractCheck  # noqa: F401 - imported before the first command (prewarm)

    cmd = recv(fin)
    if cmd is None:
        return 0
    _, config, topic, partition, max_records, timeout_ms, decode, skip_lost = cmd

    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(**config)
    consumer.assign([tp])
    gen, start, stop, reading, chunk = 0, 0, 0, False, 0
    # the first polls are small, so the job's first micro-batch comes soon; then they double
    limit = min(max_records, FIRST_POLL_RECORDS)
    last: tuple[int, bool] | None = None
    at = 0  # where the frames sent so far end: reading resumes there after an error
    backoff = 0.2
    try:
        while True:
            # a new command? (blocking when there is nothing to read)
            ready, _, _ = select.select([fin], [], [], 0 if reading else None)
            if ready:
                cmd = recv(fin)
                if cmd is None:
                    return 0  # parent closed or died
                _, gen, start, stop, chunk = cmd
                consumer.seek(tp, start)
                reading, last, at = start < stop, None, start
                if not reading:
                    write_all(fout, HEADER.pack(gen, start, -1, 0, 0))
                continue
            try:
                records = consumer.poll(timeout_ms=timeout_ms, max_records=chunk or limit).get(tp, [])
                position = consumer.position(tp, timeout_ms=max(1000, timeout_ms))
            except OffsetOutOfRangeError:
                # the records at `at` are gone (retention, a truncated log): say so, never skip silently
                first = consumer.beginning_offsets([tp], timeout_ms=30_000)[tp]
                gap = {"kind": "gap", "from": at, "to": first, "skipped": bool(skip_lost) and first > at}
                body = pickle.dumps(gap)
                write_all(fout, HEADER.pack(gen, at, -1, NOTICE, len(body)))
                write_all(fout, body)
                if not gap["skipped"]:
                    reading = False  # the parent stops the job
                    continue
                consumer.seek(tp, first)
                at = first
                continue
            except KafkaError:
                # the broker is away (or the partition moving): the consumer reconnects; read on from `at`
                time.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                consumer.seek(tp, at)
                continue
            backoff = 0.2
            if records and not chunk:
                limit = min(max_records, 2 * limit)
            records = [r for r in records if at <= r.offset < stop]
            if position is None:
                position = records[-1].offset + 1 if records else at
            position = min(position, stop)
            hw = consumer.highwater(tp)
            caught_up = not records and hw is not None and position >= hw
            if records or last != (position, caught_up):
                body = _frame(records, decode) if records else b""
                write_all(fout, HEADER.pack(gen, position, -1 if hw is None else hw, caught_up, len(body)))
                if body:
                    write_all(fout, body)
                last = (position, caught_up)
                at = position
            if position >= stop:
                reading = False  # bounded and done: wait for a command (or EOF)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(child_main())
