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
from .layout import TileLayout, esc, hash_key, latest_code
from .lua import Group, Slot, outputs, read_script, service_groups

_dec = msgspec.msgpack.Decoder()
_enc = msgspec.msgpack.Encoder()

# Set slot blocks of many entities in one call (a backfill), keeping each key alive until its
# newest content expires: ARGV = [key, expire_at_ms, field, value] * n.
# Keys are built by the caller and not declared (a single Redis; Redis Cluster would group by slot).
BULK_SET_SLOTS = """
for i = 1, #ARGV, 4 do
  local key, at = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -1 or cur < at then redis.call('PEXPIREAT', key, at) end
end
return #ARGV / 4
"""

# Latest-value rows in bulk: ARGV = [key, value, expire_at_ms] * n
BULK_SET_LATEST = """
for i = 1, #ARGV, 3 do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'PXAT', ARGV[i + 2])
end
return #ARGV / 3
"""
BULK = 1000  # entities per bulk call


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
        self.script = read_script(self.groups, prefix)
        self.join_keys = plan.services[name].join_keys
        self.features = [plan.feature(ref) for ref in plan.services[name].features]
        self.outputs = outputs(self.groups)
        self.group_keys = [g.join_keys for g in self.groups]
        self.sha: str | None = None
        self.latest_views = {s.code: plan.views[s.view] for g in self.groups for s in g.slots if s.kind == "latest"}


class OnlineStore:
    def __init__(self, plan: Plan, client=None, *, max_rows: int = 1000):
        self.plan = plan
        self.prefix = plan.project.redis_key_prefix
        self.client = client if client is not None else connect(plan)
        self.max_rows = max_rows
        self._services: dict[str, _Service] = {}
        self._merge_shas: dict[str, str] = {}
        self._latest_sha: str | None = None

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
        ents = []
        for row in rows:
            for jk in svc.group_keys:
                ents.append(esc(row[jk[0]]) if len(jk) == 1 else "|".join(esc(row[k]) for k in jk))
        raw = self._eval(svc, ents, t, n)
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

    def _eval(self, svc: _Service, ents: list[str], t: int, n: int):
        from redis.exceptions import ConnectionError, NoScriptError, TimeoutError

        if svc.sha is None:
            svc.sha = self.client.script_load(svc.script)
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            # straight on a pooled connection: redis-py's command wrapper costs ~15 us a call
            conn.send_command("EVALSHA", svc.sha, 0, t, n, *ents)
            return conn.read_response()
        except NoScriptError:  # the server restarted or flushed its scripts
            svc.sha = self.client.script_load(svc.script)
        except (ConnectionError, TimeoutError):
            conn.disconnect()  # then once more through the client, with its retry policy
        finally:
            pool.release(conn)
        return self.client.evalsha(svc.sha, 0, t, n, *ents)

    # -- writes (absolute: a backfill) -------------------------------------------------
    def write_tiles(self, layout: TileLayout, rows) -> int:
        """rows: (entity key string, tile_start_us, [accumulator states]), grouped by entity and
        ordered by tile start. Each entity's block of this slot is replaced, so a rerun leaves
        no stale tile. Returns the number of tiles written."""
        n = 0

        def items():
            nonlocal n
            for ent, tiles in _by_entity(rows):
                n += len(tiles)
                expire_ms = (tiles[-1][0] + layout.reach_us) // 1000 + 1
                yield hash_key(self.prefix, layout.entity, ent), expire_ms, layout.code, layout.pack_block(tiles)

        self.bulk_set_slots(items())
        return n

    def write_latest(self, view: str, rows) -> int:
        """rows: (entity key string, event_time_us, arrival, [values in the view's feature order]).
        One key per (entity, view), expiring when the value leaves its ttl."""
        v = self.plan.views[view]
        code = latest_code(v)
        head = f"{self.prefix}:{v.entity}:"
        rows = ((f"{head}{ent}:{code}", _enc.encode([et, arrival, vals]), (et + v.ttl_us) // 1000 + 1) for ent, et, arrival, vals in rows)
        return self._bulk(BULK_SET_LATEST, rows)

    def bulk_set_slots(self, items) -> int:
        """items: (hash key, expire_at_ms, slot code, block), any number; sent BULK at a time."""
        return self._bulk(BULK_SET_SLOTS, items)

    def _bulk(self, script: str, items) -> int:
        """Run `script` over items (tuples of its ARGV), BULK items per call."""
        sha = self.client.script_load(script)
        args: list = []
        n = 0
        for item in items:
            args += item
            n += 1
            if n % BULK == 0:
                self.client.evalsha(sha, 0, *args)
                args = []
        if args:
            self.client.evalsha(sha, 0, *args)
        return n

    # -- writes (merged: the stream) -------------------------------------------------
    def merge(self, layout: TileLayout, entity: str, tiles: dict[int, list], *, tp: str, lo: int, hi: int, now_us: int | None = None) -> int:
        """Merge one entity's partial tiles of one slot, from records of partition `tp` with
        offsets [lo, hi]. Returns -1 when applied, else the offset already applied (the records
        up to it must not be sent again). See `merge.py`."""
        blob = layout.pack_block(sorted(tiles.items()))
        expire = (max(tiles) + layout.reach_us) // 1000 + 1
        left = self.merge_many(layout, [(entity, expire, blob)], tp=tp, lo=lo, hi=hi, now_us=now_us)
        return left[0][1] if left else -1

    def merge_many(self, layout: TileLayout, items, *, tp: str, lo: int, hi: int, now_us: int | None = None) -> list[tuple[int, int]]:
        """items: (entity key string, expire_at_ms, block of partial tiles as `pack_block` makes
        it), for records of partition `tp` with offsets [lo, hi]. BULK entities per Lua call.
        Returns [(item index, stored offset)] for the entities left alone because records up to
        `stored` were applied before; all others were merged."""
        from redis.exceptions import NoScriptError

        from .merge import merge_script

        now = time.time_ns() // 1000 if now_us is None else now_us
        head = f"{self.prefix}:{layout.entity}:"
        left: list[tuple[int, int]] = []
        items = list(items)
        for base in range(0, len(items), BULK):
            args: list = [tp, lo, hi, now]
            for ent, expire, blob in items[base : base + BULK]:
                args += (head + ent, expire, blob)
            sha = self._merge_shas.get(layout.code)
            if sha is None:
                sha = self._merge_shas[layout.code] = self.client.script_load(merge_script(layout))
            try:
                got = self.client.evalsha(sha, 0, *args)
            except NoScriptError:
                sha = self._merge_shas[layout.code] = self.client.script_load(merge_script(layout))
                got = self.client.evalsha(sha, 0, *args)
            left += [(base + int(got[k]), int(got[k + 1])) for k in range(0, len(got), 2)]
        return left

    def merge_latest(self, view: str, entity: str, event_time: int, arrival: int, values: list) -> bool:
        """Keep the newest row (by event_time, then arrival) of a latest-value view. Idempotent:
        a row already stored, or an older one, changes nothing. Returns whether it was stored."""
        return self.merge_latest_many(view, [(entity, event_time, arrival, values)]) == 1

    def merge_latest_many(self, view: str, rows) -> int:
        """rows: (entity key string, event_time_us, arrival, [values in the view's feature order]),
        any number; each kept only if newer than the stored row. Returns how many were stored."""
        from redis.exceptions import NoScriptError

        v = self.plan.views[view]
        head, tail = f"{self.prefix}:{v.entity}:", f":{latest_code(v)}"
        args: list = []
        for ent, et, arrival, vals in rows:
            args += (head + ent + tail, et, arrival, _enc.encode([et, arrival, vals]), (et + v.ttl_us) // 1000 + 1)
        stored = 0
        step = 5 * BULK
        for base in range(0, len(args), step):
            chunk = args[base : base + step]
            if self._latest_sha is None:
                self._latest_sha = self.client.script_load(MERGE_LATEST)
            try:
                stored += int(self.client.evalsha(self._latest_sha, 0, *chunk))
            except NoScriptError:
                self._latest_sha = self.client.script_load(MERGE_LATEST)
                stored += int(self.client.evalsha(self._latest_sha, 0, *chunk))
        return stored


# keep the newest row per key: ARGV = [key, event_time, arrival, blob, expire_at_ms] * n
MERGE_LATEST = """
local stored = 0
for i = 1, #ARGV, 5 do
  local key, t, a = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local cur = redis.call('GET', key)
  local newer = true
  if cur then
    local c = cmsgpack.unpack(cur)
    if c[1] > t or (c[1] == t and c[2] >= a) then newer = false end
  end
  if newer then
    redis.call('SET', key, ARGV[i + 3], 'PXAT', ARGV[i + 4])
    stored = stored + 1
  end
end
return stored
"""


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
    """Stored rows [event_time, arrival, values] -> one column per feature; a row outside
    [t - ttl, t) is null. All rows are decoded in one call (wrapped as one msgpack array)."""
    n = len(col)
    header = b"\xdd" + n.to_bytes(4, "big")  # msgpack array32
    rows = _dec.decode(header + b"".join(b"\xc0" if b is False else b for b in col)) if n else []
    lo = t - view.ttl_us
    order = [f.name for f in view.features]
    for f in slot.features:
        i = order.index(f.name)
        cast = _CASTS.get(f.dtype)
        vals = [r[2][i] if r is not None and lo <= r[0] < t else None for r in rows]
        out[f.name] = vals if cast is None else [None if v is None else cast(v) for v in vals]


_CASTS = {"integer": int, "number": float, "boolean": bool, "timestamp": lambda v: from_us(int(v))}
