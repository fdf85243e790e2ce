"""One key encoding for every path: adversarial string join keys through the backfill to online,
the stream, reads and the reset of a second backfill, against the real Redis and Kafka.

Before the encoding escaped `:`, a key value `7:<latest slot code>` named the latest-value key of
entity `7`: WRONGTYPE in reads and merges (a poison record for the stream)."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.integration.test_stream import counts, create_topic, run_stream
from tests.projects import same

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import backfill_online
from featureline.compiler import compile_project
from featureline.online.layout import entity_key, esc, latest_code
from featureline.online.store import OnlineStore
from featureline.timeutil import MINUTE

pytestmark = pytest.mark.integration

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: clicks
version: 1.0.0
status: active
schema:
  - name: clicks
    properties:
      - {name: device, logicalType: string, required: true}
      - {name: region, logicalType: string, required: true}
      - {name: amount, logicalType: number}
      - {name: ts, logicalType: timestamp, required: true}
customProperties:
  - {property: eventTimeField, value: ts}
  - {property: topic, value: TOPIC}
"""
FEATURES = """\
entities:
  - {name: device, join_keys: [device]}
  - {name: pair, join_keys: [device, region]}
sources:
  - name: clicks
    contract: clicks
    batch: {path: data/clicks/*.parquet}
    stream: {format: json}
feature_views:
  - name: dev_w
    entity: device
    source: clicks
    aggregations:
      - {column: amount, functions: [count, sum, last], windows: [1h]}
  - name: dev_latest
    entity: device
    source: clicks
    ttl: 1d
    features:
      - {name: last_region, column: region}
  - name: pair_w
    entity: pair
    source: clicks
    aggregations:
      - {function: count, windows: [1h], name: n}
feature_services:
  - name: all
    features: ["dev_w:*", "dev_latest:*", "pair_w:*"]
"""


def _project(tmp: Path, services) -> tuple[Path, str]:
    tag = uuid.uuid4().hex[:8]
    topic = f"clicks_{tag}"
    (tmp / "featureline.yaml").write_text(
        f"project: keys\nonline_store:\n  url: redis://{services.redis_host}:{services.redis_port}/0\n  key_prefix: k{tag}\n"
        f"kafka:\n  bootstrap_servers: {services.kafka_bootstrap}\n  consumer_group: g{tag}\n"
    )
    (tmp / "contracts").mkdir()
    (tmp / "contracts/clicks.yaml").write_text(CONTRACT.replace("TOPIC", topic))
    (tmp / "features").mkdir()
    (tmp / "features/f.yaml").write_text(FEATURES)
    (tmp / "data/clicks").mkdir(parents=True)
    return tmp, topic


def _adversarial(code: str) -> list[str]:
    """Values that collided, or could collide, under a weaker encoding."""
    return [
        "7",
        f"7:{code}",  # named the latest-value key of device 7
        "7:",
        ":",
        "",
        "a|b",
        "a\\|b",
        "a\\",
        "%3A",
        "%",
        "%25",
        "%00",
        "None",
        "*",
        "x\ny",
        "ünï",
        "k:1:2",
    ]


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat()


def test_adversarial_string_keys_through_backfill_stream_reads_and_reset(tmp_path, services):
    from kafka import KafkaProducer

    d, topic = _project(tmp_path, services)
    plan = compile_project(d)
    devices = _adversarial(latest_code(plan.views["dev_latest"]))
    assert len({esc(v) for v in devices}) == len(devices)  # one-to-one
    assert all(":" not in esc(v) and "|" not in esc(v) for v in devices)
    assert entity_key(["a|b", "c"]) != entity_key(["a", "b|c"])
    regions = ["r1", "r:2", "r|3"]
    rnd = random.Random(5)
    now = time.time_ns() // 1000
    boundary = now - 20 * MINUTE
    events = []
    for i in range(900):
        t = now - rnd.randint(1, 50 * 60) * 1_000_000 - rnd.randint(0, 999_999)
        events.append({"device": rnd.choice(devices), "region": rnd.choice(regions), "amount": round(rnd.uniform(-5, 100), 2), "ts": _iso(t), "_t": t, "_i": i})
    history = [e for e in events if e["_t"] < boundary]
    live = [e for e in events if e["_t"] >= boundary]
    assert history and live

    def write(rows, name):
        pq.write_table(
            pa.table(
                {
                    "device": [e["device"] for e in rows],
                    "region": [e["region"] for e in rows],
                    "amount": pa.array([e["amount"] for e in rows], pa.float64()),
                    "ts": pa.array([e["_t"] for e in rows], pa.timestamp("us", tz="UTC")),
                }
            ),
            d / "data/clicks" / name,
        )

    store = OnlineStore(plan)
    try:
        write(history, "part-0.parquet")
        backfill_online(BatchEngine(plan, cache=False), store, boundary)
        create_topic(services.kafka_bootstrap, topic, 2)
        p = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
        for e in live:
            p.send(topic, key=e["device"].encode(), value=json.dumps({k: v for k, v in e.items() if not k.startswith("_")}).encode())
        p.flush()
        p.close()
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        assert (c["consumed"], c["applied"], c["dead_lettered"]) == (len(live), len(live), 0)

        rows = [{"device": dv, "region": rg} for dv in devices for rg in regions] + [{"device": None, "region": "r1"}]

        def check(at: int) -> None:
            write(events, "part-0.parquet")  # the reference: every event, in the batch engine
            got = store.get("all", rows, at_us=at)
            spine = pa.table({"device": [r["device"] for r in rows], "region": [r["region"] for r in rows], "ts": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC"))})
            want = BatchEngine(plan, cache=False).historical(spine, "all", at_column="ts").to_pydict()
            for name, col in got.items():
                bad = [(rows[i], a, b) for i, (a, b) in enumerate(zip(col, want[name], strict=True)) if not same(a, b)]
                assert not bad, (name, bad[:3])
            assert any(v for v in got["amount_count_1h"]) and any(got["last_region"])

        check(time.time_ns() // 1000)
        # a second backfill over every event resets what the stream wrote, key by key
        write(events, "part-0.parquet")
        backfill_online(BatchEngine(plan, cache=False), store, time.time_ns() // 1000)
        check(time.time_ns() // 1000)
    finally:
        keys = list(store.client.scan_iter(f"{plan.project.redis_key_prefix}:*", count=1000))
        if keys:
            store.client.delete(*keys)
