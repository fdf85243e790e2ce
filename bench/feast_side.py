"""Feast's side of bench/batch_bench.py, run in its own venv (Feast pins its own pydantic/pyarrow/duckdb).

    .venv-bench/bin/python bench/feast_side.py --data DIR --spine SPINE.parquet --store file|duckdb --workdir DIR [--out OUT.parquet]

Builds a Feast repo in --workdir (feature_store.yaml: provider local, the chosen offline store,
a file registry), applies an Entity `user` (join key user_id), a FileSource over the parquet
directory --data (timestamp_field event_time) and a FeatureView `user_latest` (ttl 30 days;
merchant_id, amount, currency, status, channel), then times `get_historical_features(...).to_df()`
for the spine. Prints one JSON object on the last line of stdout: timings, row counts, max RSS,
and on failure the error (type and message) instead of timings.

The spine parquet has columns user_id, timestamp (UTC) and spine_row (its row number), which
is passed through as an entity-dataframe column so the caller can compare values row by row.
`--ts-unit` sets the pandas precision of the entity timestamps: ns (what pandas gives by
default, and what most Feast users pass) or us (the data's own precision).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

FEATURES = ("merchant_id", "amount", "currency", "status", "channel")


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def write_repo(workdir: Path, store: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "feature_store.yaml").write_text(
        "project: featureline_bench\n"
        f"registry: {workdir / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n"
        f"  type: {store}\n"
        "online_store:\n"
        "  type: sqlite\n"
        f"  path: {workdir / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )


def run(args) -> dict:
    out: dict = {"store": args.store, "ts_unit": args.ts_unit}
    t0 = time.perf_counter()
    import feast
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    out["feast_version"] = feast.__version__
    out["import_s"] = time.perf_counter() - t0
    workdir = Path(args.workdir)
    write_repo(workdir, args.store)

    t0 = time.perf_counter()
    fs = FeatureStore(repo_path=str(workdir))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    # a directory of part files: the format must be explicit (the DuckDB store reads nothing otherwise)
    source = FileSource(name="transactions", path=str(Path(args.data).resolve()), file_format=ParquetFormat(), timestamp_field="event_time")
    view = FeatureView(
        name="user_latest",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[
            Field(name="merchant_id", dtype=Int64),
            Field(name="amount", dtype=Float64),
            Field(name="currency", dtype=String),
            Field(name="status", dtype=String),
            Field(name="channel", dtype=String),
        ],
        source=source,
        online=False,
    )
    fs.apply([user, source, view])
    out["apply_s"] = time.perf_counter() - t0

    spine = pd.read_parquet(args.spine)
    entity_df = pd.DataFrame(
        {
            "user_id": spine["user_id"].astype("int64"),
            "event_timestamp": spine["timestamp"].astype(f"datetime64[{args.ts_unit}, UTC]"),
            "spine_row": spine["spine_row"].astype("int64"),
        }
    )
    out["spine_rows"] = len(entity_df)
    out["entity_ts_dtype"] = str(entity_df["event_timestamp"].dtype)

    t0 = time.perf_counter()
    df = fs.get_historical_features(entity_df=entity_df, features=[f"user_latest:{f}" for f in FEATURES]).to_df()
    out["historical_s"] = time.perf_counter() - t0
    out["rows"] = len(df)
    out["columns"] = [str(c) for c in df.columns]
    out["non_null"] = {f: int(df[f].notna().sum()) for f in FEATURES if f in df.columns}
    out["max_rss_mib"] = max_rss_mib()
    if args.out:
        keep = df[["spine_row", *[f for f in FEATURES if f in df.columns]]].copy()
        keep.to_parquet(args.out, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory of the transactions parquet files")
    ap.add_argument("--spine", required=True)
    ap.add_argument("--store", choices=("file", "duckdb"), default="file")
    ap.add_argument("--ts-unit", choices=("ns", "us"), default="ns")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", default=None, help="write spine_row + features here (after timing)")
    args = ap.parse_args()
    try:
        res = run(args)
        res["ok"] = True
    except Exception as e:  # report, don't crash: the caller prints the error in its table
        tb = traceback.format_exc()
        res = {
            "ok": False,
            "store": args.store,
            "ts_unit": args.ts_unit,
            "error": f"{type(e).__name__}: {e}"[:2000],
            "traceback_tail": tb[-3000:],
            "max_rss_mib": max_rss_mib(),
        }
    sys.stdout.flush()
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
