"""Training sets and offline backfills as a user runs them: CLI, contract checks on batch input, idempotence."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureline import FeatureStore
from featureline.generator import write_history

END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def project(example_project):
    write_history(example_project, events=6000, users=150, merchants=20, days=10, end=END)
    return example_project


def fl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "featureline", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _spine(n=50):
    import random

    rnd = random.Random(5)
    times = [END - dt.timedelta(seconds=rnd.randint(0, 9 * 86400)) for _ in range(n)]
    return pa.table(
        {
            "request_id": list(range(n)),
            "user_id": [rnd.randint(1, 160) for _ in range(n)],  # some users never seen
            "merchant_id": [rnd.randint(1, 20) for _ in range(n)],
            "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def test_dataset_cli_keeps_every_row_in_order(project):
    pq.write_table(_spine(), project / "spine.parquet")
    r = fl("dataset", "--spine", "spine.parquet", "--service", "fraud_detection", "--out", "out/train.parquet", "--at-column", "ts", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "wrote 50 rows x 30 columns" in r.stdout
    assert "source transactions: 6,000 rows, 6,000 valid, 0 invalid" in r.stderr
    out = pq.read_table(project / "out/train.parquet")
    assert out.column("request_id").to_pylist() == list(range(50))
    assert out.column_names[:4] == ["request_id", "user_id", "merchant_id", "ts"]
    # the same rows from the Python API
    api = FeatureStore(project).get_historical_features(_spine(), "fraud_detection", at_column="ts")
    assert api.equals(out)
    r = fl("dataset", "--spine", "spine.parquet", "--service", "fraud_detection", "--out", "train.csv", "--at-column", "ts", cwd=project)
    assert r.returncode == 0 and (project / "train.csv").read_text().startswith('"request_id","user_id"')


def test_dataset_cli_errors(project):
    pq.write_table(_spine(), project / "spine.parquet")
    r = fl("dataset", "--spine", "spine.parquet", "--service", "fraud_detect", "--out", "x.parquet", cwd=project)
    assert r.returncode == 2 and "did you mean `fraud_detection`" in r.stderr
    pq.write_table(_spine().rename_columns(["request_id", "user_id", "merchant_id", "when"]), project / "spine2.parquet")
    r = fl("dataset", "--spine", "spine2.parquet", "--service", "fraud_detection", "--out", "x.parquet", cwd=project)
    assert r.returncode == 2 and "--at-column" in r.stderr  # no timestamp/event_time/ts column
    r = fl("dataset", "--spine", "nope.parquet", "--service", "fraud_detection", "--out", "x.parquet", cwd=project)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_invalid_batch_rows_are_excluded_counted_or_fatal_in_strict_mode(project):
    part = project / "data/history/transactions/part-00000.parquet"
    t = pq.read_table(part)
    amount = t.column("amount").to_pylist()
    currency = t.column("currency").to_pylist()
    amount[0], amount[1] = -5.0, 60000.0
    currency[2] = "XXX"
    t = t.set_column(t.column_names.index("amount"), "amount", pa.array(amount, pa.float64()))
    t = t.set_column(t.column_names.index("currency"), "currency", pa.array(currency, pa.string()))
    pq.write_table(t, part)
    fs = FeatureStore(project)
    fs.get_historical_features(_spine(5), "user_activity", at_column="ts")
    rep = fs.source_reports()["transactions"]
    assert (rep.rows, rep.valid, rep.invalid) == (6000, 5997, 3)
    assert dict(rep.by_rule) == {("amount", "minimum"): 1, ("amount", "maximum"): 1, ("currency", "enum"): 1}
    pq.write_table(_spine(5), project / "spine.parquet")
    r = fl("dataset", "--spine", "spine.parquet", "--service", "user_activity", "--out", "x.parquet", "--at-column", "ts", "--strict", cwd=project)
    assert r.returncode == 1 and "strict: source transactions" in r.stderr and "amount/minimum: 1" in r.stderr


def test_backfill_offline_matches_training_values_and_is_idempotent(project):
    r = fl("backfill", "--start", "2026-10-30T00:00:00Z", "--end", "2026-10-31T12:00:00Z", "--view", "user_transactions", "--cadence", "1h", cwd=project)
    assert r.returncode == 0, r.stderr
    root = project / "data/offline/user_transactions"
    parts = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert parts == ["date=2026-10-30/part-0.parquet", "date=2026-10-31/part-0.parquet"]
    first = {p: pq.read_table(root / p) for p in parts}
    # every row equals the training-set value for that entity at that time
    sample = first["date=2026-10-31/part-0.parquet"].slice(0, 40)
    spine = pa.table({"user_id": sample.column("user_id"), "ts": sample.column("feature_time")})
    train = FeatureStore(project).get_historical_features(spine, "user_activity", at_column="ts")
    assert train.column("count_1h").to_pylist() == sample.column("count_1h").to_pylist()
    assert train.column("amount_sum_24h").to_pylist() == sample.column("amount_sum_24h").to_pylist()
    times = sample.column("feature_time").to_pylist()
    assert all(t.minute == 0 and t.second == 0 for t in times) and max(times) < dt.datetime(2026, 10, 31, 12, tzinfo=dt.UTC)
    # a rerun replaces, never duplicates
    assert fl("backfill", "--start", "2026-10-30T00:00:00Z", "--end", "2026-10-31T12:00:00Z", "--view", "user_transactions", "--cadence", "1h", cwd=project).returncode == 0
    assert all(pq.read_table(root / p).equals(first[p]) for p in parts)
    # an overlapping range rewrites its own hours and keeps the rest of the partition
    assert fl("backfill", "--start", "2026-10-31T06:00:00Z", "--end", "2026-10-31T18:00:00Z", "--view", "user_transactions", "--cadence", "1h", cwd=project).returncode == 0
    after = pq.read_table(root / "date=2026-10-31/part-0.parquet")
    before_hours = {t.hour for t in first["date=2026-10-31/part-0.parquet"].column("feature_time").to_pylist()}
    after_hours = {t.hour for t in after.column("feature_time").to_pylist()}
    assert before_hours <= after_hours and max(after_hours) >= 12
    old_rows = first["date=2026-10-31/part-0.parquet"].filter(pa.compute.less(pa.compute.hour(first["date=2026-10-31/part-0.parquet"].column("feature_time")), 6))
    kept = after.filter(pa.compute.less(pa.compute.hour(after.column("feature_time")), 6))
    assert kept.equals(old_rows)


def test_backfill_usage_errors(project):
    assert fl("backfill", "--start", "2026-10-31", "--end", "2026-10-30", cwd=project).returncode == 2
    assert fl("backfill", "--start", "yesterday", "--end", "2026-10-30", cwd=project).returncode == 2
    assert fl("backfill", "--start", "2026-10-30", "--end", "2026-10-31", "--view", "nope", cwd=project).returncode == 2
