"""The stream's micro-batch step (`StreamApplier`) against the real Redis, without Kafka: every
aggregation (msgpack tiles for last/first, variance by Chan's merge) equals the batch engine,
and replaying the same records cut at other batch boundaries changes nothing."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.projects import make_project, same

from featureline.batch.engine import BatchEngine
from featureline.compiler import compile_project
from featureline.contracts import ContractValidator
from featureline.generator import live_events, write_history
from featureline.online.store import OnlineStore
from featureline.stream.apply import StreamApplier
from featureline.timeutil import HOUR, MINUTE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _batch(events, lo: int, hi: int, ts_ms: int) -> pa.RecordBatch:
    chunk = events[lo:hi]
    return pa.record_batch(
        {
            "offset": pa.array(range(lo, lo + len(chunk)), pa.int64()),
            "key": pa.array([e.key for e in chunk], pa.binary()),
            "value": pa.array([e.value for e in chunk], pa.binary()),
            "timestamp_ms": pa.array([ts_ms] * len(chunk), pa.int64()),
        }
    )


def test_every_aggregation_and_replays_at_other_cuts(tmp_path, services):
    make_project(tmp_path, services)
    f = tmp_path / "features/user_features.yaml"
    f.write_text(f.read_text().replace("functions: [sum, mean, max]", "functions: [sum, mean, max, min, last, first, variance, stddev]"))
    now = time.time_ns() // 1000
    write_history(tmp_path, events=100, users=80, merchants=12, days=2, end=dt.datetime.fromtimestamp((now - 2 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(tmp_path)
    start = dt.datetime.fromtimestamp((now - 40 * MINUTE) / 1e6, dt.UTC)
    events = live_events(3000, seed=12, start=start, rate_per_s=3000 / (39 * 60), users=80, merchants=12, bad_share=0.03)
    store = OnlineStore(plan)
    app = StreamApplier(plan, "transactions", store)
    try:
        ts = now // 1000
        total = {"consumed": 0, "applied": 0, "dead_lettered": 0, "filtered": 0}
        for lo in range(0, len(events), 400):
            out = app.apply("transactions", 0, _batch(events, lo, lo + 400, ts))
            for k in total:
                total[k] += getattr(out, k)
        n_bad = sum(1 for e in events if e.bad_kind)
        assert total == {"consumed": 3000, "applied": 3000 - n_bad, "dead_lettered": n_bad, "filtered": 0}
        # a replay from an earlier offset at other boundaries (a restart after a crash): no change
        for lo in range(1100, len(events), 333):
            app.apply("transactions", 0, _batch(events, lo, min(lo + 333, len(events)), ts))

        good = [e.value for e in events if e.bad_kind is None]
        table = ContractValidator(plan.contracts["transactions"]).validate_json(good, now=now).valid
        for p in (tmp_path / "data/history/transactions").glob("*.parquet"):
            p.unlink()
        pq.write_table(table, tmp_path / "data/history/transactions/part-0.parquet")
        engine = BatchEngine(plan, cache=False)
        rows = [{"user_id": u, "merchant_id": 1 + u % 12} for u in range(1, 85)]
        at = time.time_ns() // 1000
        got = store.get("fraud_detection", rows, at_us=at)
        spine = pa.table({"user_id": [r["user_id"] for r in rows], "merchant_id": [r["merchant_id"] for r in rows], "ts": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC"))})
        want = engine.historical(spine, "fraud_detection", at_column="ts").to_pydict()
        streamed = {f.name for v in ("user_transactions", "user_declines", "user_last_merchant", "merchant_transactions") for f in plan.views[v].features}
        assert {"amount_last_7d", "amount_first_10m", "amount_variance_24h", "amount_stddev_1h", "amount_min_7d"} <= streamed
        for name in streamed & set(got):
            bad = [(rows[i], a, b) for i, (a, b) in enumerate(zip(got[name], want[name], strict=True)) if not same(a, b)]
            assert not bad, (name, bad[:3])
        assert any(v is not None for v in got["amount_last_7d"]) and any(v is not None for v in got["amount_variance_24h"])
    finally:
        app.close()
        keys = list(store.client.scan_iter(f"{plan.project.redis_key_prefix}:*", count=1000))
        if keys:
            store.client.delete(*keys)
