"""OnlineStore: write tiles and latest values to Redis; read a service's features as of now.

    store = OnlineStore(plan)
    store.get(service, [{"user_id": 42, "merchant_id": 7}])   # {"user_id": [42], ..., "count_1h": [3], ...}

Reads are one EVALSHA (see `lua.py`): windowed values are computed in Redis from the
tiles their window covers as of the read time, so they stay exact while events age
out of windows and nobody writes. Layout: `layout.py`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack
import msgspec

from ..plan import FeaturePlan, Plan
from ..timeutil import from_us
from .layout import TileLayout, hash_key, latest_code
from .lua import Group, Slot, outputs, read_script, service_groups

_dec = msgspec.msgpack.Decoder()
_enc = msgspec.msgpack.Encoder()

# Replace one slot's fields in an entity hash (a backfill's absolute write), prune what
# no window can read any more, and keep the key alive until its newest content expires.
# KEYS[1] = hash; ARGV = [slot code, expire_at_ms, now_us, field, value, field, value, ...]
REPLACE_SLOT = """
local key, code = KEYS[1], ARGV[1]
local n = string.len(code)
local fields = redis.call('HKEYS', key)
local dead = {}
for _, f in ipairs(fields) do
  if string.sub(f, 1, n) == code then dead[#dead + 1] = f end
end
if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
if #ARGV > 3 then redis.call('HSET', key, unpack(ARGV, 4)) end
local at = tonumber(ARGV[2])
local cur = redis.call('PEXPIRETIME', key)
if cur >= 0 and cur < at or cur == -1 then redis.call('PEXPIREAT', key, at) end
return #dead
"""


class OnlineError(ValueError):
    """A bad request (unknown service, missing key, too many rows): a 4xx over HTTP."""


def connect(plan: Plan):
    import redis

    password = os.environ.get(plan.project.redis_password_env) if plan.project.redis_password_env else None
    return redis.Redis.from_url(plan.project.redis_url, password=password)


class _Service:
    """A service's read plan: groups, generated script and output layout (built once)."""

    def __init__(self, plan: Plan, name: str, prefix: str):
        self.name = name
        self.groups: list[Group] = service_groups(plan, name)
        self.script = read_script(self.groups)
        self.join_keys = plan.services[name].join_keys
        self.features = [plan.feature(ref) for ref in plan.services[name].features]
        self.outputs = outputs(self.groups)
        # per group: key head, join keys, and the suffixes of its latest-value keys
        self.key_fmt = [(f"{prefix}:{g.entity}:", g.join_keys, [f":{s.code}" for s in g.slots if s.kind == "latest"]) for g in self.groups]
        self.sha: str | None = None
        self.latest_views = {s.code: plan.views[s.view] for g in self.groups for s in g.slots if s.kind == "latest"}


class OnlineStore:
    def __init__(self, plan: Plan, client=None, *, max_rows: int = 1000):
        self.plan = plan
        self.prefix = plan.project.redis_key_prefix
        self.client = client if client is not None else connect(plan)
        self.max_rows = max_rows
        self._services: dict[str, _Service] = {}
        self._replace_sha: str | None = None

    # -- reads ---------------------------------------------------------------------
    def service(self, name: str) -> _Service:
        svc = self._services.get(name)
        if svc is None:
            if name not in self.plan.services:
                from ..errors import did_you_mean

                hint = did_you_mean(name, self.plan.services)
                raise OnlineError(f"no feature service `{name}`" + (f" ({hint})" if hint else ""))
            svc = self._services[name] = _Service(self.plan, name, self.prefix)
        return svc

    def get(self, service: str, entity_rows, *, at_us: int | None = None) -> dict[str, list]:
        """Features of `service` for each entity row, as of `at_us` (default: now), as columns."""
        svc = self.service(service)
        rows = _rows(entity_rows, svc.join_keys)
        n = len(rows)
        if n > self.max_rows:
            raise OnlineError(f"{n} entity rows in one request; the limit is {self.max_rows}")
        t = time.time_ns() // 1000 if at_us is None else at_us
        keys = []
        for row in rows:
            for head, jk, latest in svc.key_fmt:
                key = head + (_esc(row[jk[0]]) if len(jk) == 1 else "|".join(_esc(row[k]) for k in jk))
                keys.append(key)
                for suffix in latest:
                    keys.append(key + suffix)
        raw = self._eval(svc, keys, t, n)
        values = msgpack.unpackb(raw, raw=True) if raw else []
        out: dict[str, list] = {k: [r[k] for r in rows] for k in svc.join_keys}
        width = len(svc.outputs)
        for j, (kind, what) in enumerate(svc.outputs):
            col = values[j::width]
            if kind == "f":
                out[what.name] = _column(what, col)
            else:
                _latest_columns(svc.latest_views[what.code], what, col, t, out)
        return {k: out[k] for k in [*svc.join_keys, *(f.name for f in svc.features)]}

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
    def write_tiles(self, layout: TileLayout, rows, *, batch: int = 1000) -> int:
        """rows: (entity key string, tile_start_us, [accumulator states]), grouped by entity.
        Each entity's tiles of this slot are replaced, so a rerun leaves no stale tile."""
        return self._write_slot(layout.code, ((ent, [(f"{layout.code}:{start}", layout.pack(s)) for start, s in tiles], max(start for start, _ in tiles) + layout.reach_us) for ent, tiles in _by_entity(rows)), layout.entity, batch)

    def write_latest(self, view: str, rows, *, batch: int = 5000) -> int:
        """rows: (entity key string, event_time_us, arrival, [values in the view's feature order]).
        One key per (entity, view), expiring when the value leaves its ttl."""
        v = self.plan.views[view]
        code = latest_code(v)
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for ent, et, arrival, vals in rows:
            pipe.set(f"{hash_key(self.prefix, v.entity, ent)}:{code}", _enc.encode([et, arrival, vals]), pxat=(et + v.ttl_us) // 1000 + 1)
            n += 1
            if n % batch == 0:
                pipe.execute()
        pipe.execute()
        return n

    def _write_slot(self, code: str, items, entity: str, batch: int) -> int:
        if self._replace_sha is None:
            self._replace_sha = self.client.script_load(REPLACE_SLOT)
        pipe = self.client.pipeline(transaction=False)
        n = pending = 0
        for ent, fields, expire_us in items:
            args = [code, expire_us // 1000 + 1, 0]
            for f, v in fields:
                args += [f, v]
            pipe.evalsha(self._replace_sha, 1, hash_key(self.prefix, entity, ent), *args)
            n += len(fields)
            pending += 1
            if pending >= batch:
                pipe.execute()
                pending = 0
        pipe.execute()
        return n


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


def _esc(v) -> str:
    s = str(v)
    return s.replace("\\", "\\\\").replace("|", "\\|") if ("|" in s or "\\" in s) else s


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
        if not isinstance(r, dict):
            raise OnlineError(f"an entity row must be an object of join keys, got {r!r}")
        missing = [k for k in join_keys if k not in r]
        if missing:
            raise OnlineError(f"entity row {r} lacks join key(s) {', '.join(missing)}")
    return rows


def _column(f: FeaturePlan, col: list) -> list:
    dtype = f.dtype
    if f.function in ("last", "first"):
        return [None if v is False else _cast(dtype, _dec.decode(v)) for v in col]
    if dtype == "integer":
        return [None if v is False else int(v) for v in col]
    if dtype == "number":
        return [None if v is False else float(v) for v in col]
    return [None if v is False else _cast(dtype, v.decode() if isinstance(v, bytes) else v) for v in col]


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


def _latest_columns(view, slot: Slot, col: list, t: int, out: dict) -> None:
    order = [f.name for f in view.features]
    idx = [(f, order.index(f.name)) for f in slot.features]
    for f, _ in idx:
        out[f.name] = []
    for blob in col:
        if blob is False:
            for f, _ in idx:
                out[f.name].append(None)
            continue
        et, _arrival, vals = _dec.decode(blob)
        fresh = t - view.ttl_us <= et < t
        for f, i in idx:
            out[f.name].append(_cast(f.dtype, vals[i]) if fresh else None)
