"""Kafka source for Beam's Python SDK, over kafka-python (docs/stream.md).

Beam's own ``ReadFromKafka`` is a Java cross-language transform; this one is a Python
splittable DoFn:

    beam.Create([(topic, partition), ...]) | ParDo(ReadKafkaPartitions(config))

* element: a ``(topic, partition)`` pair; restriction: an ``OffsetRange`` [start, stop).
  Bounded (replay, tests, catch-up): stop = the partition's end offset taken when the
  restriction is created (at launch). Unbounded (live): stop = ``sys.maxsize``.
* start: explicit ``start_offsets[(topic, partition)]`` if given, else the consumer group's
  committed offset, else the ``start`` policy ("earliest" or "latest"); clamped to the
  partition's [beginning, end] offsets.
* each ``process`` call serves one micro-batch: at most one blocking poll of a kafka-python
  ``KafkaConsumer`` (manual ``assign``, no group join, no auto commit; the DoFn instance's
  reader, made in ``setup`` and closed in ``teardown``, keeps one consumer per partition it
  reads, reused across calls), claims the batch's offsets, emits
  the records as ONE ``PolledBatch`` (an Arrow record batch) and checkpoints with
  ``defer_remainder``. A bounded restriction that reached its end finishes instead.
* offsets may have gaps (compaction, transaction markers): the claim goes up to the
  consumer's position, so a bounded read whose last offsets are not records still ends.
* watermark: ``ManualWatermarkEstimator``, set to the batch's max Kafka record timestamp minus
  the allowed skew (never backwards); a caught-up empty poll (idle partition) moves it to
  wall-clock now minus the skew. A batch is emitted at its min record timestamp, or at the
  watermark when that is later (Beam treats elements behind the watermark as late).

One consumer per partition (a shared consumer with the other partitions paused lost fetches
under load): a poll only returns the partition being read, nothing is buffered on the side.
By default each partition's consumer runs in a reader process (reader_proc.py): kafka-python
parses records in pure Python (~15 us each), which there uses another core, one poll ahead;
the config's `decoders` (per topic) run there on each batch too (the stream's contract
check). `readers_per_partition=2` reads each partition with two such processes taking turns
(reader_proc.StripedReader; the DoFn sees the same frames in the same order).
`reader_processes=False` reads in the DoFn's own process.
Partitions are stepped in turn (FnApiRunner runs one bundle that steps each once), so a
partition caught up at its last read polls without waiting while another partition had data
in the last second(s); otherwise an idle partition would block its whole poll timeout per turn
(measured: 1 busy + 3 idle partitions, 12k records/s instead of the busy partition's full rate).

Partitions are discovered once, when the pipeline is built; partitions added later are found
by the job (pipeline.run's watcher, live mode), which restarts to read them.

On ``FnApiRunner`` (Beam 2.77) ``defer_remainder(delay)``'s delay is ignored: the residuals of a
bundle go straight back into the queue as the next bundle, so every poll costs one bundle
round trip; the idle pacing is the poll timeout itself.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from .errors import StreamStopped
from .reader_proc import SCHEMA, records_to_batch  # noqa: F401 - SCHEMA: the batches' layout, part of this module's interface

log = logging.getLogger(__name__)
_EMPTY = pa.RecordBatch.from_pylist([], schema=SCHEMA)

# Throughput defaults (see the numbers in tests/integration/test_kafka_source.py's bench).
DEFAULT_MAX_POLL_RECORDS = 10_000
DEFAULT_POLL_TIMEOUT_MS = 200
DEFAULT_SKEW_S = 5.0
# A bigger fetch per partition and per request than kafka-python's 1 MiB / 50 MiB, so one poll
# of a lagging partition is a full micro-batch. CRCs stay checked: with the crc32c package (a
# dependency) the check costs nothing measurable; without it kafka-python's pure-Python CRC
# cuts its throughput by ~3x (then consider check_crcs=False in consumer_config).
DEFAULT_CONSUMER_CONFIG: dict[str, Any] = {
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "receive_buffer_bytes": 4 * 1024 * 1024,
    "fetch_max_wait_ms": 100,
    # a position lost to retention while reading is an error (reader_proc.OffsetGapError), or with
    # skip_lost a gap counted as lost: never a silent jump
    "auto_offset_reset": "none",
}
# Sources read only committed records: what producers' aborted transactions wrote is never applied.
ISOLATION = "read_committed"
START_POLICIES = ("earliest", "latest")


@dataclass
class PolledBatch:
    """One poll of one partition: columns offset, key, value, timestamp_ms (Kafka record time)."""

    topic: str
    partition: int
    records: pa.RecordBatch
    decoded: Any = None  # what the source's decoder for this topic made of `records`, if it has one
    lost: int = 0  # offsets skipped before these records because their records were deleted (skip_lost)

    @property
    def lo(self) -> int:
        return self.records.column(0)[0].as_py() if self.records.num_rows else -1

    @property
    def hi(self) -> int:
        return self.records.column(0)[-1].as_py() if self.records.num_rows else -1

    @property
    def tp(self) -> str:
        return f"{self.topic}:{self.partition}"

    def __len__(self) -> int:
        return self.records.num_rows


@dataclass(frozen=True)
class KafkaSourceConfig:
    """Everything the DoFn needs (picklable; clients are made on the workers)."""

    bootstrap_servers: str | list[str]
    group_id: str | None = None
    bounded: bool = False
    start: str = "earliest"
    start_offsets: Mapping[tuple[str, int], int] | None = None
    max_poll_records: int = DEFAULT_MAX_POLL_RECORDS
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS
    skew_s: float = DEFAULT_SKEW_S
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    # decode records in a child process per partition (reader_proc.py); False: in this process
    reader_processes: bool = True
    # reader processes per partition (reader_proc.StripedReader when > 1): one process decodes
    # and checks ~33k-44k records/s here (bench/reader_bench.py), so a job with fewer partitions than cores reads
    # each partition with more
    readers_per_partition: int = 1
    # per topic: a picklable callable run on each polled Arrow batch where it is read (in the
    # reader process); its result travels with the batch as PolledBatch.decoded
    decoders: Mapping[str, Any] = field(default_factory=dict)
    # records deleted before they were read (retention): False stops the job (OffsetGapError),
    # True goes on after them and counts them as lost (PolledBatch.lost)
    skip_lost: bool = False

    def __post_init__(self) -> None:
        if self.start not in START_POLICIES:
            raise ValueError(f"start must be one of {START_POLICIES}, not {self.start!r}")
        if self.max_poll_records < 1 or self.poll_timeout_ms < 0 or self.skew_s < 0:
            raise ValueError("max_poll_records must be >= 1, poll_timeout_ms and skew_s >= 0")
        if self.readers_per_partition < 1:
            raise ValueError("readers_per_partition must be >= 1")
        iso = dict(self.consumer_config).get("isolation_level", ISOLATION)
        if iso != ISOLATION:
            raise ValueError(
                f"isolation_level {iso!r}: the stream reads {ISOLATION} only (records of aborted transactions must never be applied)"
            )

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """Settings for a consumer made now: secrets (`${VAR}` in consumer_config) are read here,
        on the worker, from its environment; the config itself keeps the references."""
        from ..secrets import resolve_kafka

        cfg = dict(DEFAULT_CONSUMER_CONFIG)
        cfg.update(self.consumer_config)
        cfg.update(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            max_poll_records=self.max_poll_records,
            isolation_level=ISOLATION,
        )
        cfg.setdefault("client_id", "featureline-kafka-source")
        cfg.update(extra)
        return resolve_kafka(cfg)


def _consumer(**cfg: Any):
    from kafka import KafkaConsumer

    return KafkaConsumer(**cfg)


def discover(bootstrap: str | list[str], topics: Iterable[str], **kafka_config: Any) -> list[tuple[str, int]]:
    """The (topic, partition) pairs of `topics`, sorted; a topic the broker does not know is an error."""
    kafka_config.pop("group_id", None)
    consumer = _consumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_config)
    try:
        out: list[tuple[str, int]] = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise ValueError(f"Kafka topic {topic!r} does not exist (or has no partitions)")
            out.extend((topic, p) for p in sorted(parts))
        return out
    finally:
        consumer.close()


class OffsetRangeError(StreamStopped):
    """A start offset outside the partition's offsets: never clamped silently. (One message
    argument, so Beam can raise it again from a DoFn: `make` builds it.)"""

    @classmethod
    def make(cls, topic: str, partition: int, start: int, why: str, begin: int, end: int) -> OffsetRangeError:
        if start < begin:
            what = (
                f"offsets {start:,} to {begin - 1:,} ({begin - start:,} records at most) were deleted before the stream read them "
                f"(retention or a truncated log); to go on from offset {begin:,} and count them as lost, run with --skip-lost"
            )
        else:
            what = (
                f"the partition ends at {end:,}: it holds fewer records than were read (was the topic deleted and created again?); "
                "rebuild with `featureline backfill --to online`, or reset the consumer group"
            )
        return cls(f"{topic}:{partition}: start offset {start:,} ({why}) is outside the partition's offsets [{begin:,}, {end:,}]: {what}")


class _KafkaOffsetTracker(OffsetRestrictionTracker):
    """An offset tracker that only checkpoints: a partition is read by one reader in offset order,
    and halving [position, sys.maxsize) would be nonsense for a live restriction."""

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)


class KafkaOffsetRestrictionProvider(RestrictionProvider):
    """Initial restriction per (topic, partition): [start, end-at-launch) or [start, sys.maxsize).

    The first call for a topic looks up the beginning, end and committed offsets of all its
    partitions with one short-lived consumer and keeps them (not pickled).
    """

    def __init__(self, config: KafkaSourceConfig):
        self.config = config
        self._offsets: dict[tuple[str, int], tuple[int, int, int | None]] = {}

    def __getstate__(self):
        return {"config": self.config, "_offsets": {}}

    def _lookup(self, topic: str) -> None:
        from kafka.structs import TopicPartition

        c = self.config
        consumer = _consumer(**c.kafka_config(group_id=c.group_id))
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise ValueError(f"Kafka topic {topic!r} does not exist (or has no partitions)")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            begin = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            for tp in tps:
                committed = consumer.committed(tp) if c.group_id else None
                self._offsets[(topic, tp.partition)] = (begin[tp], end[tp], committed)
        finally:
            consumer.close()

    def initial_restriction(self, element) -> OffsetRange:
        topic, partition = element
        key = (topic, int(partition))
        if key not in self._offsets:
            from kafka.errors import KafkaError

            from ..outage import Outage, retrying

            retrying(lambda: self._lookup(topic), Outage(f"Kafka (offsets of {topic})"), (KafkaError, TimeoutError))
        begin, end, committed = self._offsets[key]
        c = self.config
        explicit = (c.start_offsets or {}).get(key)
        if explicit is not None:
            start, why = int(explicit), "explicit"
        elif committed is not None:
            start, why = committed, f"committed by {c.group_id}"
        else:
            start, why = (begin if c.start == "earliest" else end), c.start
        if not begin <= start <= end:
            if not c.skip_lost:
                raise OffsetRangeError.make(topic, partition, start, why, begin, end)
            skipped_to = min(max(start, begin), end)
            log.warning(
                "%s:%s start offset %s (%s) outside [%s, %s]: skipped to %s (skip_lost)",
                topic,
                partition,
                start,
                why,
                begin,
                end,
                skipped_to,
            )
            start = skipped_to
        return OffsetRange(start, end if c.bounded else sys.maxsize)

    def create_tracker(self, restriction: OffsetRange) -> _KafkaOffsetTracker:
        return _KafkaOffsetTracker(restriction)

    def restriction_size(self, element, restriction: OffsetRange) -> int:
        return restriction.size()

    def truncate(self, element, restriction: OffsetRange):
        # On drain a live restriction stops at its next checkpoint; a bounded one finishes.
        return None if restriction.stop >= sys.maxsize else restriction


class _WatermarkProvider(WatermarkEstimatorProvider):
    def initial_estimator_state(self, element, restriction):
        return MIN_TIMESTAMP

    def create_watermark_estimator(self, estimator_state):
        return ManualWatermarkEstimator(estimator_state)


_WATERMARKS = _WatermarkProvider()


class _Reader:
    """One kafka-python consumer per partition of a DoFn instance (manual assignment, no group).

    Per-partition consumers keep each partition's fetch position independent: a poll only
    ever returns records of the partition being read, so nothing is buffered on the side,
    paused or resumed (a shared consumer with paused partitions lost fetches under load)."""

    def __init__(self, config: dict, max_records: int, decoders: Mapping[str, Any] | None = None, skip_lost: bool = False):
        self.config = config
        self.max_records = max_records
        self.decoders = dict(decoders or {})
        self.skip_lost = skip_lost
        self.lost: dict[Any, int] = {}  # TopicPartition -> offsets skipped over deleted records, not yet emitted
        self.consumers: dict[Any, Any] = {}  # TopicPartition -> KafkaConsumer
        self.next: dict[Any, int] = {}  # TopicPartition -> the offset the consumer's next poll starts at
        self.idle: set = set()  # partitions caught up at their last read
        self.data_at = float("-inf")  # monotonic time of the last read that returned records

    def _consumer_for(self, tp):
        c = self.consumers.get(tp)
        if c is None:
            c = self.consumers[tp] = _consumer(**self.config)
            c.assign([tp])
        return c

    def _timeout(self, tp, timeout_ms: int) -> int:
        if tp in self.idle and time.monotonic() - self.data_at < max(1.0, 5 * timeout_ms / 1000):
            # Partitions are read in turn (one bundle steps each once): an idle partition must not
            # block its whole timeout while others have data. Its consumer keeps fetching in the
            # background, so what arrives meanwhile comes with its next turn.
            return 0
        return timeout_ms

    def _seen(self, tp, got_records: bool, caught_up: bool) -> None:
        if got_records:
            self.data_at = time.monotonic()
        if caught_up:
            self.idle.add(tp)
        else:
            self.idle.discard(tp)

    def read(self, tp, start: int, stop: int, timeout_ms: int) -> tuple[pa.RecordBatch | None, Any, int, bool]:
        """Records of tp in [start, stop) (at most max_records) as an Arrow batch (None: none),
        what the topic's decoder made of them, the offset reading continues from (>= last record + 1; gaps included), and whether tp is
        caught up (nothing more fetched and the position is at the broker's high watermark)."""
        from kafka.errors import OffsetOutOfRangeError

        from .reader_proc import OffsetGapError

        c = self._consumer_for(tp)
        if self.next.get(tp) != start:
            c.seek(tp, start)
        try:
            records = c.poll(timeout_ms=self._timeout(tp, timeout_ms), max_records=self.max_records).get(tp, [])
        except OffsetOutOfRangeError:
            first = c.beginning_offsets([tp])[tp]
            if not self.skip_lost or first <= start:
                raise OffsetGapError.make(tp.topic, tp.partition, start, first) from None
            self.lost[tp] = self.lost.get(tp, 0) + first - start
            c.seek(tp, first)
            self.next[tp] = start = first
            records = []
        records = [r for r in records if r.offset >= start]
        position = c.position(tp)
        if records and records[-1].offset >= stop:
            records = [r for r in records if r.offset < stop]
            position = stop
        elif position is None:
            position = records[-1].offset + 1 if records else start
        self.next[tp] = position
        highwater = c.highwater(tp)
        caught_up = not records and highwater is not None and position >= highwater
        self._seen(tp, bool(records), caught_up)
        if not records:
            return None, None, position, caught_up
        batch = records_to_batch(records)
        decode = self.decoders.get(tp.topic)
        return batch, (decode(batch) if decode is not None else None), position, caught_up

    def take_lost(self, tp) -> int:
        """Offsets skipped over deleted records since the last call (skip_lost)."""
        return self.lost.pop(tp, 0)

    def served(self, tp, next_offset: int) -> None:
        """The records before next_offset are claimed and emitted."""
        if self.next.get(tp) != next_offset:
            self.next.pop(tp, None)  # the next read seeks

    def release(self, tp) -> None:
        """tp's restriction is done here: close its consumer."""
        c = self.consumers.pop(tp, None)
        self.next.pop(tp, None)
        self.idle.discard(tp)
        if c is not None:
            c.close()

    def close(self) -> None:
        for c in self.consumers.values():
            c.close()
        self.consumers.clear()


class _ProcessReader(_Reader):
    """_Reader with each partition's consumer in a child process (reader_proc.py): kafka-python's
    record decoding, the bare consumer's whole cost, runs on another core, one poll ahead."""

    def __init__(
        self,
        config: dict,
        max_records: int,
        poll_timeout_ms: int,
        decoders: Mapping[str, Any] | None = None,
        per_partition: int = 1,
        skip_lost: bool = False,
    ):
        super().__init__(config, max_records, decoders, skip_lost)
        self.poll_timeout_ms = poll_timeout_ms
        self.per_partition = per_partition
        self.stops: dict[Any, int] = {}

    def _consumer_for(self, tp):
        from .reader_proc import PartitionReader, StripedReader

        r = self.consumers.get(tp)
        if r is None:
            args = (
                self.config,
                tp.topic,
                tp.partition,
                self.max_records,
                self.poll_timeout_ms,
                self.decoders.get(tp.topic),
                self.skip_lost,
            )
            r = StripedReader(*args, n=self.per_partition) if self.per_partition > 1 else PartitionReader(*args)
            self.consumers[tp] = r
        return r

    def read(self, tp, start: int, stop: int, timeout_ms: int):
        r = self._consumer_for(tp)
        if self.next.get(tp) != start or self.stops.get(tp) != stop:
            r.start(start, stop)
            self.stops[tp] = stop
        timeout = self._timeout(tp, timeout_ms)
        if not r.frames:
            timeout = min(timeout, 20)  # its first poll is on its way: do not hold up the other partitions' first reads
        got = r.take(timeout / 1000)
        if got is None:  # nothing new in time: where the frames so far ended
            self.next[tp] = start
            return None, None, start, r.caught_up
        batch, decoded, position, caught_up = got
        self.next[tp] = position
        self._seen(tp, batch is not None, caught_up)
        return batch, decoded, position, caught_up

    def take_lost(self, tp) -> int:
        r = self.consumers.get(tp)
        n = r.lost if r is not None else 0
        if n:
            r.lost = 0
        return n

    def release(self, tp) -> None:
        self.stops.pop(tp, None)
        super().release(tp)


class ReadKafkaPartitions(beam.DoFn, RestrictionProvider):
    """Splittable DoFn: (topic, partition) -> PolledBatch micro-batches (see the module doc).

    It is its own RestrictionProvider, delegating to KafkaOffsetRestrictionProvider (the
    restriction depends on the per-instance config, which a class-level default argument
    cannot carry). Use `for_config` to get the unbounded variant for live reads.
    """

    def __init__(self, config: KafkaSourceConfig):
        super().__init__()
        self.config = config
        self.restrictions = KafkaOffsetRestrictionProvider(config)

    @staticmethod
    def for_config(config: KafkaSourceConfig) -> ReadKafkaPartitions:
        return ReadKafkaPartitions(config) if config.bounded else UnboundedReadKafkaPartitions(config)

    # RestrictionProvider
    def initial_restriction(self, element):
        return self.restrictions.initial_restriction(element)

    def create_tracker(self, restriction):
        return self.restrictions.create_tracker(restriction)

    def restriction_size(self, element, restriction):
        return self.restrictions.restriction_size(element, restriction)

    def truncate(self, element, restriction):
        return self.restrictions.truncate(element, restriction)

    # DoFn
    def setup(self):
        # group_id None: the reader only assigns and seeks; starts come from the restriction.
        cfg = self.config.kafka_config(group_id=None)
        c = self.config
        if c.reader_processes:
            self.reader = _ProcessReader(cfg, c.max_poll_records, c.poll_timeout_ms, c.decoders, c.readers_per_partition, c.skip_lost)
        else:
            self.reader = _Reader(cfg, c.max_poll_records, c.decoders, c.skip_lost)
        self.skew = Duration(seconds=self.config.skew_s)

    def teardown(self):
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
            self.reader = None

    def process(
        self,
        element,
        tracker=beam.DoFn.RestrictionParam(),
        watermark_estimator=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
    ):
        out = self._step(element, tracker, watermark_estimator)
        if out is not None:
            yield out

    def _step(self, element, tracker, watermark_estimator):
        """One poll: claim, the micro-batch to emit (or None), watermark, checkpoint or finish."""
        from kafka.structs import TopicPartition

        topic, partition = element
        rng = tracker.current_restriction()
        start, stop = rng.start, rng.stop
        if start >= stop:
            return None
        tp = TopicPartition(topic, partition)
        batch, decoded, position, caught_up = self.reader.read(tp, start, stop, self.config.poll_timeout_ms)
        # Everything before `position` was read: records and gaps (compaction, transaction markers).
        claim_to = min(position, stop) - 1
        if claim_to >= start:
            if not tracker.try_claim(claim_to):
                return None  # a checkpoint cut the restriction before these records: the residual re-reads them
            self.reader.served(tp, claim_to + 1)
        wm = watermark_estimator.current_watermark()
        out = new_wm = None
        lost = self.reader.take_lost(tp)
        if batch is not None:
            lo_ms, hi_ms = pc.min_max(batch.column(3)).values()
            out = beam.window.TimestampedValue(
                PolledBatch(topic, partition, batch, decoded, lost), max(Timestamp(micros=lo_ms.as_py() * 1000), wm)
            )
            new_wm = Timestamp(micros=hi_ms.as_py() * 1000) - self.skew
        elif lost:
            out = beam.window.TimestampedValue(PolledBatch(topic, partition, _EMPTY, None, lost), wm)
        elif caught_up:
            new_wm = Timestamp.now() - self.skew  # idle partition: event time follows the clock
        if new_wm is not None and new_wm > wm:
            watermark_estimator.set_watermark(new_wm)
        if claim_to >= stop - 1:
            self.reader.release(tp)  # bounded and at its end: done
        else:
            tracker.defer_remainder(None if batch is not None or not caught_up else Duration(seconds=self.config.poll_timeout_ms / 1000))
        return out


class UnboundedReadKafkaPartitions(ReadKafkaPartitions):
    """ReadKafkaPartitions marked unbounded per element (its output is an unbounded PCollection)."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element,
        tracker=beam.DoFn.RestrictionParam(),
        watermark_estimator=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
    ):
        yield from super().process(element, tracker, watermark_estimator)


class ReadFromKafkaPartitions(beam.PTransform):
    """Kafka topics -> PolledBatch micro-batches (one per poll of one partition).

    The partitions are discovered when the pipeline is built (`discover`); bounded reads stop
    at the end offsets taken at launch, unbounded ones run until cancelled. `consumer_config`
    passes kafka-python client settings through (security, SASL, fetch sizes, isolation_level);
    secrets in it as `${VAR}` references are read from the environment where a consumer is made.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topics: Sequence[str],
        group_id: str | None = None,
        bounded: bool = False,
        start: str = "earliest",
        start_offsets: Mapping[tuple[str, int], int] | None = None,
        max_poll_records: int = DEFAULT_MAX_POLL_RECORDS,
        poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS,
        skew_s: float = DEFAULT_SKEW_S,
        consumer_config: Mapping[str, Any] | None = None,
        reader_processes: bool = True,
        readers_per_partition: int = 1,
        decoders: Mapping[str, Any] | None = None,
        skip_lost: bool = False,
    ):
        super().__init__()
        self.topics = list(topics)
        self.config = KafkaSourceConfig(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            bounded=bounded,
            start=start,
            start_offsets=dict(start_offsets) if start_offsets else None,
            max_poll_records=max_poll_records,
            poll_timeout_ms=poll_timeout_ms,
            skew_s=skew_s,
            consumer_config=dict(consumer_config or {}),
            reader_processes=reader_processes,
            readers_per_partition=readers_per_partition,
            decoders=dict(decoders or {}),
            skip_lost=skip_lost,
        )

    def expand(self, pbegin):
        from ..secrets import resolve_kafka

        cfg = resolve_kafka(self.config.consumer_config)
        partitions = discover(self.config.bootstrap_servers, self.topics, **cfg)
        return (
            pbegin
            | "Partitions" >> beam.Create(partitions)
            | "Read" >> beam.ParDo(ReadKafkaPartitions.for_config(self.config)).with_output_types(PolledBatch)
        )
