"""Routine production faults under a running stream, against real processes of their own
(tests/integration/faults.py): Redis restarted empty, killed and restarted from its AOF, gone
back in time, stalled; the broker killed and restarted; the leader of a partition of a 3-broker
cluster killed. Each time: nothing lost, nothing counted twice (online values equal the batch
engine over the same events), each bad record dead-lettered once, and what happened said in
one line, not tracebacks."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from tests.integration.test_stream import (
    MERCHANTS,
    USERS,
    backfill_online_cli,
    committed,
    entity_rows,
    events_for,
    mismatches,
    read_dlq,
    reference,
    run_stream,
)

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import backfill_online
from featureline.compiler import compile_project
from featureline.generator import write_history
from featureline.online.store import OnlineStore
from featureline.timeutil import HOUR, MINUTE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def project(tmp: Path, *, redis_url: str, bootstrap: str, topic: str) -> Path:
    """A copy of the example repo on the given Redis and Kafka, its own prefix, group and topic."""
    tag = uuid.uuid4().hex[:8]
    text = (REPO / "featureline.yaml").read_text()
    text = text.replace("key_prefix: fl", f"key_prefix: f{tag}").replace("redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0", redis_url)
    text = text.replace("127.0.0.1:${FEATURELINE_KAFKA_PORT:-9092}", bootstrap).replace("consumer_group: featureline-payments", f"consumer_group: g{tag}")
    (tmp / "featureline.yaml").write_text(text)
    shutil.copytree(REPO / "features", tmp / "features")
    shutil.copytree(REPO / "contracts", tmp / "contracts")
    ent = tmp / "features" / "entities.yaml"
    ent.write_text(ent.read_text().replace("    stream:\n      format: json", f"    stream:\n      topic: {topic}\n      format: json"))
    return tmp


def produce(bootstrap: str, topic: str, events, *, pace_s: float = 0.0) -> list[tuple[int, int]]:
    """Send the events with acks=all, retrying through outages (the producer is not under test)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", retries=1_000_000, delivery_timeout_ms=300_000, max_block_ms=120_000)
    futs = []
    for i, e in enumerate(events):
        futs.append(p.send(topic, key=e.key, value=e.value))
        if pace_s and i % 50 == 49:
            time.sleep(pace_s)
    p.flush()
    out = [(f.get(60).partition, f.get(60).offset) for f in futs]
    p.close()
    return out


class LiveStream:
    """`featureline stream` (live) as a user runs it, its output kept."""

    def __init__(self, d: Path, *args: str):
        self.p = subprocess.Popen(
            [sys.executable, "-m", "featureline", "stream", "-p", str(d), "--report-every", "1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=d,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(f, sink), daemon=True) for f, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(f, sink) -> None:
        for line in f:
            sink.append(line)

    def stderr(self) -> str:
        return "".join(self.err)

    def wait_committed(self, bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.p.poll() is None, f"the stream exited ({self.p.returncode}):\n{self.stderr()[-4000:]}"
            try:
                if committed(bootstrap, group, topic, len(ends)) == ends:
                    return
            except Exception:  # noqa: S110 - the broker may be down in the test
                pass
            time.sleep(1)
        raise AssertionError(f"offsets not committed to {ends} in {timeout_s}s:\n{self.stderr()[-4000:]}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(30)
        for t in self._threads:
            t.join(5)


def ends_of(where: list[tuple[int, int]], partitions: int) -> dict[int, int]:
    ends = {p: 0 for p in range(partitions)}
    for p, o in where:
        ends[p] = max(ends[p], o + 1)
    return ends


def check_all(d: Path, plan, bootstrap: str, topic: str, events, where) -> None:
    """Online values equal the batch engine over every valid event; each bad record dead-lettered once."""
    now = time.time_ns() // 1000
    engine = reference(d, plan, events, now=now)
    store = OnlineStore(plan)
    rows = entity_rows(events)
    for later in (0, HOUR):
        assert mismatches(store, engine, rows, now + later) == {}, later
    bad = {where[i] for i, e in enumerate(events) if e.bad_kind}
    got: dict = {}
    for m in read_dlq(bootstrap, topic, len(bad)):
        h = {k: v.decode() for k, v in m.headers}
        src = (int(h["featureline.errors.partition"]), int(h["featureline.errors.offset"]))
        assert src not in got, f"dead-lettered twice: {src}"
        got[src] = m
    assert set(got) == bad


def world(tmp_path: Path, *, redis_url: str, bootstrap: str, partitions: int, replication: int = 1):
    topic = f"flt_{uuid.uuid4().hex[:10]}"
    d = project(tmp_path, redis_url=redis_url, bootstrap=bootstrap, topic=topic)
    now = time.time_ns() // 1000
    write_history(d, events=200, users=USERS, merchants=MERCHANTS, days=3, end=dt.datetime.fromtimestamp((now - 3 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(d)
    # profiles come from the batch side (no stream): backfilled so every feature of the service is compared
    backfill_online(BatchEngine(plan, cache=False), OnlineStore(plan), now, views=["user_profile", "merchant_profile"])
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, replication)])
    admin.close()
    return d, plan, topic


def one_line_per_outage(stderr: str, what: str) -> None:
    downs = [ln for ln in stderr.splitlines() if what in ln and "unreachable" in ln]
    backs = [ln for ln in stderr.splitlines() if what in ln and "back after" in ln]
    assert len(downs) >= 1 and len(backs) >= 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


# -- Redis ------------------------------------------------------------------------------------
def test_a_store_that_lost_its_data_is_refused_reported_and_rebuilt(tmp_path, services, private_redis):
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=services.kafka_bootstrap, partitions=2)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(2400, seed=71, minutes=50, end_us=now - 2_000_000)
    T = now - 45 * MINUTE
    reference(d, plan, [e for e in events if e.event_time_us < T], now=now)
    backfill_online_cli(d, T)
    first = produce(services.kafka_bootstrap, topic, events[:1200])
    r = run_stream(d)
    assert r.returncode == 0, r.stderr[-3000:]
    before = committed(services.kafka_bootstrap, group, topic, 2)

    private_redis.restart_empty()  # Redis comes back without its data
    rest = produce(services.kafka_bootstrap, topic, events[1200:])
    r = run_stream(d)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-3000:])
    last = r.stderr.strip().splitlines()[-1]
    assert "lost its data" in last and "backfill --to online" in last and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert committed(services.kafka_bootstrap, group, topic, 2) == before  # nothing applied, nothing committed
    assert not [k for k in private_redis.client().scan_iter(f"{plan.project.redis_key_prefix}:*") if b"_meta" not in k]

    from tests.integration.serving import Server

    from featureline.serve import create_app

    with Server(create_app(plan)) as http:
        r = http.get("/ready")
        assert r.status_code == 503 and "lost its data" in r.json()["error"]

    # the rebuild the message asks for restores every value
    reference(d, plan, [e for e in events if e.event_time_us < T], now=now)
    backfill_online_cli(d, T)
    r = run_stream(d)
    assert r.returncode == 0, r.stderr[-3000:]
    check_all(d, plan, services.kafka_bootstrap, topic, events, first + rest)


def test_redis_killed_and_restarted_from_its_aof_mid_stream_loses_nothing(tmp_path, services, private_redis):
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=services.kafka_bootstrap, partitions=2)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(3000, seed=72, minutes=50, end_us=now - 2_000_000)
    s = LiveStream(d)
    try:
        where = produce(services.kafka_bootstrap, topic, events[:1500], pace_s=0.05)
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 2))
        private_redis.kill9()
        where += produce(services.kafka_bootstrap, topic, events[1500:2200])
        time.sleep(2)
        private_redis.start()  # from its AOF
        where += produce(services.kafka_bootstrap, topic, events[2200:], pace_s=0.05)
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 2))
    finally:
        s.stop()
    one_line_per_outage(s.stderr(), "Redis")
    check_all(d, plan, services.kafka_bootstrap, topic, events, where)


def test_redis_gone_back_in_time_is_detected_and_the_stream_resumes_from_what_it_holds(tmp_path, services, private_redis):
    """A failover to a lagging replica: Redis is restored, under a running stream, to a copy taken
    before its last writes. The stream notices (its next write finds fewer writes than it made),
    restarts from the offsets Redis holds and applies the lost part again, dead-lettering nothing twice."""
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=services.kafka_bootstrap, partitions=2)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(3000, seed=73, minutes=50, end_us=now - 2_000_000)
    s = LiveStream(d)
    try:
        where = produce(services.kafka_bootstrap, topic, events[:1000])
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 2))
        snap = private_redis.snapshot()
        where += produce(services.kafka_bootstrap, topic, events[1000:2000])
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 2))
        private_redis.restore(snap)  # the writes of events[1000:2000] are gone from Redis, not from Kafka's offsets
        where += produce(services.kafka_bootstrap, topic, events[2000:], pace_s=0.05)
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 2))
        time.sleep(3)
    finally:
        s.stop()
    err = s.stderr()
    assert "lost its last writes" in err and "restarting" in err, err[-4000:]
    check_all(d, plan, services.kafka_bootstrap, topic, events, where)


def test_a_stalled_redis_holds_the_stream_only_while_it_stalls(tmp_path, services, private_redis):
    """Redis accepts connections but never answers (SIGSTOP): the stream's calls time out, it says
    so once, waits with backoff, and goes on when Redis answers again."""
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=services.kafka_bootstrap, partitions=1)
    (d / "featureline.yaml").write_text((d / "featureline.yaml").read_text().replace("  key_prefix:", "  timeout: 1s\n  key_prefix:"))
    plan = compile_project(d)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(2000, seed=74, minutes=50, end_us=now - 2_000_000)
    s = LiveStream(d)
    try:
        where = produce(services.kafka_bootstrap, topic, events[:800])
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 1))
        private_redis.pause()
        where += produce(services.kafka_bootstrap, topic, events[800:1400])
        time.sleep(6)
        assert s.p.poll() is None
        assert committed(services.kafka_bootstrap, group, topic, 1) != ends_of(where, 1)  # held while Redis stalls
        private_redis.resume()
        where += produce(services.kafka_bootstrap, topic, events[1400:])
        s.wait_committed(services.kafka_bootstrap, group, topic, ends_of(where, 1))
    finally:
        private_redis.resume()
        s.stop()
    one_line_per_outage(s.stderr(), "Redis")
    check_all(d, plan, services.kafka_bootstrap, topic, events, where)


# -- Kafka ------------------------------------------------------------------------------------
def test_broker_killed_and_restarted_mid_stream_loses_nothing(tmp_path, private_redis, private_kafka):
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=private_kafka.bootstrap, partitions=2)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(3000, seed=75, minutes=50, end_us=now - 2_000_000)
    s = LiveStream(d)
    try:
        where = produce(private_kafka.bootstrap, topic, events[:1200], pace_s=0.05)
        s.wait_committed(private_kafka.bootstrap, group, topic, ends_of(where, 2))
        where += produce(private_kafka.bootstrap, topic, events[1200:1600])
        private_kafka.kill9()
        time.sleep(15)
        private_kafka.start()
        where += produce(private_kafka.bootstrap, topic, events[1600:], pace_s=0.05)
        s.wait_committed(private_kafka.bootstrap, group, topic, ends_of(where, 2), timeout_s=240)
    finally:
        s.stop()
    assert "Traceback" not in s.stderr(), s.stderr()[-4000:]
    check_all(d, plan, private_kafka.bootstrap, topic, events, where)


def test_partition_leader_killed_in_a_3_broker_cluster_loses_nothing(tmp_path, private_redis, kafka_cluster):
    bootstrap = kafka_cluster.bootstrap
    d, plan, topic = world(tmp_path, redis_url=private_redis.url, bootstrap=bootstrap, partitions=2, replication=3)
    group = plan.project.kafka_consumer_group
    now = time.time_ns() // 1000
    events = events_for(3000, seed=76, minutes=50, end_us=now - 2_000_000)
    s = LiveStream(d)
    try:
        where = produce(bootstrap, topic, events[:1200], pace_s=0.05)
        s.wait_committed(bootstrap, group, topic, ends_of(where, 2))
        leader = kafka_cluster.leader(topic, 0)
        kafka_cluster.kill9(leader)
        where += produce(bootstrap, topic, events[1200:2200], pace_s=0.05)
        kafka_cluster.wait_leader(topic, 0, not_on={leader})
        kafka_cluster.start(leader)
        where += produce(bootstrap, topic, events[2200:], pace_s=0.05)
        s.wait_committed(bootstrap, group, topic, ends_of(where, 2), timeout_s=240)
    finally:
        s.stop()
    assert "Traceback" not in s.stderr(), s.stderr()[-4000:]
    check_all(d, plan, bootstrap, topic, events, where)
