"""`featureline backfill --to online --end T`: bootstrap Redis from the batch engine.

Writes, for every entity, the tiles of every (view, hop) that a window can still read
at T or later (tile start >= floor(T - widest window, hop)) built from the events with
event_time < T, and the latest value of each latest-value view (event_time < T, within
its ttl). The hand-off to the stream is by event time: the backfill owns events before
T, the stream the events at or after T (its `--from` boundary), so no event is counted
twice or missed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import repeat

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..online.backend import EntityWrites, SlotWrites
from ..online.backend import OnlineBackend as OnlineStore
from ..online.layout import ESCAPES, TileLayout, entity_key, latest_code, tile_layouts, view_codes
from ..partials import accumulator_columns, tile_matrix, tile_states
from ..plan import ViewPlan
from ..sql import ORD_SHIFT, floor_sql, q
from .engine import BatchEngine

_enc = msgspec.msgpack.Encoder()
LATEST_BATCH = 16_384  # latest-value rows encoded at a time
PART_ROWS = 750_000  # source rows per part of an entity type's entities (see _parts)
MAX_PARTS = 16


@dataclass
class OnlineWritten:
    view: str
    kind: str
    entities: int
    tiles: int


def rebuild_online(engine: BatchEngine, store: OnlineStore, end_us: int, *, views: list[str] | None = None) -> list[OnlineWritten]:
    """`featureline backfill --to online`: the views' online data replaced by the batch engine's as
    of `end_us`, and the boundary the stream continues from. The store is marked `building`
    meanwhile (a new store life, online/state.py) and `ready` at the end, if Redis kept all of it:
    a Redis that lost its data during the backfill is an error (StoreLost), never a half store."""
    plan = engine.plan
    names = views or [v.name for v in plan.views.values() if v.online]
    for name in names:
        if name not in plan.views:
            raise ValueError(f"no feature view `{name}`")
    for n in names:
        engine.source(plan.views[n].source)  # sources checked before anything is written
    store_id = store.begin_backfill()
    store.reset_views(names)
    done = backfill_online(engine, store, end_us, views=names)
    store.record_boundary(plan, {w.view for w in done}, end_us)
    store.finish_backfill(store_id)
    return done


def backfill_online(engine: BatchEngine, store: OnlineStore, end_us: int, *, views: list[str] | None = None) -> list[OnlineWritten]:
    """Write every (view, slot) in one stream of writes (`OnlineBackend.write_slots`): DuckDB
    computes the next part (or view) while the store writes the one before. Returns the
    counts per slot, in the order of `views`, once Redis has applied everything."""
    plan = engine.plan
    names = views or [v.name for v in plan.views.values() if v.online]
    for name in names:
        if name not in plan.views:
            raise ValueError(f"no feature view `{name}`")
    out: dict[str, list[OnlineWritten]] = {name: [] for name in names}
    # within an entity type's part: latest-value views first (smaller sources first), then the
    # windowed views. Sources are loaded and checked here, before any write.
    for n in names:
        engine.source(plan.views[n].source)
    size = {n: engine.reports[plan.views[n].source].valid for n in names}
    order = sorted((n for n in names if plan.views[n].kind == "latest"), key=size.get) + [
        n for n in names if plan.views[n].kind != "latest"
    ]

    def writes():
        # per entity type, per part of its entities: every slot of its views, one batch (the
        # store writes each entity's value once); parts split alike by the entity key
        by_entity: dict[str, list[ViewPlan]] = {}
        for name in order:
            by_entity.setdefault(plan.views[name].entity, []).append(plan.views[name])
        for entity, views in by_entity.items():
            counts = []
            for view in views:
                if view.kind == "latest":
                    counts.append((view, None, OnlineWritten(view.name, "latest", 0, 0)))
                else:
                    counts += [
                        (view, lay, OnlineWritten(view.name, f"tiles/{lay.hop_us // 1_000_000}s", 0, 0)) for lay in tile_layouts(view)
                    ]
            for view, _, w in counts:
                out[view.name].append(w)
            codes = tuple(c for v in views for c in view_codes(v))
            k = _parts(engine, views)
            hashes = _part_hash(engine, views) if k > 1 else {}
            latest = {v.name: _latest(engine, v, end_us, w, k, hashes.get(v.name) and f"{hashes[v.name]} % {k}") for v, lay, w in counts if lay is None}
            for i in range(k):
                slots: list[SlotWrites] = []
                for view, lay, w in counts:
                    if lay is None:
                        slots += latest[view.name][i]
                    else:
                        slots += _tiles(engine, view, lay, end_us, w, f" AND {hashes[view.name]} % {k} = {i}" if k > 1 else "")
                yield EntityWrites(entity, codes, slots)

    # DuckDB on all cores but one: Redis and the sender thread need about one core, and DuckDB's
    # second thread on two cores costs ~30% more CPU for the same wall time
    threads = engine.con.execute("SELECT current_setting('threads')").fetchone()[0]
    spare = max(1, (os.cpu_count() or 2) - 1)
    if spare < threads:
        engine.con.execute(f"SET threads = {spare}")
    try:
        store.write_slots(writes())
    finally:
        if spare < threads:
            engine.con.execute(f"SET threads = {threads}")
    return [w for name in names for w in out[name]]


def _tiles(engine: BatchEngine, view: ViewPlan, lay: TileLayout, end_us: int, w: OnlineWritten, part: str):
    """The writes of one slot's tiles of one part of the entities (counted in `w`)."""
    ev = engine.events_sql(view)
    widest = max(f.window_us for f in lay.features)
    lo = floor_sql(str(end_us - widest), lay.hop_us)
    keys = ", ".join(q(k) for k in view.join_keys)
    accs = accumulator_columns(view, lay)
    sql = (
        f"SELECT {keys}, {floor_sql('__t', lay.hop_us)} AS __tile, {', '.join(accs)} FROM {ev} "
        f"WHERE __t < {end_us} AND __t >= {lo}{part} GROUP BY ALL ORDER BY {keys}, __tile"
    )
    if lay.numeric and len(view.join_keys) == 1:
        yield from _tiles_packed(engine, view, lay, sql, w)
        return
    nkeys = len(view.join_keys)
    entities = set()

    def rows():
        for batch in engine.con.sql(sql).to_arrow_reader(100_000):
            cols = [c.to_pylist() for c in batch.columns]
            for r in zip(*cols, strict=True):
                ent = entity_key(r[:nkeys])
                entities.add(ent)
                yield ent, r[nkeys], tile_states(lay, r[nkeys + 1 :])

    count = [0]
    yield from _blocks(lay, rows(), count)
    w.entities += len(entities)
    w.tiles += count[0]


def _tiles_packed(engine: BatchEngine, view: ViewPlan, lay: TileLayout, sql: str, w: OnlineWritten):
    """The common case, vectorized: numeric tiles of a single-key entity. The tile rows come
    ordered by entity and start; each entity's block is a slice of one float64 matrix
    (start, states...) per tile, so no Python runs per tile or per entity."""
    table = engine.con.sql(sql).to_arrow_table()
    if table.num_rows == 0:
        return
    mat = tile_matrix(lay, table)
    stride = mat.shape[1] * 8
    key = table.column(0).combine_chunks()
    n = len(key)
    starts = table.column("__tile").to_numpy()
    # entity boundaries: where the key changes (rows come ordered by key, then tile)
    neq = pc.not_equal(key.slice(1), key.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    change = np.concatenate([[0], np.flatnonzero(neq) + 1, [n]]).astype(np.int64)
    ents = _entity_keys([key.take(pa.array(change[:-1]))])
    offsets = change * stride
    blocks = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(ents), [None, pa.py_buffer(offsets), pa.py_buffer(mat)])
    w.entities += len(ents)
    w.tiles += n
    yield SlotWrites(view.entity, lay.code, ents, (starts[change[1:] - 1] + lay.reach_us) // 1000 + 1, blocks)


def _blocks(lay: TileLayout, rows, count: list[int], batch: int = 1000):
    """rows: (entity key, tile start, states), grouped by entity and ordered by start -> each
    entity's whole block of the slot, `batch` entities a write; counts the tiles in count[0]."""
    ents: list[str] = []
    expire: list[int] = []
    blocks: list[bytes] = []
    for ent, tiles in _by_entity(rows):
        count[0] += len(tiles)
        ents.append(ent)
        expire.append((tiles[-1][0] + lay.reach_us) // 1000 + 1)
        blocks.append(lay.pack_block(tiles))
        if len(ents) >= batch:
            yield SlotWrites(lay.entity, lay.code, pa.array(ents, pa.string()), np.array(expire, np.int64), pa.array(blocks, pa.binary()))
            ents, expire, blocks = [], [], []
    if ents:
        yield SlotWrites(lay.entity, lay.code, pa.array(ents, pa.string()), np.array(expire, np.int64), pa.array(blocks, pa.binary()))


def _by_entity(rows):
    cur, tiles = None, []
    for ent, start, states in rows:
        if ent != cur:
            if cur is not None:
                yield cur, tiles
            cur, tiles = ent, []
        tiles.append((start, states))
    if cur is not None:
        yield cur, tiles


def _parts(engine: BatchEngine, views: list[ViewPlan]) -> int:
    """In how many parts to split an entity type's entities (parts of about PART_ROWS source
    rows of its largest view), so that Redis writes the first part's values while DuckDB
    computes the next (each part's tile aggregate and sort are smaller: this costs DuckDB
    little; a latest-value view is one query whatever the parts)."""
    k = 1
    for v in views:
        rep = engine.reports.get(v.source)
        k = max(k, min(MAX_PARTS, (rep.valid if rep else 0) // PART_ROWS))
    return k


def _part_hash(engine: BatchEngine, views: list[ViewPlan]) -> dict[str, str]:
    """Per view, the SQL hash of an event's entity key that parts split by, alike for all the
    views of one entity type: the keys' own hash when their types agree across the views, else
    the hash of their text (an integer key in one source and its text in another are one
    entity: they must land in one part)."""
    types = {tuple(map(str, engine.con.sql(f"SELECT {', '.join(q(c) for c in v.join_keys)} FROM {engine.source(v.source)} LIMIT 0").types)) for v in views}
    cast = len(types) > 1
    return {v.name: "hash(" + ", ".join(f"CAST({q(c)} AS VARCHAR)" if cast else q(c) for c in v.join_keys) + ")" for v in views}


def _entity_keys(cols):
    """Join-key columns -> entity key strings (`entity_key` of each row), vectorized for
    integer and string keys without nulls."""

    parts = []
    for c in cols:
        if c.null_count:
            parts = None
            break
        if pa.types.is_integer(c.type):
            parts.append(c.cast(pa.string()))
        elif pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
            for a, b in ESCAPES:  # layout.esc, vectorized
                c = pc.replace_substring(c, a, b)
            parts.append(c)
        else:
            parts = None
            break
    if parts is None:
        return pa.array([entity_key(r) for r in zip(*(c.to_pylist() for c in cols), strict=True)], pa.string())
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "|")


def _latest(engine: BatchEngine, view: ViewPlan, end_us: int, w: OnlineWritten, k: int, part: str | None) -> list[list[SlotWrites]]:
    """Each entity's newest row before T within the ttl (by event time, then arrival: `__ord`),
    as writes per part of the entities (`part`: the SQL of an entity's part of k, None for one
    part): one query, its rows split by part afterwards (a query per part would scan the source
    k times). Found as the row whose __ord is its entity's max(__ord) (`__arrival` is unique per
    source row, so __ord is too): under half of DuckDB's time for arg_max over a struct."""
    src = engine.source(view.source)
    keys = ", ".join(q(k) for k in view.join_keys)
    vals = [f"{'epoch_us(' + q(f.column) + ')' if f.dtype == 'timestamp' else q(f.column)} AS __v{i}" for i, f in enumerate(view.features)]
    where = f" AND ({view.where})" if view.where else ""
    out = ", ".join([keys, "__t", "__arrival", *(f"__v{i}" for i in range(len(vals))), f"{part or '0'} AS __part"])
    sql = (
        f"WITH __s AS NOT MATERIALIZED (SELECT {keys}, __t, __arrival, {', '.join(vals)}, __t::HUGEINT * {ORD_SHIFT} + __arrival AS __o "
        f"FROM {src} WHERE __t < {end_us} AND __t >= {end_us - view.ttl_us}{where}) "
        f"SELECT {out} FROM __s WHERE __o IN (SELECT max(__o) FROM __s GROUP BY {keys})"
    )
    nkeys = len(view.join_keys)
    enc = _enc.encode
    code = latest_code(view)
    parts: list[list[SlotWrites]] = [[] for _ in range(k)]
    # per batch: entity keys vectorized; each row [t, a, [values]] packed by msgspec in one
    # C loop over tuples (the same bytes as a list per row; as fast as packing with numpy)
    for batch in engine.con.sql(sql).to_arrow_reader(LATEST_BATCH):
        t = batch.column(nkeys)
        cols = [c.to_pylist() for c in batch.columns[nkeys:-1]]
        vals = zip(*cols[2:], strict=True) if len(cols) > 2 else repeat(())
        rows = pa.array(list(map(enc, zip(cols[0], cols[1], vals, strict=False))), pa.large_binary())  # equally long (repeat is endless)
        ents = _entity_keys(batch.columns[:nkeys])
        expire = (t.to_numpy(zero_copy_only=False) + view.ttl_us) // 1000 + 1
        w.entities += len(ents)
        if k == 1:
            parts[0].append(SlotWrites(view.entity, code, ents, expire, rows))
            continue
        which = batch.column(len(batch.columns) - 1).to_numpy(zero_copy_only=False)
        for i in range(k):
            at = np.flatnonzero(which == i)
            if len(at):
                idx = pa.array(at)
                parts[i].append(SlotWrites(view.entity, code, ents.take(idx), expire[at], rows.take(idx)))
    return parts
