"""The DuckDB engine against the plain-Python oracle of docs/semantics.md, on random event streams."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import oracle

from featureline.batch.engine import BatchEngine
from featureline.compiler import compile_project

MIN = 60_000_000
BASE = 1_700_000_000_000_000 - (1_700_000_000_000_000 % (24 * 60 * MIN))  # a day boundary

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: ev
version: 1.0.0
status: active
schema:
  - name: ev
    properties:
      - {name: k, logicalType: integer, required: true}
      - {name: v, logicalType: number}
      - {name: i, logicalType: integer}
      - {name: s, logicalType: string}
      - {name: b, logicalType: boolean}
      - {name: ts, logicalType: timestamp, required: true}
customProperties:
  - {property: eventTimeField, value: ts}
  - {property: maxFutureSkew, value: 3650d}
"""
FEATURES = """\
entities:
  - {name: thing, join_keys: [k]}
sources:
  - name: ev
    contract: ev
    batch: {path: data/ev/*.parquet}
feature_views:
  - name: w
    entity: thing
    source: ev
    aggregations:
      - {function: count, windows: [10m, 1h, 1d]}
      - {column: v, functions: [count, sum, mean, min, max, last, first, variance, stddev, count_distinct], windows: [10m, 1h, 1d]}
      - {column: v, functions: [sum, last, variance], windows: [30m], hop: 7m, name: odd}
      - {column: i, functions: [sum, mean, min, max, last, first, variance, count_distinct], windows: [1h]}
      - {column: s, functions: [count, min, max, last, first, count_distinct], windows: [1h]}
      - {column: s, functions: [last_k, first_k], k: 3, windows: [1h, 10m]}
      - {column: v, functions: [last_k], k: 1, windows: [1h]}
      - {column: b, functions: [first_k], k: 5, windows: [1h], hop: 7m}
      - {column: i, functions: [approx_count_distinct], windows: [1h, 10m]}
      - {column: s, functions: [approx_count_distinct], windows: [1h]}
      - {column: ts, functions: [approx_count_distinct, count_distinct], windows: [1h]}
      - {column: v, functions: [approx_percentile], percentiles: [0, 0.5, 0.9, 1], windows: [1h, 10m]}
      - {column: i, functions: [approx_percentile, count], percentiles: [0.25], windows: [10m]}
      - {column: b, functions: [approx_percentile], percentiles: [0.5], windows: [1h], name: bp}
      - {column: s, functions: [top_k], k: 2, windows: [1h, 10m]}
      - {column: i, functions: [top_k], k: 3, windows: [1h], hop: 7m}
      - {column: b, functions: [top_k], k: 1, windows: [1h], name: bt}
      - {column: b, functions: [sum, mean, count, count_distinct], windows: [1h]}
  - name: wf
    entity: thing
    source: ev
    where: "v > 0 AND s IS NOT NULL"
    aggregations:
      - {column: v, functions: [count, sum, last], windows: [1h], name: fv}
  - name: latest
    entity: thing
    source: ev
    ttl: 45m
    features:
      - {name: lv, column: v}
      - {name: ls, column: s}
      - {name: li, column: i}
feature_services:
  - name: all
    features: ["w:*", "wf:*", "latest:*"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("oracle")
    (d / "featureline.yaml").write_text("project: oracle\n")
    (d / "contracts").mkdir()
    (d / "contracts/ev.yaml").write_text(CONTRACT)
    (d / "features").mkdir()
    (d / "features/f.yaml").write_text(FEATURES)
    (d / "data/ev").mkdir(parents=True)
    return d


_time = st.one_of(
    st.integers(0, 180).map(lambda m: BASE + m * MIN),  # on minute (and tile) boundaries: ties
    st.integers(0, 180 * MIN),  # anywhere, to the microsecond
).map(lambda x: x if x >= BASE else BASE + x)
_event = st.fixed_dictionaries(
    {
        "k": st.integers(1, 3),
        "ts": _time,
        "v": st.one_of(st.none(), st.integers(-100_000, 100_000).map(lambda c: c / 100)),
        "i": st.one_of(st.none(), st.integers(-1000, 1000)),
        "s": st.one_of(st.none(), st.sampled_from(["a", "b", "c", "dd"])),
        "b": st.one_of(st.none(), st.booleans()),
    }
)


def _write(project: Path, events: list[dict], split: int) -> list[dict]:
    """Two parquet files in arrival order (file order, then row order); returns events with `arrival`."""
    for old in (project / "data/ev").glob("*.parquet"):
        old.unlink()
    parts = [events[:split], events[split:]]
    out = []
    arrival = 0
    for n, part in enumerate(parts):
        table = pa.table(
            {
                "k": pa.array([e["k"] for e in part], pa.int64()),
                "v": pa.array([e["v"] for e in part], pa.float64()),
                "i": pa.array([e["i"] for e in part], pa.int64()),
                "s": pa.array([e["s"] for e in part], pa.string()),
                "b": pa.array([e["b"] for e in part], pa.bool_()),
                "ts": pa.array([e["ts"] for e in part], pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(table, project / f"data/ev/part-{n}.parquet")
        for e in part:
            out.append({**e, "event_time": e["ts"], "arrival": arrival})
            arrival += 1
    return out


@settings(max_examples=int(os.environ.get("FL_HYPOTHESIS_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    events=st.lists(_event, min_size=0, max_size=40),
    split=st.integers(0, 40),
    spine_times=st.lists(st.one_of(_time, st.sampled_from([BASE, BASE + 5 * MIN, BASE + 60 * MIN, BASE + 7 * MIN + 1])), min_size=1, max_size=12),
    extra=st.data(),
)
def test_engine_matches_oracle(project, events, split, spine_times, extra):
    evs = _write(project, events, min(split, len(events)))
    # spine times also exactly at event times, and keys with no events
    times = spine_times + [e["event_time"] for e in evs[:4]]
    keys = [extra.draw(st.integers(1, 4)) for _ in times]
    plan = compile_project(project)
    spine = pa.table({"k": keys, "timestamp": pa.array(times, pa.timestamp("us", tz="UTC"))})
    out = BatchEngine(plan, now_us=BASE + 10**12).historical(spine, "all").to_pylist()
    for row, k, t in zip(out, keys, times, strict=True):
        mine = [e for e in evs if e["k"] == k]
        for ref in plan.services["all"].features:
            f = plan.feature(ref)
            if f.kind == "latest":
                want = oracle.latest_value(mine, t, f.column, f.ttl_us)
            else:
                pool = mine
                if f.view == "wf":
                    pool = [e for e in mine if e["v"] is not None and e["v"] > 0 and e["s"] is not None]
                want = oracle.window_value(pool, t, f.function, f.column, f.window_us, f.hop_us, f.param)
            got = row[f.name]
            if f.function and f.function.startswith("approx_"):
                assert oracle.approx_close(f.function, got, want), (f.name, k, t, got, want)
                continue
            assert oracle.close(got, want), (f.name, k, t, got, want)


def test_spine_order_columns_and_nulls_kept(project):
    evs = [{"k": 1, "ts": BASE + MIN, "v": 2.5, "i": 3, "s": "a", "b": True}]
    _write(project, evs, 1)
    plan = compile_project(project)
    spine = pa.table(
        {
            "label": ["x", "y", "z"],
            "k": [1, 9, None],
            "timestamp": pa.array([dt.datetime.fromtimestamp((BASE + 2 * MIN) / 1e6, dt.UTC)] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    out = BatchEngine(plan, cache=False).historical(spine, "all")  # the uncached path too
    assert out.column_names[:3] == ["label", "k", "timestamp"]
    assert out.column("label").to_pylist() == ["x", "y", "z"]
    assert out.column("count_1h").to_pylist() == [1, 0, 0]
    assert out.column("v_sum_1h").to_pylist() == [2.5, 0.0, 0.0]
    assert out.column("lv").to_pylist() == [2.5, None, None]
    assert out.num_rows == 3
