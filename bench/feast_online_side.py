"""Feast's side of bench/online_bench.py, run in its own venv (`.venv-bench`, feast[redis] 0.67).

    .venv-bench/bin/python bench/feast_online_side.py setup --workdir DIR --values VALUES.parquet --redis 127.0.0.1:6379 --db 6 --end-us T
    .venv-bench/bin/python bench/feast_online_side.py reads --workdir DIR

`setup` writes a Feast repo in --workdir (provider local, file offline store, file registry,
Redis online store `host:port,db=N`), applies an Entity `user` (join key user_id), one
FileSource over --values (the final values of the 10 bench features per user as of T,
computed by featureline's batch engine, with an `event_timestamp` column = T), four
FeatureViews named and shaped like featureline's (user_transactions: count_1h, count_24h,
amount_sum_24h, amount_mean_7d, amount_max_7d; user_declines: declines_count_24h;
user_last_merchant: last_merchant_id, last_amount; user_profile: country, risk_segment) and a
FeatureService `online_bench` of the 10 features, then times `materialize(T - 1 day, T + 1 min)`
into Redis. Prints one JSON line: timings, rows, Redis keys, or the error.

`reads` is a long-lived worker: it builds `FeatureStore(repo_path=DIR)` once, prints
{"ready": ...}, then answers JSON commands on stdin, one per line, one JSON line each:
  {"cmd": "read", "batches": [[id, ...], ...]}  -> {"lat_us": [...]} one
        `get_online_features(features=FEATURES, entity_rows=[{"user_id": id}, ...]).to_dict()`
        per batch, timed with perf_counter_ns
  {"cmd": "values", "ids": [...]}              -> {"values": to_dict()} (for the cross-check)
  {"cmd": "quit"}
so the driver can interleave rounds with featureline's worker.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT = "flbench"
VIEWS = {
    "user_transactions": (
        ("count_1h", "Int64"),
        ("count_24h", "Int64"),
        ("amount_sum_24h", "Float64"),
        ("amount_mean_7d", "Float64"),
        ("amount_max_7d", "Float64"),
    ),
    "user_declines": (("declines_count_24h", "Int64"),),
    "user_last_merchant": (("last_merchant_id", "Int64"), ("last_amount", "Float64")),
    "user_profile": (("country", "String"), ("risk_segment", "String")),
}
FEATURES = [f"{v}:{f}" for v, fs in VIEWS.items() for f, _ in fs]


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_repo(workdir: Path, redis: str, db: int) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "feature_store.yaml").write_text(
        f"project: {PROJECT}\n"
        f"registry: {workdir / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n"
        "  type: file\n"
        "online_store:\n"
        "  type: redis\n"
        f'  connection_string: "{redis},db={db}"\n'
        "entity_key_serialization_version: 3\n"
    )


def objects(values_path: str):
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    types = {"Int64": Int64, "Float64": Float64, "String": String}
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="bench_values", path=str(Path(values_path).resolve()), file_format=ParquetFormat(), timestamp_field="event_timestamp"
    )
    views = [
        FeatureView(
            name=name,
            entities=[user],
            ttl=timedelta(days=3650),  # the values are final as of T; freshness is not what is measured
            schema=[Field(name=f, dtype=types[t]) for f, t in fields],
            source=source,
            online=True,
        )
        for name, fields in VIEWS.items()
    ]
    service = FeatureService(name="online_bench", features=views)
    return [user, source, *views, service]


def setup(args) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    import feast
    from feast import FeatureStore

    out["feast_version"] = feast.__version__
    out["import_s"] = time.perf_counter() - t0
    workdir = Path(args.workdir)
    write_repo(workdir, args.redis, args.db)
    t0 = time.perf_counter()
    fs = FeatureStore(repo_path=str(workdir))
    fs.apply(objects(args.values))
    out["apply_s"] = time.perf_counter() - t0

    import pyarrow.parquet as pq

    out["entities"] = pq.read_metadata(args.values).num_rows
    end = datetime.fromtimestamp(args.end_us / 1e6, tz=UTC)
    t0 = time.perf_counter()
    fs.materialize(start_date=end - timedelta(days=1), end_date=end + timedelta(minutes=1))
    out["materialize_s"] = time.perf_counter() - t0
    out["views"] = len(VIEWS)
    out["entity_view_rows"] = out["entities"] * len(VIEWS)  # every entity row of every view is written
    out["max_rss_mib"] = max_rss_mib()
    return out


def reads(args) -> None:
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(Path(args.workdir)))
    get = fs.get_online_features
    feats = list(FEATURES)
    # warm up: registry, Redis connection
    for _ in range(20):
        get(features=feats, entity_rows=[{"user_id": 1}]).to_dict()
    print(json.dumps({"ready": True}), flush=True)
    perf = time.perf_counter_ns
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "read":
            lat = []
            for ids in cmd["batches"]:
                rows = [{"user_id": i} for i in ids]
                t0 = perf()
                get(features=feats, entity_rows=rows).to_dict()
                lat.append((perf() - t0) / 1000.0)
            print(json.dumps({"lat_us": lat}), flush=True)
        elif cmd["cmd"] == "values":
            d = get(features=feats, entity_rows=[{"user_id": i} for i in cmd["ids"]]).to_dict()
            print(json.dumps({"values": d}, default=str), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {cmd['cmd']}"}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("setup", "reads"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--values")
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--db", type=int, default=6)
    ap.add_argument("--end-us", type=int)
    args = ap.parse_args()
    if args.mode == "reads":
        reads(args)
        return
    try:
        res = setup(args)
        res["ok"] = True
    except Exception as e:  # report, don't crash: the driver prints the error in its table
        res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000], "traceback_tail": traceback.format_exc()[-3000:]}
    sys.stdout.flush()
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
