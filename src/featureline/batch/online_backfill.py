"""`featureline backfill --to online --end T`: bootstrap Redis from the batch engine.

Writes, for every entity, the tiles of every (view, hop) that a window can still read
at T or later (tile start >= floor(T - widest window, hop)) built from the events with
event_time < T, and the latest value of each latest-value view (event_time < T, within
its ttl). The hand-off to the stream is by event time: the backfill owns events before
T, the stream the events at or after T (its `--from` boundary), so no event is counted
twice or missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ..contracts.sql_eval import q
from ..online.layout import TileLayout, entity_key, input_name, tile_layouts
from ..online.store import OnlineStore
from ..plan import ViewPlan
from .engine import ORD_SHIFT, BatchEngine, floor_sql

_enc = msgspec.msgpack.Encoder()


@dataclass
class OnlineWritten:
    view: str
    kind: str
    entities: int
    tiles: int


def _acc_sql(kind: str, col: str | None, f_type: str | None) -> str:
    if kind == "cnt":
        return "count(*)"
    x = col
    if kind == "nn":
        return f"count({x})"
    if kind == "sum":
        if f_type in ("integer", "boolean"):
            return f"coalesce(sum({x}::BIGINT), 0)::BIGINT"
        return f"coalesce(fsum({x}), 0.0)"
    if kind in ("min", "max"):
        v = f"{x}::INTEGER" if f_type == "boolean" else (f"epoch_us({x})" if f_type == "timestamp" else x)
        return f"{kind}({v})"
    if kind in ("last", "first"):
        fn = "arg_max" if kind == "last" else "arg_min"
        v = f"epoch_us({x})" if f_type == "timestamp" else x
        return f"{fn}(struct_pack(t := __t, a := __arrival, v := {v}), __ord) FILTER (WHERE {x} IS NOT NULL)"
    if kind == "var":
        return f"struct_pack(m := avg({x}::DOUBLE), m2 := coalesce(var_pop({x}::DOUBLE), 0.0) * count({x}))"
    raise ValueError(kind)


def backfill_online(engine: BatchEngine, store: OnlineStore, end_us: int, *, views: list[str] | None = None) -> list[OnlineWritten]:
    plan = engine.plan
    names = views or [v.name for v in plan.views.values() if v.online]
    out: list[OnlineWritten] = []
    for name in names:
        if name not in plan.views:
            raise ValueError(f"no feature view `{name}`")
        view = plan.views[name]
        if view.kind == "latest":
            out.append(_latest(engine, store, view, end_us))
        else:
            for lay in tile_layouts(view):
                out.append(_tiles(engine, store, view, lay, end_us))
    return out


def _inputs(view: ViewPlan) -> dict[str, tuple[str, str | None]]:
    """input name -> (SQL column in the view's events, logical type)."""
    out = {}
    for f in view.features:
        inp = input_name(f)
        if inp is not None and inp not in out:
            out[inp] = (f"{q('__in_' + f.name)}", "integer" if (f.input_type == "boolean" and f.function in ("sum", "mean", "variance", "stddev")) else f.input_type)
    return out


def _tiles(engine: BatchEngine, store: OnlineStore, view: ViewPlan, lay: TileLayout, end_us: int) -> OnlineWritten:
    ev = engine.events_sql(view)
    inputs = _inputs(view)
    widest = max(f.window_us for f in lay.features)
    lo = floor_sql(str(end_us - widest), lay.hop_us)
    keys = ", ".join(q(k) for k in view.join_keys)
    accs = []
    for a in lay.accs:
        col, typ = inputs.get(a.input, (None, None)) if a.input else (None, None)
        accs.append(f"{_acc_sql(a.kind, col, typ)} AS __a{a.index}")
    sql = (
        f"SELECT {keys}, {floor_sql('__t', lay.hop_us)} AS __tile, {', '.join(accs)} FROM {ev} "
        f"WHERE __t < {end_us} AND __t >= {lo} GROUP BY ALL ORDER BY {keys}, __tile"
    )
    if lay.numeric and len(view.join_keys) == 1:
        return _tiles_packed(engine, store, view, lay, sql)
    kinds = [a.kind for a in lay.accs]
    nkeys = len(view.join_keys)
    entities = set()

    def rows():
        rel = engine.con.sql(sql)
        for batch in rel.to_arrow_reader(100_000):
            cols = [c.to_pylist() for c in batch.columns]
            for r in zip(*cols, strict=True):
                ent = entity_key(r[:nkeys])
                entities.add(ent)
                yield ent, r[nkeys], [_state(k, v) for k, v in zip(kinds, r[nkeys + 1 :], strict=True)]

    n = store.write_tiles(lay, rows())
    return OnlineWritten(view.name, f"tiles/{lay.hop_us // 1_000_000}s", len(entities), n)


def _tiles_packed(engine: BatchEngine, store: OnlineStore, view: ViewPlan, lay: TileLayout, sql: str) -> OnlineWritten:
    """The common case, vectorized: numeric tiles of a single-key entity. The tile rows come
    ordered by entity and start; each entity's block is a slice of one float64 matrix
    (start, states...) per tile, so no Python runs per tile."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = engine.con.sql(sql).to_arrow_table()
    if table.num_rows == 0:
        return OnlineWritten(view.name, f"tiles/{lay.hop_us // 1_000_000}s", 0, 0)
    key = table.column(0).cast(pa.string())
    cols = [table.column("__tile")]
    for a in lay.accs:
        c = table.column(f"__a{a.index}")
        if a.kind == "var":
            cols += [pc.struct_field(c, "m"), pc.struct_field(c, "m2")]
        else:
            cols.append(c)
    mat = np.column_stack([pc.fill_null(c.combine_chunks().cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False) for c in cols])
    buf = np.ascontiguousarray(mat, dtype="<f8").tobytes()
    stride = mat.shape[1] * 8
    key = key.combine_chunks()
    n = len(key)
    starts = table.column("__tile").to_numpy()
    # entity boundaries: where the key changes (rows come ordered by key, then tile)
    neq = pc.not_equal(key.slice(1), key.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    change = [0, *(np.flatnonzero(neq) + 1).tolist(), n]
    keys = key.take(pa.array(change[:-1])).to_pylist()
    from ..online.layout import esc

    head = f"{store.prefix}:{view.entity}:"
    reach, code = lay.reach_us, lay.code
    items = (
        (head + esc(ent), (int(starts[hi - 1]) + reach) // 1000 + 1, code, buf[lo * stride : hi * stride])
        for ent, lo, hi in zip(keys, change[:-1], change[1:], strict=True)
    )
    store.bulk_set_slots(items)
    return OnlineWritten(view.name, f"tiles/{lay.hop_us // 1_000_000}s", len(keys), n)


def _state(kind: str, v):
    if kind in ("last", "first"):
        if v is None:
            return [0, 0, b""]
        return [v["t"], v["a"], _enc.encode(v["v"])]
    if kind == "var":
        return [v["m"] or 0.0, v["m2"] or 0.0]
    if kind in ("min", "max") and v is None:
        return 0  # not read: the tile's `nn` is 0
    return v


def _latest(engine: BatchEngine, store: OnlineStore, view: ViewPlan, end_us: int) -> OnlineWritten:
    src = engine.source(view.source)
    keys = ", ".join(q(k) for k in view.join_keys)
    vals = []
    for f in view.features:
        col = q(f.column)
        vals.append(f"v{len(vals)} := {'epoch_us(' + col + ')' if f.dtype == 'timestamp' else col}")
    where = f" AND ({view.where})" if view.where else ""
    sql = (
        f"SELECT {keys}, arg_max(struct_pack(t := __t, a := __arrival, {', '.join(vals)}), __t::HUGEINT * {ORD_SHIFT} + __arrival) AS r "
        f"FROM {src} WHERE __t < {end_us} AND __t >= {end_us - view.ttl_us}{where} GROUP BY ALL"
    )
    nkeys = len(view.join_keys)

    def rows():
        for batch in engine.con.sql(sql).to_arrow_reader(100_000):
            cols = [c.to_pylist() for c in batch.columns]
            for r in zip(*cols, strict=True):
                rec = r[nkeys]
                yield entity_key(r[:nkeys]), rec["t"], rec["a"], [rec[f"v{i}"] for i in range(len(view.features))]

    n = store.write_latest(view.name, rows())
    return OnlineWritten(view.name, "latest", n, 0)
