"""`featureline backfill --to offline`: feature values over a time range, as partitioned parquet.

For each feature view, at each cadence point t in [start, end) (default cadence: the
view's smallest hop; 1h for latest-value views), one row per entity that has at
least one event able to reach t (in [t - (W + H), t) for windowed views, within the
ttl for latest ones), with the features as of t, computed by the same point-in-time
SQL as training sets. Output:

    <offline path>/<view>/date=YYYY-MM-DD/part-0.parquet   (keys, feature_time, features)

Idempotent per partition: a rerun replaces the rows of [start, end) in each date
partition it touches (written to a temp file, then renamed) and keeps the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..plan import ViewPlan
from ..sql import floor_sql, q
from ..timeutil import DAY, HOUR, floor, from_us
from .engine import BatchEngine, finalize


@dataclass
class Written:
    view: str
    partition: Path
    rows: int


def default_cadence(view: ViewPlan) -> int:
    return min(view.hops) if view.kind == "window" and view.hops else HOUR


def reach(view: ViewPlan) -> int:
    """How long after an event it can still count: W + H for windowed views, the ttl for latest."""
    if view.kind == "window":
        return max(f.window_us + f.hop_us for f in view.features)
    return view.ttl_us


def backfill_offline(
    engine: BatchEngine,
    start: int,
    end: int,
    *,
    views: list[str] | None = None,
    cadence: int | None = None,
    progress: bool = False,
) -> list[Written]:
    if end <= start:
        raise ValueError("--end must be after --start")
    plan = engine.plan
    names = views or list(plan.views)
    for n in names:
        if n not in plan.views:
            raise ValueError(f"no feature view `{n}`")
    root = Path(plan.project.offline_path)
    written: list[Written] = []
    from .engine import _progress

    for name in _progress(names, "backfill offline", progress):
        view = plan.views[name]
        step = cadence or default_cadence(view)
        written.extend(_backfill_view(engine, view, start, end, step, root))
    return written


def _backfill_view(engine: BatchEngine, view: ViewPlan, start: int, end: int, step: int, root: Path) -> list[Written]:
    import pyarrow as pa
    import pyarrow.compute as pc

    con = engine.con
    ev = engine.events_sql(view)
    keys = ", ".join(q(k) for k in view.join_keys)
    r = reach(view)
    first_point = f"({floor_sql('e.__t', step)} + {step})"
    # every (entity, cadence point) an event can reach, within [start, end)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __bf_spine AS SELECT row_number() OVER () - 1 AS __row, * FROM ("
        f"SELECT DISTINCT {', '.join('e.' + q(k) for k in view.join_keys)}, p.__t FROM {ev} e, "
        f"LATERAL (SELECT unnest(generate_series(greatest({first_point}, {_ceil(start, step)}), least(e.__t + {r}, {end - 1}), {step})) AS __t) p "
        f"WHERE e.__t >= {start - r} AND e.__t < {end})"
    )
    values = engine.view_values_sql(view, "__bf_spine", list(view.features))
    feats = ", ".join(f"v.{q(f.name)}" for f in view.features)
    table = con.sql(
        f"SELECT {', '.join('s.' + q(k) for k in view.join_keys)}, make_timestamptz(s.__t) AS feature_time, {feats} "
        f"FROM __bf_spine s JOIN ({values}) v ON v.__row = s.__row ORDER BY s.__t, {keys}"
    ).to_arrow_table()
    table = finalize(table, view.features)
    con.execute("DROP TABLE __bf_spine")
    out: list[Written] = []
    day = floor(start, DAY)
    times = pc.cast(table.column("feature_time"), pa.int64()) if table.num_rows else None
    while day < end:
        lo, hi = max(day, start), min(day + DAY, end)
        part = table.filter(pc.and_(pc.greater_equal(times, lo), pc.less(times, hi))) if times is not None else table.slice(0, 0)
        path = root / view.name / f"date={from_us(day).date().isoformat()}" / "part-0.parquet"
        out.append(Written(view.name, path, _replace_rows(path, part, lo, hi)))
        day += DAY
    return out


def _ceil(x: int, h: int) -> int:
    return -((-x) // h) * h


def _replace_rows(path: Path, new, lo: int, hi: int) -> int:
    """Write `new` as the rows of [lo, hi) of the partition file, keeping its other rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = new
    if path.exists():
        old = pq.read_table(path)
        t = pc.cast(old.column("feature_time"), pa.int64())
        keep = old.filter(pc.or_(pc.less(t, lo), pc.greater_equal(t, hi)))
        if keep.num_rows:
            table = pa.concat_tables([keep, new.cast(keep.schema)]).sort_by([("feature_time", "ascending")])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)  # atomic: readers see the old partition or the new one
    return table.num_rows
