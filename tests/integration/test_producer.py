"""The producer SDK against the real broker: valid records arrive, invalid ones are refused unsent."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from featureline.compiler import compile_project
from featureline.contracts.producer import ContractProducer, ContractViolation

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_producer_validates_before_sending(services):
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"fl-test-producer-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        contract = compile_project(REPO).contracts["transactions"]
        good = {
            "txn_id": str(uuid.uuid4()),
            "user_id": 42,
            "merchant_id": 7,
            "amount": 12.5,
            "currency": "EUR",
            "status": "approved",
            "event_time": dt.datetime.now(dt.UTC),  # encoded as RFC 3339
        }
        with ContractProducer(contract, topic=topic, bootstrap_servers=services.kafka_bootstrap) as p:
            p.send(good, key=b"42").get(timeout=30)
            with pytest.raises(ContractViolation) as e:
                p.send({**good, "currency": "XXX", "amount": -1})
            assert {(r.field, r.rule) for r in e.value.reasons} == {("currency", "enum"), ("amount", "minimum")}
            assert "transactions v1.0.0" in str(e.value)
            assert (p.sent, p.refused) == (1, 1)
        consumer = KafkaConsumer(topic, bootstrap_servers=services.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
        got = [json.loads(m.value) for m in consumer]
        consumer.close()
        assert len(got) == 1 and got[0]["txn_id"] == good["txn_id"] and got[0]["event_time"].endswith("Z")
    finally:
        admin.delete_topics([topic])
        admin.close()
