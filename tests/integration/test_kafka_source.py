"""The Kafka source (featureline.stream.kafka_source) against the real broker, on Beam's FnApiRunner.

Every test makes its own topics (unique names) and deletes them. Skipped when Kafka cannot be
reached. `python tests/integration/test_kafka_source.py bench [N]` measures the source alone
against a bare kafka-python consumer (see `bench` below).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def bootstrap(services) -> str:
    """The broker scripts/services started (the fixture fails, never skips, if it cannot)."""
    assert _reachable(services.kafka_host, services.kafka_port), f"Kafka not reachable at {services.kafka_bootstrap}"
    return services.kafka_bootstrap


@pytest.fixture
def topics(bootstrap):
    """make(partitions) -> a new topic name; all deleted at the end."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    made: list[str] = []

    def make(partitions: int) -> str:
        name = f"fl-test-ksrc-{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        made.append(name)
        return name

    yield make
    if made:
        admin.delete_topics(made)
    admin.close()


def produce(bootstrap: str, topic: str, per_partition: dict[int, int], *, transactional: bool = False) -> dict[int, list[bytes]]:
    """per_partition: partition -> number of records; returns the values sent per partition, in order."""
    from kafka import KafkaProducer

    extra = {"transactional_id": f"fl-test-{uuid.uuid4().hex[:8]}"} if transactional else {}
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **extra)
    if transactional:
        p.init_transactions()
        p.begin_transaction()
    sent: dict[int, list[bytes]] = {}
    for part, n in per_partition.items():
        for i in range(n):
            v = json.dumps({"p": part, "i": i}).encode()
            p.send(topic, key=str(i).encode() if i % 3 else None, value=v, partition=part)
            sent.setdefault(part, []).append(v)
    if transactional:
        p.commit_transaction()
    p.flush()
    p.close()
    return sent


def run_source(tmp_path: Path, timeout_s: float = 120, **kwargs) -> list:
    """Run ReadFromKafkaPartitions (bounded) on FnApiRunner; returns [(PolledBatch, timestamp_us)]."""
    import threading

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from featureline.stream.kafka_source import ReadFromKafkaPartitions

    out = tmp_path / f"out-{uuid.uuid4().hex[:6]}"
    out.mkdir()

    class Collect(beam.DoFn):
        """Pickles every batch into `out` (files do not depend on how the DoFn gets pickled)."""

        def process(self, batch, ts=beam.DoFn.TimestampParam):
            (out / f"{uuid.uuid4().hex}.pkl").write_bytes(pickle.dumps((batch, ts.micros)))

    done = threading.Event()
    error: list[BaseException] = []

    def go():
        try:
            with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([])) as p:
                p | ReadFromKafkaPartitions(bounded=True, **kwargs) | beam.ParDo(Collect())
        except BaseException as e:  # surfaced below
            error.append(e)
        finally:
            done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(timeout_s), f"bounded read did not terminate within {timeout_s}s"
    if error:
        raise error[0]
    return [pickle.loads(f.read_bytes()) for f in out.iterdir()]


def by_partition(results) -> dict[int, list]:
    out: dict[int, list] = {}
    for batch, _ in sorted(results, key=lambda r: (r[0].partition, r[0].lo)):
        out.setdefault(batch.partition, []).append(batch)
    return out


@pytest.mark.parametrize(
    ("reader_processes", "per_partition"), [(True, 1), (True, 2), (False, 1)], ids=["reader-processes", "striped-2-per-partition", "in-process"]
)
def test_bounded_read_returns_every_record_once_in_micro_batches(bootstrap, topics, tmp_path, reader_processes, per_partition):
    import operator

    import pyarrow as pa

    from featureline.stream.kafka_source import SCHEMA, PolledBatch

    topic = topics(4)
    sent = produce(bootstrap, topic, {0: 1500, 1: 700, 2: 1, 3: 2000})
    t_before_ms = int(time.time() * 1000) - 60_000
    results = run_source(
        tmp_path,
        bootstrap_servers=bootstrap,
        topics=[topic],
        group_id=None,
        max_poll_records=400,
        reader_processes=reader_processes,
        readers_per_partition=per_partition,
        decoders={topic: operator.attrgetter("num_rows")},  # runs where the batch is read
    )
    parts = by_partition(results)
    assert sorted(parts) == [0, 1, 2, 3]
    for part, batches in parts.items():
        assert all(isinstance(b, PolledBatch) and b.records.schema == SCHEMA for b in batches)
        offsets = [o for b in batches for o in b.records.column("offset").to_pylist()]
        assert offsets == list(range(len(sent[part]))), f"partition {part}: offsets not contiguous / duplicated"
        values = [v for b in batches for v in b.records.column("value").to_pylist()]
        assert values == sent[part]
        keys = [k for b in batches for k in b.records.column("key").to_pylist()]
        assert keys == [str(i).encode() if i % 3 else None for i in range(len(sent[part]))]
        for b in batches:
            assert b.tp == f"{topic}:{part}" and len(b) == b.records.num_rows and b.hi - b.lo + 1 == len(b)
            assert len(b) <= 400
            assert b.decoded == len(b)  # the topic's decoder's result travels with its batch
            ts = b.records.column("timestamp_ms")
            assert ts.type == pa.int64() and pa.compute.min(ts).as_py() > t_before_ms
    # micro-batches, not one element per record: every batch but a partition's last is full-ish
    assert len(results) < 4500 / 50
    assert all(len(b) > 1 for b, _ in results if b.partition != 2)
    # each batch is emitted at its min record timestamp (the watermark starts at -inf)
    for b, ts_us in results:
        assert ts_us == pa.compute.min(b.records.column("timestamp_ms")).as_py() * 1000


def test_committed_group_offsets_are_the_start(bootstrap, topics, tmp_path):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic = topics(2)
    produce(bootstrap, topic, {0: 100, 1: 50})
    group = f"fl-test-group-{uuid.uuid4().hex[:8]}"
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    c.commit({TopicPartition(topic, 0): OffsetAndMetadata(60, "", -1)})  # partition 1: nothing committed
    c.close()
    parts = by_partition(run_source(tmp_path, bootstrap_servers=bootstrap, topics=[topic], group_id=group))
    assert [o for b in parts[0] for o in b.records.column("offset").to_pylist()] == list(range(60, 100))
    assert [o for b in parts[1] for o in b.records.column("offset").to_pylist()] == list(range(50))  # start="earliest"
    # start="latest" only applies where nothing is committed
    parts = by_partition(run_source(tmp_path, bootstrap_servers=bootstrap, topics=[topic], group_id=group, start="latest"))
    assert list(parts) == [0] and parts[0][0].lo == 60


def test_explicit_start_offsets(bootstrap, topics, tmp_path):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic = topics(2)
    produce(bootstrap, topic, {0: 100, 1: 30})
    group = f"fl-test-group-{uuid.uuid4().hex[:8]}"
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    c.commit({TopicPartition(topic, 0): OffsetAndMetadata(60, "", -1)})
    c.close()
    # explicit offsets win over committed ones (replays); out-of-range ones are an error, never clamped
    from featureline.stream.kafka_source import OffsetRangeError

    with pytest.raises(OffsetRangeError, match=rf"{topic}:1: start offset 1,000 \(explicit\) is outside the partition's offsets \[0, 30\]"):
        run_source(tmp_path, bootstrap_servers=bootstrap, topics=[topic], group_id=group, start="latest", start_offsets={(topic, 0): 10, (topic, 1): 1_000})
    results = run_source(
        tmp_path,
        bootstrap_servers=bootstrap,
        topics=[topic],
        group_id=group,
        start="latest",
        start_offsets={(topic, 0): 10, (topic, 1): 30},
    )
    parts = by_partition(results)
    assert list(parts) == [0]
    assert [o for b in parts[0] for o in b.records.column("offset").to_pylist()] == list(range(10, 100))


def test_empty_topic_and_partitions_terminate(bootstrap, topics, tmp_path):
    empty = topics(4)
    assert run_source(tmp_path, bootstrap_servers=bootstrap, topics=[empty], timeout_s=60) == []
    some = topics(4)
    produce(bootstrap, some, {1: 5})
    parts = by_partition(run_source(tmp_path, bootstrap_servers=bootstrap, topics=[empty, some], timeout_s=60))
    assert list(parts) == [1] and sum(len(b) for b in parts[1]) == 5


def test_bounded_read_ends_on_a_transaction_marker(bootstrap, topics, tmp_path):
    """The end offset is a commit marker, not a record: the read still ends (claims up to the position)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = topics(1)
    produce(bootstrap, topic, {0: 10}, transactional=True)
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    end = c.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    c.close()
    assert end == 11  # 10 records + the commit marker
    for config in ({}, {"isolation_level": "read_committed"}):
        parts = by_partition(run_source(tmp_path, bootstrap_servers=bootstrap, topics=[topic], consumer_config=config, timeout_s=60))
        assert [o for b in parts[0] for o in b.records.column("offset").to_pylist()] == list(range(10))
    # sources read committed records only: asking for the others is refused, not ignored
    with pytest.raises(ValueError, match="read_committed only"):
        run_source(tmp_path, bootstrap_servers=bootstrap, topics=[topic], consumer_config={"isolation_level": "read_uncommitted"}, timeout_s=60)


def test_unbounded_step_defers_and_moves_the_watermark(bootstrap, topics):
    """The DoFn's step outside a runner: records -> one batch + deferral; idle -> watermark follows the clock."""
    from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
    from apache_beam.runners.sdf_utils import ThreadsafeRestrictionTracker, ThreadsafeWatermarkEstimator
    from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

    from featureline.stream.kafka_source import KafkaSourceConfig, ReadKafkaPartitions

    topic = topics(1)
    produce(bootstrap, topic, {0: 30})
    cfg = KafkaSourceConfig(bootstrap, bounded=False, max_poll_records=20, poll_timeout_ms=2000, skew_s=5)
    fn = ReadKafkaPartitions.for_config(cfg)
    rng = fn.initial_restriction((topic, 0))
    assert (rng.start, rng.stop) == (0, sys.maxsize)
    fn.setup()
    try:
        wm = ThreadsafeWatermarkEstimator(ManualWatermarkEstimator(MIN_TIMESTAMP))
        got = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tracker = ThreadsafeRestrictionTracker(fn.create_tracker(rng))
            out = fn._step((topic, 0), tracker, wm)
            residual = tracker.deferred_status()
            assert residual is not None, "unbounded: every step defers"
            rng = residual[0]
            if out is None:
                # nothing yet (the reader process's first poll is on its way) or caught up
                if sum(len(b) for b in got) == 30 and fn.reader.idle:
                    break
                continue
            got.append(out.value)
            assert out.timestamp >= Timestamp(micros=out.value.records.column("timestamp_ms")[0].as_py() * 1000)
        assert [len(b) for b in got] == [20, 10] and rng.start == 30 and rng.stop == sys.maxsize
        # idle (caught up): the watermark is now - skew
        assert abs(wm.current_watermark().micros / 1e6 - (time.time() - 5)) < 3
    finally:
        fn.teardown()


# ---- benchmark --------------------------------------------------------------------------------


def bench(n: int = 200_000, bootstrap: str = "127.0.0.1:9092") -> None:
    """Source alone (FnApiRunner, bounded, a DoFn that only counts) vs a bare kafka-python consumer
    on the same topic, 200k small JSON records, 1 and 4 partitions."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from featureline.stream.kafka_source import DEFAULT_CONSUMER_CONFIG, DEFAULT_MAX_POLL_RECORDS, ReadFromKafkaPartitions

    class Count(beam.DoFn):
        def __init__(self):
            self.records, self.batches = Metrics.counter("bench", "records"), Metrics.counter("bench", "batches")

        def process(self, b):
            self.records.inc(len(b))
            self.batches.inc()

    def source(topic, start="earliest"):
        t0 = time.perf_counter()
        p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
        _ = p | ReadFromKafkaPartitions(bootstrap, [topic], bounded=True, start=start) | beam.ParDo(Count())
        r = p.run()
        r.wait_until_finish()
        c = {x.key.metric.name: x.committed for x in r.metrics().query(MetricsFilter().with_namespace("bench"))["counters"]}
        return c.get("records", 0), c.get("batches", 0), time.perf_counter() - t0

    def bare(topic):
        c = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=DEFAULT_MAX_POLL_RECORDS, **DEFAULT_CONSUMER_CONFIG
        )
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        t0, got = time.perf_counter(), 0
        while got < n:
            got += sum(len(r) for r in c.poll(timeout_ms=1000).values())
        dt = time.perf_counter() - t0
        c.close()
        return got, dt

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    for parts in (1, 4):
        topic = f"fl-bench-ksrc-{parts}-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, num_partitions=parts, replication_factor=1)])
        try:
            prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
            for i in range(n):
                v = {"user_id": i % 2000, "amount": round(i * 0.37, 2), "status": "approved", "event_time": "2026-01-01T00:00:00Z", "i": i}
                prod.send(topic, key=str(i % 2000).encode(), value=json.dumps(v).encode(), partition=i % parts)
            prod.flush()
            prod.close()
            _, _, overhead = source(topic, start="latest")  # same pipeline, nothing to read
            for _round in range(2):
                got, dt = bare(topic)
                print(f"{parts} partition(s): bare kafka-python consumer: {got} records in {dt:.2f}s = {got / dt:,.0f}/s", flush=True)
                got, batches, dt = source(topic)
                print(
                    f"{parts} partition(s): ReadFromKafkaPartitions on FnApiRunner, count only: {got} records, {batches} batches in {dt:.2f}s"
                    f" = {got / dt:,.0f}/s ({got / max(dt - overhead, 1e-9):,.0f}/s without the {overhead:.2f}s pipeline start/stop)",
                    flush=True,
                )
        finally:
            admin.delete_topics([topic])
    admin.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["bench"]:
        bench(int(sys.argv[2]) if len(sys.argv) > 2 else 200_000, os.environ.get("FEATURELINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))


def test_reader_process_seeks_and_skips_what_it_read_ahead(bootstrap, topics):
    from featureline.stream.reader_proc import PartitionReader

    topic = topics(1)
    sent = produce(bootstrap, topic, {0: 300})[0]
    r = PartitionReader({"bootstrap_servers": bootstrap, "enable_auto_commit": False}, topic, 0, max_records=100, poll_timeout_ms=200)
    try:

        def take_all(stop):
            out = []
            deadline = time.monotonic() + 20
            while r.position < stop and time.monotonic() < deadline:
                got = r.take(1.0)
                if got is not None and got[0] is not None:
                    out.extend(got[0].column("value").to_pylist())
            return out

        r.start(0, 300)
        assert take_all(150)[:150] == sent[:150]  # the child reads ahead meanwhile
        r.start(20, 60)  # a seek: frames of the earlier start are dropped
        assert take_all(60) == sent[20:60]
        got = r.take(0.5)  # bounded: nothing after the stop
        assert got is None or (got[0] is None and got[2] == 60)
    finally:
        r.close()
    assert r.proc.returncode == 0


def _transactions(bootstrap: str, topic: str, n: int, size: int, first: int = 0) -> list[bytes]:
    """n transactions of `size` records each to partition 0 (each ends with a commit marker, an offset without a record)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, transactional_id=f"fl-test-{uuid.uuid4().hex[:8]}")
    p.init_transactions()
    sent = []
    for t in range(n):
        p.begin_transaction()
        for i in range(size):
            v = json.dumps({"t": first + t, "i": i}).encode()
            p.send(topic, value=v, partition=0)
            sent.append(v)
        p.commit_transaction()
    p.close()
    return sent


@pytest.mark.parametrize("n", [2, 3])
def test_striped_reader_reads_a_partition_in_order_with_processes_in_turns(bootstrap, topics, n):
    """One partition read by n processes in chunks: the frames come back in offset order, every
    record once, across commit markers at chunk ends; live, it goes on past the end offset."""
    from featureline.stream.reader_proc import RESPLIT_BEHIND, StripedReader

    topic = topics(1)
    # 49 records + a marker per transaction: with 50-record chunks every chunk ends on a marker
    sent = _transactions(bootstrap, topic, 30, 49)
    cfg = {"bootstrap_servers": bootstrap, "enable_auto_commit": False, "isolation_level": "read_committed"}
    r = StripedReader(cfg, topic, 0, max_records=50, poll_timeout_ms=200, n=n)

    def take_until(stop: int, values: list, offsets: list) -> None:
        deadline = time.monotonic() + 30
        while r.position < stop:
            assert time.monotonic() < deadline, f"stuck at {r.position} (< {stop})"
            got = r.take(1.0)
            if got is not None and got[0] is not None:
                values.extend(got[0].column("value").to_pylist())
                offsets.extend(got[0].column("offset").to_pylist())

    try:
        # bounded: chunks from the start
        values, offsets = [], []
        r.start(0, 1500)
        take_until(1500, values, offsets)
        assert values == sent and offsets == [t * 50 + i for t in range(30) for i in range(49)]
        assert all(p.frames > 0 for p in r.readers), "every process served chunks"
        # live, 1,000 offsets behind: one process from the start, then chunks again
        assert 1000 >= RESPLIT_BEHIND * 50
        before = [p.frames for p in r.readers]
        values, offsets = [], []
        r.start(500, sys.maxsize)
        take_until(1500, values, offsets)
        assert values == sent[490:]
        assert all(p.frames > b for p, b in zip(r.readers, before, strict=True)), "live backlog read in turns"
        # at the end: records produced now come (one process reads on past the end offset)
        more = _transactions(bootstrap, topic, 3, 10, first=30)
        take_until(1533, values, offsets)
        assert values == sent[490:] + more
        deadline = time.monotonic() + 10
        while not r.caught_up and time.monotonic() < deadline:
            r.take(0.5)
        assert r.caught_up and r.position == 1533
    finally:
        r.close()
    assert all(p.proc.returncode == 0 for p in r.readers)


@pytest.mark.parametrize("module", ["featureline.stream.reader_proc", "featureline.stream.deliver_proc"])
def test_helper_processes_end_when_the_job_is_killed(bootstrap, topics, module):
    """kill -9 of the stream leaves no reader or transaction process behind."""
    import signal
    import subprocess

    topic = topics(1)  # empty: the reader polls and has nothing to write, only its parent's end can stop it
    if module.endswith("reader_proc"):
        body = (
            "from featureline.stream.reader_proc import PartitionReader\n"
            f"r = PartitionReader({{'bootstrap_servers': {bootstrap!r}}}, {topic!r}, 0, 10, 200)\n"
            "r.start(0, 2**62)\n"
            "import time\n"
            "t = time.monotonic()\n"
            "while (g := r.take(1)) is None or not g[3]:\n"
            "    assert time.monotonic() - t < 20, 'never caught up'\n"
            "child = r.proc\n"
        )
    else:
        body = (
            "from featureline.stream.deliver_proc import DeliverProcess\n"
            f"d = DeliverProcess({{'bootstrap_servers': {bootstrap!r}}}, 'fl-test-orphan', {{}})\n"
            f"d.fence([({topic!r}, 0)])\n"
            "child = d.proc\n"
        )
    job = subprocess.Popen([sys.executable, "-c", body + "print(child.pid, flush=True)\nimport time\ntime.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(job.stdout.readline())
        os.kill(pid, 0)  # the helper runs
        job.send_signal(signal.SIGKILL)
        job.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break  # exited; a zombie until the test runner reaps it
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{module} (pid {pid}) outlived its killed parent")
    finally:
        if job.poll() is None:
            job.kill()
