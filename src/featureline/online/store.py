"""OnlineStore: write tiles and latest values to Redis; read a service's features as of now.

    store = OnlineStore(plan)
    store.get(service, [{"user_id": 42, "merchant_id": 7}])   # {"user_id": [42], ..., "count_1h": [3], ...}

Reads are one EVALSHA (see `lua.py`): windowed values are computed in Redis from the
tiles their window covers as of the read time, so they stay exact while events age
out of windows and nobody writes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack
import msgspec

from ..plan import FeaturePlan, Plan
from ..timeutil import from_us
from .layout import TileLayout, entity_key, latest_key, window_key
from .lua import Slot, read_script, service_slots

_dec = msgspec.msgpack.Decoder()
_enc = msgspec.msgpack.Encoder()


class OnlineError(ValueError):
    """A bad request (unknown service, missing key, wrong key type, too many rows): a 4xx over HTTP."""


def connect(plan: Plan):
    import redis

    password = os.environ.get(plan.project.redis_password_env) if plan.project.redis_password_env else None
    return redis.Redis.from_url(plan.project.redis_url, password=password)


class _Service:
    """A service's read plan: slots, generated script and output layout (built once)."""

    def __init__(self, plan: Plan, name: str):
        self.name = name
        self.slots: list[Slot] = service_slots(plan, name)
        self.script = read_script(self.slots)
        self.join_keys = plan.services[name].join_keys
        self.features = [plan.feature(ref) for ref in plan.services[name].features]
        self.key_types = {}
        for e in plan.entities.values():
            for k, t in zip(e.join_keys, e.key_types, strict=True):
                self.key_types[k] = t
        # per slot: which join keys make its entity key
        self.slot_keys = [s.join_keys for s in self.slots]
        self.sha: str | None = None


class OnlineStore:
    def __init__(self, plan: Plan, client=None, *, max_rows: int = 1000):
        self.plan = plan
        self.prefix = plan.project.redis_key_prefix
        self.client = client if client is not None else connect(plan)
        self.max_rows = max_rows
        self._services: dict[str, _Service] = {}

    # -- reads ---------------------------------------------------------------------
    def service(self, name: str) -> _Service:
        svc = self._services.get(name)
        if svc is None:
            if name not in self.plan.services:
                from ..errors import did_you_mean

                hint = did_you_mean(name, self.plan.services)
                raise OnlineError(f"no feature service `{name}`" + (f" ({hint})" if hint else ""))
            svc = self._services[name] = _Service(self.plan, name)
        return svc

    def get(self, service: str, entity_rows, *, at_us: int | None = None) -> dict[str, list]:
        """Features of `service` for each entity row, as of `at_us` (default: now), as columns."""
        svc = self.service(service)
        rows = _rows(entity_rows, svc.join_keys)
        if len(rows) > self.max_rows:
            raise OnlineError(f"{len(rows)} entity rows in one request; the limit is {self.max_rows}")
        t = time.time_ns() // 1000 if at_us is None else at_us
        keys = []
        for row in rows:
            for slot, jk in zip(svc.slots, svc.slot_keys, strict=True):
                ent = entity_key(row[k] for k in jk)
                if slot.kind == "latest":
                    keys.append(latest_key(self.prefix, slot.view, ent))
                else:
                    keys.append(window_key(self.prefix, slot.view, slot.hop_us, ent))
        raw = self._eval(svc, keys, t, len(rows))
        # Lua's cmsgpack sends every string as msgpack str; ours may be binary (packed values), so raw
        values = msgpack.unpackb(raw, raw=True) if raw else []
        out: dict[str, list] = {k: [r[k] for r in rows] for k in svc.join_keys}
        cols: dict[str, list] = {f.name: [] for f in svc.features}
        i = 0
        for _ in rows:
            for slot in svc.slots:
                if slot.kind == "latest":
                    _latest(self.plan, slot, values[i], t, cols)
                    i += 1
                    continue
                for f in slot.features:
                    cols[f.name].append(_typed(f, values[i]))
                    i += 1
        for f in svc.features:
            out[f.name] = cols[f.name]
        return out

    def get_arrow(self, service: str, entity_rows, *, at_us: int | None = None):
        import pyarrow as pa

        return pa.table(self.get(service, entity_rows, at_us=at_us))

    def _eval(self, svc: _Service, keys: list[str], t: int, n: int):
        from redis.exceptions import NoScriptError

        if svc.sha is None:
            svc.sha = self.client.script_load(svc.script)
        try:
            return self.client.evalsha(svc.sha, len(keys), *keys, t, n)
        except NoScriptError:  # the server restarted or flushed its scripts
            svc.sha = self.client.script_load(svc.script)
            return self.client.evalsha(svc.sha, len(keys), *keys, t, n)

    # -- writes (absolute: a backfill) -------------------------------------------------
    def write_tiles(self, layout: TileLayout, rows, *, replace_entities: bool = True, batch: int = 2000) -> int:
        """rows: (entity key string, tile_start_us, [accumulator states]) grouped by entity.
        Each entity's hash is replaced (DEL + HSET) so a rerun leaves no stale tile."""
        pipe = self.client.pipeline(transaction=False)
        n = pending = 0
        cur_ent, fields, newest = None, [], 0

        def flush_entity():
            nonlocal pending
            if cur_ent is None:
                return
            key = window_key(self.prefix, layout.view, layout.hop_us, cur_ent)
            if replace_entities:
                pipe.delete(key)
            pipe.hset(key, mapping=dict(fields))
            pipe.pexpireat(key, (newest + layout.reach_us) // 1000 + 1)
            pending += 1

        for ent, start, accs in rows:
            if ent != cur_ent:
                flush_entity()
                cur_ent, fields, newest = ent, [], 0
                if pending >= batch:
                    pipe.execute()
                    pending = 0
            fields.append((str(start), _enc.encode(accs)))
            newest = max(newest, start)
            n += 1
        flush_entity()
        pipe.execute()
        return n

    def write_latest(self, view: str, rows, *, batch: int = 5000) -> int:
        """rows: (entity key string, event_time_us, arrival, [values in the view's feature order])."""
        ttl = self.plan.views[view].ttl_us
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for ent, et, arrival, vals in rows:
            pipe.set(latest_key(self.prefix, view, ent), _enc.encode([et, arrival, vals]), pxat=(et + ttl) // 1000 + 1)
            n += 1
            if n % batch == 0:
                pipe.execute()
        pipe.execute()
        return n


def _rows(entity_rows, join_keys) -> list[dict]:
    if isinstance(entity_rows, dict):
        cols = entity_rows
        lens = {len(v) for v in cols.values()}
        if len(lens) > 1:
            raise OnlineError("entity columns have different lengths")
        n = lens.pop() if lens else 0
        rows = [{k: cols[k][i] for k in cols} for i in range(n)]
    else:
        rows = list(entity_rows)
    for r in rows:
        missing = [k for k in join_keys if k not in r]
        if missing:
            raise OnlineError(f"entity row {r} lacks join key(s) {', '.join(missing)}")
    return rows


def _typed(f: FeaturePlan, v: Any) -> Any:
    if v is False or v is None:
        return None
    if f.function in ("last", "first"):
        v = _dec.decode(v)
    elif isinstance(v, bytes):
        v = v.decode("utf-8")  # min/max of strings
    return _cast(f.dtype, v)


def _cast(dtype: str, v: Any) -> Any:
    if v is None:
        return None
    if dtype == "integer":
        return int(v)
    if dtype == "number":
        return float(v)
    if dtype == "boolean":
        return bool(v)
    if dtype == "timestamp":
        return from_us(int(v))
    return v


def _latest(plan: Plan, slot: Slot, blob: Any, t: int, cols: dict) -> None:
    view = plan.views[slot.view]
    if blob is False or blob is None:
        for f in slot.features:
            cols[f.name].append(None)
        return
    et, _arrival, vals = _dec.decode(blob)
    fresh = t - view.ttl_us <= et < t
    order = [f.name for f in view.features]
    for f in slot.features:
        cols[f.name].append(_cast(f.dtype, vals[order.index(f.name)]) if fresh else None)
