"""The real services, end to end: no mocks.

Kafka: a topic with 3 partitions made with the admin client, messages with
keys and headers through the real broker, a consumer group that commits and
a second consumer in that group that resumes from the committed offsets.
Redis: SET/GET and Lua EVAL/EVALSHA on the real server.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _consume(consumer: KafkaConsumer, expected: int, timeout_s: float = 30.0) -> list:
    """Poll until ``expected`` records arrived (or fail after ``timeout_s``)."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    assert len(records) == expected, f"got {len(records)} of {expected} records in {timeout_s}s"
    return records


@pytest.fixture
def kafka_admin(services):
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap, client_id="featureline-it-admin")
    yield admin
    admin.close()


@pytest.fixture
def topic(kafka_admin):
    """A fresh topic with 3 partitions, deleted afterwards."""
    name = _unique("featureline-it")
    kafka_admin.create_topics(
        {name: {"num_partitions": PARTITIONS, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    yield name
    kafka_admin.delete_topics([name])


@pytest.fixture
def redis_client(services):
    client = redis.Redis(host=services.redis_host, port=services.redis_port, decode_responses=True, socket_timeout=5)
    yield client
    client.close()


def test_admin_creates_topic_with_three_partitions(kafka_admin, topic):
    [described] = kafka_admin.describe_topics([topic])
    assert described["name"] == topic
    assert described["error_code"] == 0
    partitions = sorted(p["partition_index"] for p in described["partitions"])
    assert partitions == list(range(PARTITIONS))
    assert all(p["leader_id"] >= 0 for p in described["partitions"])


def test_kafka_round_trip_headers_and_committed_offsets(services, kafka_admin, topic):
    group = _unique("featureline-it-group")
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")

    def produce(start: int, count: int) -> dict:
        sent = {}
        for i in range(start, start + count):
            key = f"entity-{i}".encode()
            headers = [("feature", b"clicks_5m"), ("event-ts-ms", str(1_700_000_000_000 + i).encode())]
            meta = producer.send(topic, key=key, value=f"value-{i}".encode(), headers=headers, partition=i % PARTITIONS).get(timeout=30)
            sent[key] = (meta.partition, meta.offset, headers)
        producer.flush()
        return sent

    def consumer() -> KafkaConsumer:
        c = KafkaConsumer(
            bootstrap_servers=services.kafka_bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        c.subscribe([topic])
        return c

    try:
        # First batch: 6 messages, 2 on each partition.
        first = produce(0, 6)
        c1 = consumer()
        records = _consume(c1, 6)
        by_key = {r.key: r for r in records}
        assert set(by_key) == set(first)
        for key, (partition, offset, headers) in first.items():
            record = by_key[key]
            assert record.topic == topic
            assert (record.partition, record.offset) == (partition, offset)
            assert record.value == b"value-" + key.split(b"-")[1]
            assert [(h[0], h[1]) for h in record.headers] == headers
        assert Counter(r.partition for r in records) == {0: 2, 1: 2, 2: 2}

        # Commit, then read the committed offsets back two ways.
        c1.commit()
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert {tp: c1.committed(tp) for tp in tps} == {tp: 2 for tp in tps}
        c1.close(autocommit=False)

        group_offsets = kafka_admin.list_group_offsets({group: None})[group]
        assert {tp: om.offset for tp, om in group_offsets.items()} == {tp: 2 for tp in tps}

        # A new member of the group resumes after the committed offsets:
        # it sees only the second batch.
        second = produce(6, 3)
        c2 = consumer()
        records = _consume(c2, 3)
        assert {r.key for r in records} == set(second)
        assert {(r.partition, r.offset) for r in records} == {(p, 2) for p in range(PARTITIONS)}
        time.sleep(0.5)  # nothing more should arrive
        assert not any(c2.poll(timeout_ms=500).values())
        c2.commit()
        c2.close(autocommit=False)

        group_offsets = kafka_admin.list_group_offsets({group: None})[group]
        assert {tp: om.offset for tp, om in group_offsets.items()} == {tp: 3 for tp in tps}
    finally:
        producer.close(timeout=5)
        try:
            kafka_admin.delete_groups([group])
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


def test_redis_set_get(redis_client):
    key = _unique("featureline:it:key")
    try:
        assert redis_client.ping() is True
        assert redis_client.set(key, "42", ex=60) is True
        assert redis_client.get(key) == "42"
        assert 0 < redis_client.ttl(key) <= 60
    finally:
        redis_client.delete(key)


def test_redis_lua_eval(redis_client):
    key = _unique("featureline:it:hash")
    # Set a field only if the new timestamp is newer; return the stored value.
    script = """
    local ts = tonumber(ARGV[2])
    local old = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
    if ts > old then
      redis.call('HSET', KEYS[1], 'value', ARGV[1], 'ts', ARGV[2])
    end
    return redis.call('HGET', KEYS[1], 'value')
    """
    try:
        assert redis_client.eval(script, 1, key, "a", 10) == "a"
        assert redis_client.eval(script, 1, key, "stale", 5) == "a"
        newer = redis_client.register_script(script)  # EVALSHA, falling back to EVAL
        assert newer(keys=[key], args=["b", 20]) == "b"
        assert redis_client.hgetall(key) == {"value": "b", "ts": "20"}
    finally:
        redis_client.delete(key)
