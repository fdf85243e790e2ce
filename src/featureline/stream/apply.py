"""What the stream does with one micro-batch (one poll of one Kafka partition).

    decode + contract check  ->  dead letters (reasons kept)
    uniqueness across batches (claims in Redis)  ->  dead letters
    before the backfill boundary  ->  filtered
    per online view: `where`, partial tiles per (entity, tile) in DuckDB over the Arrow batch,
    merged into Redis by the online store's idempotent Lua (per entity, slot and partition,
    the last applied offset is stored with the tiles); latest-value rows kept if newer.

Every consumed record is counted exactly once as applied, dead-lettered or filtered
(consumed = applied + dead_lettered + filtered). `late` counts applied records too old for
any window or ttl to read (docs/semantics.md: counted and reported; they change nothing).

The tiles are built by the same SQL as the backfill to online (`batch/online_backfill.py`)
over the same view definitions (`BatchEngine.events_sql`), so both engines apply one
definition of inputs, filters and accumulators. Arrival order in the stream is the
partition offset (docs/semantics.md, last/first ties).
"""

from __future__ import annotations

import time

import msgspec
import numpy as np
import pyarrow as pa

from ..contracts.validator import ContractValidator
from ..online.layout import TileLayout, entity_key, esc, tile_layouts
from ..online.state import Guard
from ..online.store import OnlineStore
from ..plan import Plan, ViewPlan
from .check import Checked, ContractCheck
from .outcome import DeadLetter, Outcome


class StreamApplier:
    """Applies micro-batches of one stream source to the online store."""

    def __init__(
        self,
        plan: Plan,
        source: str,
        store: OnlineStore,
        *,
        boundary_us: int | None = None,
        epoch: str = "",
        dlq_from: dict[int, int] | None = None,
        store_id: str | None = None,
        group: str = "",
    ):
        import duckdb

        from ..partials import events_sql

        self.plan = plan
        self.source = plan.sources[source]
        self.contract = plan.contracts[self.source.contract]
        self.validator = ContractValidator(self.contract)
        self.check = ContractCheck(self.contract, self.validator)  # for batches the reader did not check
        self.store = store
        self.boundary_us = boundary_us
        # offsets applied to a slot are remembered per partition *and backfill epoch*: after a
        # new backfill the stream re-reads the topic, and the old marks must not hide its records
        self.epoch = f"@{epoch}" if epoch else ""
        # below these offsets, a bad record was dead-lettered by an earlier pass over the topic
        self.dlq_from = {int(k): int(v) for k, v in (dlq_from or {}).items()}
        self.views: list[ViewPlan] = [v for v in plan.views.values() if v.source == source and v.online]
        self.layouts: list[tuple[ViewPlan, TileLayout]] = [(v, lay) for v in self.views if v.kind == "window" for lay in tile_layouts(v)]
        # slots of one entity are merged together: one Lua call per batch, one offsets lookup per entity
        self.groups: dict[str, list[tuple[ViewPlan, TileLayout]]] = {}
        for v, lay in self.layouts:
            self.groups.setdefault(v.entity, []).append((v, lay))
        self.latest: list[ViewPlan] = [v for v in self.views if v.kind == "latest"]
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET threads = 1")
        self._events = {v.name: events_sql(v, "__mb") for v in self.views}  # over the micro-batch, registered per batch
        self._macros: set[str] = set()  # table macros made on this connection (see _macro)
        self._unique = [c for c in self.validator.checks if c.rule == "unique"]
        if self._unique and not self.contract.unique_within_us:
            raise ValueError(
                f"contract `{self.contract.id}` has unique properties but no eventTimeField: the stream keeps uniqueness "
                "per bucket of event time (uniqueWithin)"
            )
        # a bucket's claims are kept while one of its records could still change a windowed feature
        self._claim_reach = max((lay.reach_us for _, lay in self.layouts), default=0) + self.contract.max_future_skew_us
        self._et = self.source.event_time
        # with the store's id (online/state.py) every write checks that Redis still holds all the
        # writes before it, and each batch ends with its `applied` mark; without: unguarded writes
        self.store_id, self.group = store_id, group
        self.guards: dict[tuple[str, int], Guard] = {}
        self.on_merged = None  # called after each slot group's merge (fault injection in the tests)
        from concurrent.futures import ThreadPoolExecutor

        self._writer = ThreadPoolExecutor(1, thread_name_prefix="featureline-redis")

    # -- one micro-batch ---------------------------------------------------------------
    def apply(
        self, topic: str, partition: int, records: pa.RecordBatch, *, now_us: int | None = None, checked: Checked | None = None
    ) -> Outcome:
        """records: columns offset, key, value, timestamp_ms (one poll of one partition, offsets
        increasing); `checked`: their contract check, if the reader made it (else it is made
        here). Writes the effects to Redis; returns what happened."""
        now = time.time_ns() // 1000 if now_us is None else now_us
        offsets = records.column("offset").to_numpy()
        n = len(offsets)
        out = Outcome(topic, partition, int(offsets[0]) if n else -1, int(offsets[-1]) if n else -1, consumed=n)
        if n == 0:
            return out
        if checked is None:
            checked = self.check(records, now_us=now)
        dead = dict(checked.invalid)
        valid_idx = checked.valid_index
        table = checked.valid
        guard = self._guard(topic, partition)
        if self._unique and len(valid_idx):
            keep = self._claim_unique(out.tp, table, offsets[valid_idx], dead, valid_idx, now, guard)
            if keep is not None:
                table = table.filter(pa.array(keep))
                valid_idx = valid_idx[keep]
        if dead:
            keys, values, ts = records.column("key"), records.column("value"), records.column("timestamp_ms")
            sent_before = self.dlq_from.get(partition, -1)
            for i in sorted(dead):
                why = dead[i]
                if offsets[i] >= sent_before:
                    out.dead.append(DeadLetter(int(offsets[i]), keys[i].as_py(), values[i].as_py(), ts[i].as_py(), why))
                for r in why:
                    out.by_rule[(r.field, r.rule)] += 1
                out.internal += any(r.rule == "internal" for r in why)
        out.dead_lettered = len(dead)
        t_us = table.column(self._et).cast(pa.int64()).to_numpy(zero_copy_only=False) if len(valid_idx) else np.zeros(0, np.int64)
        if self.boundary_us is not None and len(valid_idx):
            after = t_us >= self.boundary_us
            out.before_boundary = int((~after).sum())
            if out.before_boundary:
                table, t_us, valid_idx = table.filter(pa.array(after)), t_us[after], valid_idx[after]
        events = table.append_column("__t", pa.array(t_us, pa.int64())).append_column("__arrival", pa.array(offsets[valid_idx], pa.int64()))
        where_out = self._where_filtered(events) if len(valid_idx) else 0
        out.filtered = out.before_boundary + where_out
        out.applied = len(valid_idx) - where_out
        out.late = self._late(t_us, now)
        if len(valid_idx):
            self.con.register("__mb", events)
            try:
                # Redis works on its own core: each slot group's merge is sent from a writer thread
                # while the next one is computed here; all are acknowledged before returning
                tp = out.tp + self.epoch
                pending = []
                for group in self.groups.values():
                    items = self._group_items(group, now)
                    if items:
                        lays = [lay for _, lay in group]
                        pending.append(
                            (
                                group,
                                items,
                                self._writer.submit(
                                    self.store.merge_tiles, lays, items, tp=tp, lo=out.lo, hi=out.hi, now_us=now, guard=guard
                                ),
                            )
                        )
                for view in self.latest:
                    rows = self._latest_rows(view, now)
                    if rows:
                        pending.append((None, None, self._writer.submit(self.store.merge_latest, view.name, rows, guard=guard)))
                for group, items, fut in pending:
                    left = fut.result()
                    if group is not None:
                        self._replays(group, items, left, out, now, guard)
                    if self.on_merged is not None:
                        self.on_merged()
            finally:
                self.con.unregister("__mb")
            out.timestamps_ms = records.column("timestamp_ms").to_numpy()[valid_idx]
        if guard is not None:
            self.store.mark_applied(guard, out.hi + 1)
        out.written_ms = time.time_ns() // 1_000_000
        return out

    def _guard(self, topic: str, partition: int) -> Guard | None:
        """The write guard of a partition, made at its first batch from the count Redis holds."""
        if self.store_id is None:
            return None
        g = self.guards.get((topic, partition))
        if g is None:
            g = self.guards[(topic, partition)] = self.store.guard(self.store_id, self.group, topic, partition)
        return g

    # -- parts ---------------------------------------------------------------------------
    def _claim_unique(
        self, tp: str, table: pa.Table, offs: np.ndarray, dead: dict, valid_idx: np.ndarray, now: int, guard: Guard | None
    ) -> np.ndarray | None:
        """Claim each unique field's values in Redis (the first record wins); a value another record
        claimed makes this one a duplicate. Claims live in one hash per uniqueWithin bucket of event
        time (the contract's setting, as the batch engine checks), kept until no record of the bucket
        can change a windowed feature any more; a record older than that changes nothing (`late`) and
        is not checked. Returns a keep mask over `table`'s rows, or None when all are kept."""
        keep = np.ones(table.num_rows, dtype=bool)
        window = self.contract.unique_within_us
        t_us = table.column(self._et).cast(pa.int64()).to_numpy(zero_copy_only=False)
        bucket = t_us - np.mod(t_us, window)
        expires = bucket + window + self._claim_reach  # when the bucket's claims can go (us)
        for c in self._unique:
            raw = table.column(c.field)
            if pa.types.is_string(raw.type):
                col = raw.to_pylist()
            elif pa.types.is_timestamp(raw.type) or pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type):
                col = raw.cast(pa.string()).to_pylist()
            else:
                col = [None if v is None else msgspec.json.encode(v).decode() for v in raw.to_pylist()]
            ok = (expires > now) & ~np.asarray(raw.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            for b in np.unique(bucket[ok]).tolist():  # usually one bucket a batch
                idx = np.flatnonzero(ok & (bucket == b)).tolist()
                got = self.store.claim(
                    self.contract.id,
                    c.field,
                    b,
                    int(expires[idx[0]]) // 1000 + 1,
                    msgspec.msgpack.encode([col[i] for i in idx]),
                    msgspec.msgpack.encode(offs[idx].tolist()),
                    tp,
                    guard,
                )
                for k in range(0, len(got), 2):
                    i = idx[int(got[k])]
                    if keep[i]:
                        keep[i] = False
                        dead[int(valid_idx[i])] = (c.reason(raw[i].as_py()),)
        return None if keep.all() else keep

    def _where_filtered(self, events: pa.Table) -> int:
        """Records no view takes (every view's `where` is false or null for them, or a join key is null)."""
        from ..sql import q

        wheres = []
        for v in self.views:
            conds = [f"{q(k)} IS NOT NULL" for k in v.join_keys if events.column(k).null_count]
            if v.where is not None:
                conds.append(f"({v.where})")
            if not conds:
                return 0
            wheres.append(" AND ".join(conds))
        if not wheres:
            return 0
        self.con.register("__mb_raw", events)
        try:
            cond = " OR ".join(f"coalesce({w}, FALSE)" for w in wheres)
            return int(self.con.execute(f"SELECT count(*) FROM __mb_raw WHERE NOT ({cond})").fetchone()[0])
        finally:
            self.con.unregister("__mb_raw")

    def _late(self, t_us: np.ndarray, now: int) -> int:
        """Records no window or ttl of any view can read any more (they change nothing)."""
        if not len(t_us) or not self.views:
            return 0
        late = np.ones(len(t_us), dtype=bool)
        for _, lay in self.layouts:
            late &= (t_us - t_us % lay.hop_us) + lay.reach_us <= now
        for v in self.latest:
            late &= t_us < now - v.ttl_us
        return int(late.sum())

    def _tile_sql(
        self, view: ViewPlan, lay: TileLayout, now: int | str, after: int | None = None, acc: str = "__a", order: bool = True
    ) -> str:
        """One slot's partial tiles; `now` is a number or a SQL name (a macro's parameter)."""
        from ..partials import accumulator_columns
        from ..sql import floor_sql, q

        keys = ", ".join(q(k) for k in view.join_keys)
        accs = accumulator_columns(view, lay, acc)
        tile = floor_sql("__t", lay.hop_us)
        cond = f"{tile} + {lay.reach_us} > {now}"
        if after is not None:
            cond += f" AND __arrival > {after}"
        sql = f"SELECT {keys}, {tile} AS __tile, {', '.join(accs)} FROM {self._events[view.name]} WHERE {cond} GROUP BY ALL"
        return sql + f" ORDER BY {keys}, __tile" if order else sql

    def _macro(self, name: str, make) -> str:
        """A table macro of the applier's connection taking `__now`, made once from make("__now"):
        a micro-batch's query then costs no parsing of its (long) SQL."""
        from ..sql import q

        if name not in self._macros:
            self.con.execute(f"CREATE TEMP MACRO {q(name)}(__now) AS TABLE {make('__now')}")
            self._macros.add(name)
        return q(name)

    def _slot_tables(self, group: list[tuple[ViewPlan, TileLayout]], now: int) -> list[pa.Table]:
        """The partial tiles of each slot of one entity type (keys, __tile, __a0...), ordered by
        entity and tile: one query for all the slots (a query's fixed cost is most of a small
        micro-batch's), cut apart by slot."""
        from ..sql import q

        keys = group[0][0].join_keys
        if any(v.join_keys != keys for v, _ in group):
            return [self.con.sql(self._tile_sql(v, lay, now)).to_arrow_table() for v, lay in group]

        def union(t) -> str:
            selects = [
                f"SELECT {k} AS __slot, * FROM ({self._tile_sql(v, lay, t, acc=f'__s{k}_a', order=False)})"
                for k, (v, lay) in enumerate(group)
            ]
            return " UNION ALL BY NAME ".join(selects) + f" ORDER BY __slot, {', '.join(q(k) for k in keys)}, __tile"

        macro = self._macro(f"__tiles_{group[0][0].entity}", union)
        table = self.con.sql(f"SELECT * FROM {macro}({int(now)})").to_arrow_table()
        bounds = np.searchsorted(table.column("__slot").to_numpy(), np.arange(len(group) + 1))
        out = []
        for k, (_, lay) in enumerate(group):
            names = [f"__a{a.index}" for a in lay.accs]
            part = table.slice(bounds[k], bounds[k + 1] - bounds[k]).select([*keys, "__tile", *(f"__s{k}_a{a.index}" for a in lay.accs)])
            out.append(part.rename_columns([*keys, "__tile", *names]))
        return out

    def _group_items(self, group: list[tuple[ViewPlan, TileLayout]], now: int) -> list:
        """Partial tiles of every slot of one entity type: (entity, expire_at_ms, [block per slot])."""
        per_slot = []
        for (view, lay), table in zip(group, self._slot_tables(group, now), strict=True):
            per_slot.append({ent: (exp, blob) for ent, exp, blob in _blocks(view, lay, table)})
        items = []
        for ent in sorted(set().union(*per_slot)):
            got = [slot.get(ent) for slot in per_slot]
            items.append((ent, max(g[0] for g in got if g is not None), [g[1] if g is not None else b"" for g in got]))
        return items

    def _replays(self, group, items, left, out: Outcome, now: int, guard: Guard | None) -> None:
        """Slots that had part of this batch already (a replay cut at other batch boundaries):
        re-send only the records after the stored offset. Entities left at the same offset (the
        usual case: the previous try's batch end) share one query per slot."""
        tp = out.tp + self.epoch
        todo: dict[tuple[int, int], set[str]] = {}
        for i, j, stored in left:
            if stored < out.hi:  # else: applied before (a re-delivery)
                todo.setdefault((j, stored), set()).add(items[i][0])
        for (j, stored), ents in todo.items():
            view, lay = group[j]
            part = self.con.sql(self._tile_sql(view, lay, now, after=stored)).to_arrow_table()
            again = [(e, exp, [blob]) for e, exp, blob in _blocks(view, lay, part) if e in ents]
            if again:
                self.store.merge_tiles([lay], again, tp=tp, lo=stored + 1, hi=out.hi, now_us=now, guard=guard)

    def _latest_rows(self, view: ViewPlan, now: int) -> list:
        def latest(t) -> str:  # the macro's SQL, made once
            from ..sql import ORD_SHIFT, q

            keys = ", ".join(q(k) for k in view.join_keys)
            vals = [
                f"v{i} := {'epoch_us(' + q('__in_' + f.name) + ')' if f.dtype == 'timestamp' else q('__in_' + f.name)}"
                for i, f in enumerate(view.features)
            ]
            return (
                f"SELECT {keys}, arg_max(struct_pack(t := __t, a := __arrival, {', '.join(vals)}), __t::HUGEINT * {ORD_SHIFT} + __arrival) AS r "
                f"FROM {self._events[view.name]} WHERE __t >= {t} - {view.ttl_us} GROUP BY ALL"
            )

        nkeys = len(view.join_keys)
        table = self.con.sql(f"SELECT * FROM {self._macro(f'__latest_{view.name}', latest)}({int(now)})").to_arrow_table()
        if table.num_rows == 0:
            return []
        import pyarrow.compute as pc

        r = table.column(nkeys)
        keys = [table.column(i).to_pylist() for i in range(nkeys)]
        ents = [esc(v) for v in keys[0]] if nkeys == 1 else [entity_key(vs) for vs in zip(*keys, strict=True)]
        ts, arr = pc.struct_field(r, "t").to_pylist(), pc.struct_field(r, "a").to_pylist()
        vals = list(zip(*(pc.struct_field(r, f"v{i}").to_pylist() for i in range(len(view.features))), strict=True))
        return [(e, t, a, list(v)) for e, t, a, v in zip(ents, ts, arr, vals, strict=True)]

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.con.close()


def _blocks(view: ViewPlan, lay: TileLayout, table: pa.Table) -> list[tuple[str, int, bytes]]:
    """Tile rows (keys, __tile, __a0...), ordered by entity and tile -> per entity (key string,
    expire_at_ms, block of its tiles as `TileLayout.pack_block` makes it)."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n == 0:
        return []
    nkeys = len(view.join_keys)
    keycols = [table.column(i).combine_chunks() for i in range(nkeys)]
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keycols:
        if n > 1:
            change[1:] |= np.asarray(pc.not_equal(k.slice(1), k.slice(0, n - 1)).to_numpy(zero_copy_only=False), dtype=bool)
    bounds = [*np.flatnonzero(change).tolist(), n]
    firsts = [k.take(pa.array(bounds[:-1])).to_pylist() for k in keycols]
    ents = [esc(v) for v in firsts[0]] if nkeys == 1 else [entity_key(vs) for vs in zip(*firsts, strict=True)]
    starts = table.column("__tile").to_numpy()
    reach = lay.reach_us
    if lay.numeric:
        from ..partials import tile_matrix

        mat = tile_matrix(lay, table)
        buf = mat.tobytes()
        stride = mat.shape[1] * 8
        return [
            (ent, (int(starts[hi - 1]) + reach) // 1000 + 1, buf[lo * stride : hi * stride])
            for ent, lo, hi in zip(ents, bounds[:-1], bounds[1:], strict=True)
        ]
    from ..partials import tile_states

    rows = list(zip(*(table.column(f"__a{a.index}").to_pylist() for a in lay.accs), strict=True))
    out = []
    for ent, lo, hi in zip(ents, bounds[:-1], bounds[1:], strict=True):
        tiles = [(int(starts[j]), tile_states(lay, rows[j])) for j in range(lo, hi)]
        out.append((ent, (int(starts[hi - 1]) + reach) // 1000 + 1, lay.pack_block(tiles)))
    return out
