"""The fault-injection infrastructure itself (tests/integration/faults.py and
`scripts/services` Redis persistence), against real processes: private
Redis instances killed, stalled, wiped and rewound; a private broker killed
and restarted; a 3-node Kafka cluster losing a partition leader.

None of these touch the shared dev Redis and Kafka.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from tests.integration.faults import SERVICES_SCRIPT, PrivateRedis, free_port

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _read_all(bootstrap: str, topic: str, partition: int, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    """Every value in ``topic[partition]`` from offset 0, until ``expected`` arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10000)
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close(autocommit=False)
    return values


# ----------------------------------------------------------------- redis


def test_redis_runs_with_aof_everysec(private_redis):
    c = private_redis.client(decode_responses=True)
    assert c.config_get("appendonly") == {"appendonly": "yes"}
    assert c.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert c.config_get("save") == {"save": ""}
    assert c.config_get("dir")["dir"] == str(private_redis.data_dir)
    assert c.config_get("bind")["bind"] == "127.0.0.1"


def test_redis_kill9_then_start_restores_from_aof(private_redis):
    c = private_redis.client(decode_responses=True)
    c.mset({f"k{i}": str(i) for i in range(200)})
    c.hset("h", mapping={"a": "1", "b": "2"})
    private_redis.wait_aof_written()  # a slow disk may hold the last writes back
    old_pid = private_redis.pid
    private_redis.kill9()
    assert not private_redis.running
    with pytest.raises(redis.exceptions.ConnectionError):
        private_redis.client(socket_connect_timeout=1).ping()
    private_redis.start()
    assert private_redis.pid != old_pid
    c = private_redis.client(decode_responses=True)
    assert c.dbsize() == 201
    assert c.get("k199") == "199"
    assert c.hgetall("h") == {"a": "1", "b": "2"}

    # A clean stop (SIGTERM) keeps the data too.
    c.set("after-restart", "x")
    private_redis.stop()
    private_redis.start()
    assert private_redis.client().get("after-restart") == b"x"


def test_redis_restart_empty_loses_everything(private_redis):
    c = private_redis.client()
    c.mset({"a": 1, "b": 2})
    private_redis.restart_empty()
    c = private_redis.client()
    assert c.dbsize() == 0
    assert c.get("a") is None
    # ... and it persists again from there.
    c.set("c", 3)
    private_redis.wait_aof_written()
    private_redis.kill9()
    private_redis.start()
    assert private_redis.client().get("c") == b"3"


def test_redis_pause_times_out_clients_until_resume(private_redis):
    before = private_redis.client(socket_timeout=1)
    before.set("k", "v")
    private_redis.pause()
    try:
        # A connection opened before the stall, and one opened during it
        # (the kernel still completes the TCP handshake): both time out.
        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            before.get("k")
        assert 0.9 <= time.monotonic() - t0 < 3
        during = private_redis.client(socket_timeout=1, socket_connect_timeout=1)
        with pytest.raises(redis.exceptions.TimeoutError):
            during.get("k")
    finally:
        private_redis.resume()
    after = private_redis.client(socket_timeout=1)
    assert after.get("k") == b"v"
    # The connection that timed out is dropped; the client reconnects.
    assert before.get("k") == b"v"


def test_redis_snapshot_restore_goes_back_in_time(private_redis):
    c = private_redis.client(decode_responses=True)
    c.mset({"old": "1", "changed": "before"})
    snap = private_redis.snapshot()
    assert snap.dbsize == 2
    c.set("new", "2")
    c.set("changed", "after")
    assert c.dbsize() == 3

    private_redis.restore(snap)
    c = private_redis.client(decode_responses=True)
    assert c.get("old") == "1"
    assert c.get("changed") == "before"
    assert c.get("new") is None

    # The snapshot is a copy: it can be restored again after more writes.
    c.set("new", "3")
    private_redis.restore(snap)
    assert private_redis.client().get("new") is None


def test_redis_snapshot_under_concurrent_writes_keeps_acknowledged_ones(private_redis):
    """Writes acknowledged before snapshot() are in it, even with a write
    load running (AOF rewrite in the middle)."""
    c = private_redis.client()
    c.mset({f"pre{i}": i for i in range(5000)})
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import redis, sys\n"
            "c = redis.Redis(port=int(sys.argv[1]))\n"
            "i = 0\n"
            "while True:\n"
            "    c.set(f'bg{i}', i); i += 1\n",
            str(private_redis.port),
        ]
    )
    try:
        time.sleep(0.3)
        snap = private_redis.snapshot()
    finally:
        writer.kill()
        writer.wait()
    private_redis.restore(snap)
    c = private_redis.client()
    assert all(v is not None for v in c.mget([f"pre{i}" for i in range(5000)]))
    assert c.dbsize() >= 5000


def test_scripts_services_redis_restarts_from_its_aof(tmp_path: Path):
    """The dev Redis (scripts/services up) persists too: `down` then `up`, or
    kill -9 then `up`, on the same port replays the AOF."""
    port = free_port()
    env = {**os.environ, "FEATURELINE_SERVICES_DIR": str(tmp_path), "FEATURELINE_REDIS_PORT": str(port)}

    def services(*args: str) -> str:
        r = subprocess.run([str(SERVICES_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    c = redis.Redis(port=port, socket_timeout=5)
    try:
        services("up", "redis")
        c.set("k", "1")
        services("down", "redis")
        services("up", "redis")
        assert c.get("k") == b"1"
        c.set("k2", "2")
        for _ in range(500):  # until the AOF buffer is written (see PrivateRedis.wait_aof_written)
            if c.info("persistence")["aof_buffer_length"] == 0:
                break
            time.sleep(0.02)
        pid = int((tmp_path / "redis" / f"redis-{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"":  # zombie
                break
            time.sleep(0.05)
        services("up", "redis")
        assert c.mget(["k", "k2"]) == [b"1", b"2"]
        assert (tmp_path / "redis" / str(port) / "appendonlydir").is_dir()
    finally:
        c.close()
        subprocess.run([str(SERVICES_SCRIPT), "down", "redis"], env=env, capture_output=True, timeout=60)


def test_private_redis_cleans_up_its_temporary_dir():
    with PrivateRedis() as r:
        base = r.base_dir
        r.client().set("k", "v")
        pid = r.pid
    assert not base.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ----------------------------------------------------------------- kafka


def test_private_kafka_kill9_then_start_keeps_its_data(private_kafka):
    topic = _unique("fl-faults")
    producer = KafkaProducer(bootstrap_servers=private_kafka.bootstrap, acks="all")
    for i in range(20):
        producer.send(topic, value=f"v{i}".encode(), partition=0).get(timeout=30)
    producer.close(timeout=5)

    private_kafka.kill9()
    assert not private_kafka.running
    private_kafka.start()

    assert _read_all(private_kafka.bootstrap, topic, 0, 20) == [f"v{i}".encode() for i in range(20)]


def test_kafka_cluster_survives_leader_kill9(kafka_cluster):
    """RF 3 / min ISR 2: kill -9 a partition's leader; a new leader is
    elected, acks=all writes go on, nothing acknowledged is lost, and the
    restarted node rejoins the ISR."""
    c = kafka_cluster
    topic = c.create_topic(_unique("fl-faults"), partitions=1, replication=3)
    assert sorted(c.partition(topic, 0)["replica_nodes"]) == [1, 2, 3]
    c.wait_isr(topic)

    producer = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all", request_timeout_ms=10000)
    acked = []

    def produce(start: int, count: int) -> None:
        for i in range(start, start + count):
            producer.send(topic, value=f"v{i}".encode(), partition=0).get(timeout=60)
            acked.append(f"v{i}".encode())

    try:
        produce(0, 50)
        old_leader = c.leader(topic, 0)
        assert old_leader in (1, 2, 3)

        t0 = time.monotonic()
        c.kill9(old_leader)
        # The same producer, mid-stream: its sends wait for the new leader.
        produce(50, 50)
        failover_s = time.monotonic() - t0
        new_leader = c.wait_leader(topic, 0, not_on={old_leader})
        assert new_leader != old_leader
        assert old_leader not in c.isr(topic, 0)
        # A new producer and a consumer work against the two survivors.
        fresh = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all")
        fresh.send(topic, value=b"v100", partition=0).get(timeout=30)
        fresh.close(timeout=5)
        acked.append(b"v100")
        assert _read_all(c.bootstrap, topic, 0, len(acked)) == acked
    finally:
        producer.close(timeout=5)

    c.start(old_leader)
    c.wait_isr(topic, 0, size=3)
    assert c.isr(topic, 0) == [1, 2, 3]
    c.wait_healthy(full_isr=True, timeout=60)
    print(f"failover (kill -9 to 50 acks=all writes done): {failover_s:.1f}s")


def test_kafka_cluster_controlled_stop_and_restart(kafka_cluster):
    """stop(n) is a controlled shutdown: the leadership has moved by the
    time the node is gone; acks=all writes work on two nodes; the node
    rejoins the ISR after start(n)."""
    c = kafka_cluster
    topic = c.create_topic(_unique("fl-faults"), partitions=3, replication=3)
    c.wait_isr(topic)
    node = c.leader(topic, 0)
    c.stop(node)
    assert not c.running(node)
    leaders = {p: c.leader(topic, p) for p in range(3)}
    assert node not in leaders.values() and -1 not in leaders.values(), leaders

    producer = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all")
    try:
        for p in range(3):
            producer.send(topic, value=f"p{p}".encode(), partition=p).get(timeout=30)
    finally:
        producer.close(timeout=5)

    c.start(node)
    c.wait_isr(topic)
    assert all(c.isr(topic, p) == [1, 2, 3] for p in range(3))
    for p in range(3):
        assert _read_all(c.bootstrap, topic, p, 1) == [f"p{p}".encode()]
