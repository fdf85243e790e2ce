"""Where records enter from Kafka, against the real broker: committed reads only, no silent skip
over deleted records, bounded dead letters (stubs for the too large), and offsets that never pass
a dead letter that was not written."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from tests.integration.test_stream import cleanup, committed, counts, create_topic, events_for, read_dlq, run_stream
from tests.projects import make_project

from featureline.compiler import compile_project
from featureline.contracts.result import Reason
from featureline.stream.outcome import DeadLetter, Outcome
from featureline.stream.sinks import HEADER, Deliver, dlq_topic

pytestmark = pytest.mark.integration


def _world(tmp_path, services, partitions: int = 1):
    topic = f"ing_{uuid.uuid4().hex[:10]}"
    d = make_project(tmp_path, services, topic=topic)
    plan = compile_project(d)
    create_topic(services.kafka_bootstrap, topic, partitions)
    return d, plan, topic


def _send(bootstrap: str, topic: str, values, **kw):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, **kw)
    futs = [p.send(topic, key=b"1", value=v) for v in values]
    p.flush()
    out = [f.get(10) for f in futs]
    p.close()
    return out


def test_records_of_aborted_transactions_are_never_applied(tmp_path, services):
    from kafka import KafkaProducer

    d, plan, topic = _world(tmp_path, services)
    try:
        now = time.time_ns() // 1000
        aborted = [e.value for e in events_for(40, seed=3, minutes=5, end_us=now - 2_000_000, bad_share=0)]
        kept = [e.value for e in events_for(25, seed=4, minutes=5, end_us=now - 2_000_000, bad_share=0)]
        p = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, transactional_id=f"t-{topic}")
        p.init_transactions()
        p.begin_transaction()
        for v in aborted:
            p.send(topic, value=v)
        p.flush()
        p.abort_transaction()
        p.close()
        _send(services.kafka_bootstrap, topic, kept)
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        assert (c["consumed"], c["applied"], c["dead_lettered"]) == (len(kept), len(kept), 0)
    finally:
        cleanup(plan)


def test_records_deleted_before_they_were_read_stop_the_job_unless_skipped_and_counted(tmp_path, services):
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition

    d, plan, topic = _world(tmp_path, services)
    try:
        now = time.time_ns() // 1000
        values = [e.value for e in events_for(120, seed=5, minutes=5, end_us=now - 2_000_000, bad_share=0)]
        _send(services.kafka_bootstrap, topic, values[:10])
        r = run_stream(d)  # the stream had read 10 records
        assert r.returncode == 0, r.stderr[-3000:]
        _send(services.kafka_bootstrap, topic, values[10:])
        tp = TopicPartition(topic, 0)
        group = plan.project.kafka_consumer_group
        admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        admin.delete_records({tp: 50})  # retention took offsets 0..49 before it read 10..49
        admin.close()

        r = run_stream(d)
        assert r.returncode == 1, (r.stdout, r.stderr[-3000:])
        err = r.stderr.strip().splitlines()[-1]
        assert f"{topic}:0" in err and "10" in err and "49" in err and "--skip-lost" in err, err
        assert "Traceback" not in r.stderr
        assert committed(services.kafka_bootstrap, group, topic, 1) == {0: 10}  # nothing moved

        r = run_stream(d, "--skip-lost")
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        assert (c["consumed"], c["applied"]) == (70, 70)
        assert "lost 40" in r.stdout
    finally:
        cleanup(plan)


def test_reader_reports_a_gap_met_while_reading(services):
    """The reader process that meets deleted records mid-read stops with the gap, or skips and counts it."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.structs import TopicPartition

    from featureline.stream.kafka_source import KafkaSourceConfig
    from featureline.stream.reader_proc import OffsetGapError, PartitionReader

    topic = f"gap_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    _send(services.kafka_bootstrap, topic, [b"%d" % i for i in range(60)])
    admin.delete_records({TopicPartition(topic, 0): 30})
    admin.close()
    cfg = KafkaSourceConfig(services.kafka_bootstrap).kafka_config(group_id=None)
    r = PartitionReader(cfg, topic, 0, 100, 200)
    try:
        r.start(5, 60)
        with pytest.raises(OffsetGapError, match=rf"{topic}:0: offsets 5 to 29"):
            for _ in range(50):
                r.take(1.0)
    finally:
        r.close()
    r = PartitionReader(cfg, topic, 0, 100, 200, None, True)
    try:
        r.start(5, 60)
        got = []
        while r.position is None or r.position < 60:
            frame = r.take(5.0)
            assert frame is not None
            if frame[0] is not None:
                got += frame[0].column("offset").to_pylist()
        assert got == list(range(30, 60)) and r.lost == 25
    finally:
        r.close()


def _outcome(topic: str, dead: list[DeadLetter]) -> Outcome:
    return Outcome(topic, 0, dead[0].offset, dead[-1].offset, consumed=len(dead), dead_lettered=len(dead), dead=dead)


def _dead(offset: int, value: bytes, reason_value="x") -> DeadLetter:
    return DeadLetter(offset, b"k", value, 1_700_000_000_000, (Reason("amount", "type", reason_value, "expected a number"),))


def _make_dlq(bootstrap: str, topic: str, max_bytes: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1), NewTopic(dlq_topic(topic), 1, 1, topic_configs={"max.message.bytes": str(max_bytes)})])
    admin.close()


def test_a_dead_letter_too_large_goes_as_a_stub_and_one_that_cannot_be_written_stops_the_offsets(tmp_path, services):
    from featureline.stream.sinks import DLQ_MAX_MESSAGE_BYTES, DeadLetterError

    d, plan, topic = _world(tmp_path, services)
    contract = plan.contracts["transactions"]
    group = f"g-{uuid.uuid4().hex[:8]}"
    bootstrap = services.kafka_bootstrap

    # a 1.5 MiB bad record (above the producer's 1 MiB max_request_size): a stub, with its size
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(dlq_topic(topic), 1, 1, topic_configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})])
    admin.close()
    big = b'{"amount": "' + b"9" * (1536 * 1024) + b'"}'
    dv = Deliver({"bootstrap_servers": bootstrap}, group, {topic: contract})
    try:
        dv.deliver(_outcome(topic, [_dead(0, b'{"amount": "x"}'), _dead(1, big, "9" * 600_000)]))
    finally:
        dv.close()
    assert committed(bootstrap, group, topic, 1) == {0: 2}
    msgs = read_dlq(bootstrap, topic, 2)
    assert len(msgs) == 2
    small, stub = sorted(msgs, key=lambda m: int(dict(m.headers)[HEADER + "offset"]))
    assert small.value == b'{"amount": "x"}' and HEADER + "stub" not in dict(small.headers)
    h = {k: v.decode() for k, v in stub.headers}
    assert stub.value is None and h[HEADER + "stub"] == "true" and int(h[HEADER + "value.size"]) == len(big)
    assert h[HEADER + "offset"] == "1" and h[HEADER + "topic"] == topic and json.loads(h[HEADER + "reasons"])
    assert sum(len(k) + len(v) for k, v in stub.headers) < 64 * 1024  # bounded headers, whatever the value

    # a dead-letter topic that takes 1,000-byte messages: nothing is written, and the offsets stay
    t2 = f"ing_{uuid.uuid4().hex[:10]}"
    _make_dlq(bootstrap, t2, 1000)
    dv = Deliver({"bootstrap_servers": bootstrap}, group, {t2: contract})
    try:
        dv.limits[dlq_topic(t2)] = 1 << 20  # as if the topic's limit had been lowered after it was looked up
        with pytest.raises(DeadLetterError, match="max.message.bytes"):
            dv.deliver(_outcome(t2, [_dead(0, b'{"amount": "' + b"y" * 5000 + b'"}')]))
    finally:
        dv.close()
    assert committed(bootstrap, group, t2, 1) == {0: None}
    assert read_dlq(bootstrap, t2, 1, timeout_s=5) == []


def test_dead_letters_never_show_a_classified_field(tmp_path, services):
    """customer_email is `classification: restricted`: neither the dead letters' reasons nor the
    payload `featureline dead-letters` shows may hold it; the record in the DLQ stays whole (replay)."""
    import subprocess
    import sys

    d, plan, topic = _world(tmp_path, services)
    try:
        now = time.time_ns() // 1000
        [good] = [json.loads(e.value) for e in events_for(1, seed=9, minutes=1, end_us=now - 2_000_000, bad_share=0)]
        secret = "alice.secret@example.org"
        bad = dict(good, customer_email=secret + " " * 300)  # too long and not an e-mail
        _send(services.kafka_bootstrap, topic, [json.dumps(bad).encode()])
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        [m] = read_dlq(services.kafka_bootstrap, topic, 1)
        assert secret.encode() in m.value  # the payload is kept for replay
        assert all(secret.encode() not in v for _, v in m.headers)
        for fmt in ("json", "text"):
            out = subprocess.run(
                [sys.executable, "-m", "featureline", "dead-letters", "--format", fmt, "-p", str(d)], capture_output=True, text=True, timeout=120, cwd=d
            )
            assert out.returncode == 0, out.stderr[-2000:]
            assert secret not in out.stdout and secret not in out.stderr
            if fmt == "json":
                [row] = json.loads(out.stdout)
                assert "<redacted: restricted" in row["value"] and row["rule"] in ("format", "maxLength")
    finally:
        cleanup(plan)


def test_poison_records_are_dead_lettered_and_the_stream_goes_on(tmp_path, services):
    """Before the record boundary, ~1,000 nested arrays raised RecursionError in the reader process:
    the job died, and every restart died on the same record. Now each hostile record is a dead
    letter with a bounded reason, counted, and the records around it are applied."""
    d, plan, topic = _world(tmp_path, services)
    try:
        now = time.time_ns() // 1000
        good = [e.value for e in events_for(40, seed=11, minutes=5, end_us=now - 2_000_000, bad_share=0)]
        hostile = [
            b'{"txn_id": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            b'{"txn_id": "x", "currency": "' + b"E" * (600 * 1024) + b'"}',
            b'{"txn_id": "\xff\xfe", "user_id": 1}',
            b'{"amount": NaN}',
            b'{"user_id": ' + b"9" * 400 + b"}",
        ]
        values = good[:20] + hostile + good[20:]
        _send(services.kafka_bootstrap, topic, values)
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        assert (c["consumed"], c["applied"], c["dead_lettered"]) == (len(values), len(good), len(hostile))
        dlq = read_dlq(services.kafka_bootstrap, topic, len(hostile))
        assert sorted(int(dict(m.headers)[HEADER + "offset"]) for m in dlq) == list(range(20, 20 + len(hostile)))
        for m in dlq:
            assert sum(len(v) for _, v in m.headers) < 32 * 1024  # the 600 KiB value is not copied into headers
        assert {dict(m.headers)[HEADER + "rule"].decode() for m in dlq} <= {"json", "type", "enum", "required", "format", "internal"}
    finally:
        cleanup(plan)
