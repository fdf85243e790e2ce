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


def test_duplicates_are_judged_alike_by_the_stream_the_batch_engine_and_ci(tmp_path, services):
    """`uniqueWithin` (contract setting, 1d by default): a value may appear once per day of event time.
    A copy that arrives hours later in processing time is still a duplicate in the stream (before,
    the stream forgot a value after 1-2 h of processing time), and a record reusing the id a day of
    event time earlier is not one, in the batch engine either (before, it checked whole files)."""
    import json

    make_project(tmp_path, services)
    now = time.time_ns() // 1000
    write_history(tmp_path, events=100, users=40, merchants=8, days=2, end=dt.datetime.fromtimestamp((now - 2 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(tmp_path)
    assert plan.contracts["transactions"].unique_within_us == 24 * HOUR
    start = dt.datetime.fromtimestamp((now - 30 * MINUTE) / 1e6, dt.UTC)
    events = [e.value for e in live_events(300, seed=13, start=start, rate_per_s=300 / (25 * 60), users=40, merchants=8, bad_share=0.0)]
    a = json.loads(events[10])
    copy = events[10]  # a producer's retry, hours later
    t_a = dt.datetime.fromisoformat(a["event_time"].replace("Z", "+00:00"))
    earlier = json.dumps(dict(a, event_time=(t_a - dt.timedelta(days=1)).isoformat())).encode()  # the same id a day earlier: another bucket
    later = now + 3 * HOUR
    store = OnlineStore(plan)
    app = StreamApplier(plan, "transactions", store)
    try:
        first = app.apply("transactions", 0, _raw_batch(events, 0), now_us=now)
        assert first.dead_lettered == 0
        out = app.apply("transactions", 0, _raw_batch([copy, earlier], len(events)), now_us=later)
        assert [(d.offset, d.reasons[0].rule) for d in out.dead] == [(len(events), "unique")] and out.applied == 1

        # CI's check of the same records, in the same order, says the same
        res = ContractValidator(plan.contracts["transactions"]).validate_json([*events, copy, earlier], now=later)
        assert [r.index for r in res.invalid] == [len(events)]
        # and the batch engine, reading them as files in arrival order, keeps the same records
        for p in (tmp_path / "data/history/transactions").glob("*.parquet"):
            p.unlink()
        table = pa.Table.from_pylist([json.loads(v) for v in [*events, copy, earlier]])
        table = table.set_column(table.column_names.index("event_time"), "event_time", pa.compute.cast(table.column("event_time"), pa.timestamp("us", tz="UTC")))
        pq.write_table(table, tmp_path / "data/history/transactions/part-0.parquet")
        engine = BatchEngine(plan, cache=False)
        engine.source("transactions")
        rep = engine.reports["transactions"]
        assert (rep.rows, rep.valid, dict(rep.by_rule)) == (len(events) + 2, len(events) + 1, {("txn_id", "unique"): 1})
        rows = [{"user_id": u, "merchant_id": 1 + u % 8} for u in range(1, 42)]
        got = store.get("fraud_detection", rows, at_us=later)
        spine = pa.table({"user_id": [r["user_id"] for r in rows], "merchant_id": [r["merchant_id"] for r in rows], "ts": pa.array([later] * len(rows), pa.timestamp("us", tz="UTC"))})
        want = engine.historical(spine, "fraud_detection", at_column="ts").to_pydict()
        for name in ("count_24h", "count_7d", "amount_sum_7d", "txn_count_24h"):
            bad = [(rows[i], x, y) for i, (x, y) in enumerate(zip(got[name], want[name], strict=True)) if not same(x, y)]
            assert not bad, (name, bad[:3])
    finally:
        app.close()
        keys = list(store.client.scan_iter(f"{plan.project.redis_key_prefix}:*", count=1000))
        if keys:
            store.client.delete(*keys)


def _raw_batch(values, lo: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "offset": pa.array(range(lo, lo + len(values)), pa.int64()),
            "key": pa.array([b"k"] * len(values), pa.binary()),
            "value": pa.array(values, pa.binary()),
            "timestamp_ms": pa.array([time.time_ns() // 1_000_000] * len(values), pa.int64()),
        }
    )
