"""OnlineStore: write tiles and latest values to Redis; read a service's features as of now.

    store = OnlineStore(plan)
    store.get(service, [{"user_id": 42, "merchant_id": 7}])   # {"user_id": [42], ..., "count_1h": [3], ...}

Reads are plain commands pipelined in one round trip, fetching the tiles and latest rows the
service's features need; the client computes each window from the tiles it covers as of the
read time (`read.py`), so values stay exact while events age out of windows and nobody writes.
Layout: `layout.py`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import msgspec
import redis.exceptions as rx

from ..aggregations import FUNCTIONS
from ..errors import FeaturelineError
from ..plan import FeaturePlan, Plan
from ..timeutil import from_us
from .backend import EntityWrites, OnlineBackend
from .layout import OFFSETS, TileLayout, covers_entity, entity_key, esc, key_head, latest_code
from .pipe import ask, exchange, pack, take_over
from .read import ServiceRead

_dec = msgspec.msgpack.Decoder()
_enc = msgspec.msgpack.Encoder()

# Backfill writes (absolute) are plain commands, pre-encoded in bulk and pipelined on one
# connection; no Lua when they replace whole values (a script's redis.call costs Redis more
# than the command it runs): one SET per entity of its value (value.py), all slots at once:
#   SET <prefix:{entity:key}> <sections> PXAT <expire_ms of the longest>
# A successful SET replies +OK, so the replies are counted and checked for errors ('-'), not
# parsed one by one. Keys are not grouped by hash slot (a single Redis, not Cluster).
SET_REPLY = len(b"+OK\r\n")
PUT_REPLY = len(b":1\r\n")  # value.PUT of one key: 0 or 1
PIPELINE_BYTES = 1 << 20  # bytes of commands per write to the socket
QUEUED_CHUNKS = 64  # encoded chunks waiting for the sender, at most
BULK = 1000  # entities per bulk call


class OnlineError(FeaturelineError, ValueError):
    """A bad request (unknown service, missing key, too many rows): a 4xx over HTTP."""

    exit_code = 2


def connect(plan: Plan):
    import redis

    from ..secrets import redis_params

    url, password = redis_params(plan.project)  # the password is read now, from this process's environment
    t = plan.project.redis_timeout_s  # explicit: a stalled Redis never hangs a caller
    return redis.Redis.from_url(url, password=password, socket_timeout=t, socket_connect_timeout=t)


def connect_async(plan: Plan, *, timeout: float, max_connections: int = 64) -> AsyncRedis:
    """A `redis.asyncio` client for reads from an event loop; every call within `timeout`."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ..secrets import redis_params

    url, password = redis_params(plan.project)  # read now, from this process's environment

    def pool(socket_timeout):
        return ConnectionPool.from_url(
            url,
            password=password,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )

    # the read path's connections carry no socket timeout: `call` bounds the whole call instead
    # (redis-py would add an asyncio.wait_for, i.e. a task, to every send)
    return AsyncRedis(Redis(connection_pool=pool(timeout)), pool(None), max_connections, timeout)


class AsyncRedis:
    """A redis.asyncio client (`client`, for any command) and `pipelined`, the read path's
    commands on connections of its own: a LIFO of idle ones, at most `size` in use, without
    redis-py's pool checks on every call (a lock and a probe read: measured ~2x the cost of
    the read itself). A call takes at most `timeout`: waiting for a connection, connecting,
    sending and reading (TimeoutError)."""

    def __init__(self, client, pool, size: int, timeout: float):
        self.client = client
        self.pool = pool
        self.timeout = timeout
        self.idle: list = []  # pipe.Replies
        self.slots = asyncio.Semaphore(size)

    async def call(self, *args):
        """One command's reply."""
        return (await self.pipelined(pack(*args), 1))[0]

    async def pipelined(self, packed: bytes, count: int) -> list:
        """The replies of `count` commands sent as one buffer (RESP, packed by the caller)."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        if self.slots.locked():  # `size` calls in flight: wait for one, within the deadline
            async with asyncio.timeout_at(deadline):
                await self.slots.acquire()
        else:
            await self.slots.acquire()
        try:
            conn = self.idle.pop() if self.idle else await self._open(deadline)
            try:
                replies = await ask(conn, packed, count, deadline)
            except rx.ConnectionError:  # a dead connection: after a restart the idle ones are dead too
                conn.close()
                for idle in self.idle:
                    idle.close()
                self.idle.clear()
                raise
            except BaseException:  # an error reply, a timeout or a cancellation mid-reply: start afresh
                conn.close()
                raise
            self.idle.append(conn)
            return replies
        finally:
            self.slots.release()

    async def _open(self, deadline: float):
        conn = self.pool.make_connection()
        async with asyncio.timeout_at(deadline):
            await conn.connect()
        return take_over(conn)

    async def aclose(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
        await self.pool.disconnect()


class _Service:
    """A service's read plan: groups, keys and output layout (built once)."""

    def __init__(self, plan: Plan, name: str, prefix: str):
        self.name = name
        self.read = ServiceRead(plan, name, prefix)
        self.groups = self.read.groups
        self.join_keys = plan.services[name].join_keys
        self.features = [plan.feature(ref) for ref in plan.services[name].features]
        self.outputs = self.read.outputs
        self.group_keys = [g.join_keys for g in self.groups]
        self.names = [*self.join_keys, *(f.name for f in self.features)]  # the answer's columns
        # per output: finish(computed column, t, answer) puts its feature column(s) in the answer
        self.finish: list = []
        for kind, what in self.outputs:
            if kind == "f":
                self.finish.append(_feature_column(what))
            else:
                view = plan.views[what.view]
                order = [f.name for f in view.features]
                feats = [(f.name, order.index(f.name), _CASTS.get(f.dtype)) for f in what.features]
                self.finish.append(functools.partial(_latest_columns, view.ttl_us, feats))


class OnlineStore(OnlineBackend):
    """The online store on Redis (`backend.OnlineBackend`; layout: `layout.py`)."""

    def __init__(self, plan: Plan, client=None, *, max_rows: int = 1000):
        self.plan = plan
        self.prefix = plan.project.redis_key_prefix
        self.client = client if client is not None else connect(plan)
        self.max_rows = max_rows
        self._services: dict[str, _Service] = {}
        self._merge_shas: dict[str, str] = {}  # generated write scripts by name -> SHA
        self._idle: list = []  # the read path's idle connections (made by the client's pool, used by `pipe.exchange`)
        self.outage = None  # a featureline.outage.Outage: guarded writes wait out Redis outages (the stream sets it)

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
        svc, rows, ents, t = self._prepare(service, entity_rows, at_us)
        return self._finish(svc, rows, self._fetch(svc, ents), t)

    async def get_async(self, aredis: AsyncRedis, service: str, entity_rows, *, at_us: int | None = None) -> dict[str, list]:
        """`get` through a `redis.asyncio` client: the event loop runs on while Redis answers."""
        svc, rows, ents, t = self._prepare(service, entity_rows, at_us)
        return self._finish(svc, rows, await self._fetch_async(aredis, svc, ents), t)

    def _prepare(self, service: str, entity_rows, at_us: int | None):
        svc = self.service(service)
        rows = _rows(entity_rows, svc.join_keys)
        n = len(rows)
        if n > self.max_rows:
            raise OnlineError(f"{n} entity rows in one request; the limit is {self.max_rows}")
        t = time.time_ns() // 1000 if at_us is None else at_us
        ents = []
        for row in rows:
            for jk in svc.group_keys:
                ents.append(esc(row[jk[0]]) if len(jk) == 1 else entity_key(row[k] for k in jk))
        return svc, rows, ents, t

    def _finish(self, svc: _Service, rows: list[dict], reply, t: int) -> dict[str, list]:
        out: dict[str, list] = {k: [r[k] for r in rows] for k in svc.join_keys}
        for fin, col in zip(svc.finish, svc.read.columns(reply, len(rows), t), strict=True):
            fin(col, t, out)
        return {k: out[k] for k in svc.names}

    def _fetch(self, svc: _Service, ents: list[str]) -> list:
        """The read's replies: its commands pipelined on a read connection of this store's own
        (`pipe.py`), once more on a fresh one if that one failed (Redis restarted)."""
        buf, count = svc.read.commands(ents)
        if not count:
            return []
        for attempt in (0, 1):
            conn = self._idle.pop() if self._idle else self.client.connection_pool.make_connection()
            try:
                replies = exchange(conn, buf, count)
            except (rx.ConnectionError, rx.TimeoutError):
                conn.disconnect()
                for idle in self._idle:  # after a restart every idle connection is dead too
                    idle.disconnect()
                self._idle.clear()
                if attempt:
                    raise
                continue
            except BaseException:
                conn.disconnect()  # an error reply or an interruption mid-reply: start afresh
                raise
            self._idle.append(conn)
            return replies
        raise AssertionError("unreachable")

    async def _fetch_async(self, aredis: AsyncRedis, svc: _Service, ents: list[str]) -> list:
        buf, count = svc.read.commands(ents)
        if not count:
            return []
        try:
            return await aredis.pipelined(buf, count)
        except rx.ConnectionError:
            pass  # a stale connection (Redis restarted): once more, on a new one
        return await aredis.pipelined(buf, count)

    # -- writes (absolute: a backfill) -------------------------------------------------
    def write_slots(self, batches) -> int:
        """`backend.EntityWrites` (or functions returning one), encoded by the sender thread
        while the caller makes the next batch: per entity one SET of its whole value PXAT its
        longest section's expiry when the batch's slots are all of its entity type's
        (`layout.covers_entity`: the backfill of every view), else one call of `value.PUT`
        replacing those sections and keeping the others."""
        count = [0]

        def chunks():
            for b in batches:
                yield lambda b=b: self._entity_chunks(b() if callable(b) else b, count)

        self.send_commands(chunks())
        return count[0]

    def _entity_chunks(self, w: EntityWrites, count: list[int]):
        from .value import PUT, assemble

        got = assemble(w.writes)
        if got is None:
            return ()
        ents, expire, values = got
        count[0] += sum(len(s.ents) for s in w.writes)
        key = _join([key_head(self.prefix, w.entity).encode(), ents, b"}"])
        if covers_entity(self.plan, w.entity, w.codes):
            return _chunks(resp([[b"SET", key, values, b"PXAT", expire]]), 1, SET_REPLY)
        sha = self.client.script_load(PUT).encode()  # loaded again each batch: Redis may have restarted
        now = b"%d" % (time.time_ns() // 1_000_000)
        return _chunks(resp([[b"EVALSHA", sha, b"1", key, now, "".join(w.codes).encode(), values]]), 1, PUT_REPLY)

    def reset_views(self, views) -> int:
        from .reset import reset_views

        return reset_views(self, self.plan, views)

    def send_commands(self, chunks) -> None:
        """chunks: iterable of (buffer of pre-encoded commands, how many, total bytes of their
        replies when all succeed[, a list the reply bytes are appended to]), or of functions
        returning such chunks (encoded by the sender thread: pyarrow releases the GIL, so the
        caller's next DuckDB query runs meanwhile). A thread sends them pipelined on one pooled
        connection while the caller's iterator makes the next ones, keeping one chunk in flight;
        raises the first error Redis replies (the commands sent before it ran)."""
        import queue
        import threading

        pool = self.client.connection_pool
        conn = pool.get_connection()
        sock = getattr(conn, "_sock", None)
        todo: queue.Queue = queue.Queue(maxsize=QUEUED_CHUNKS)
        errors: list[BaseException] = []

        def read(ncmd: int, nreply: int, sink: list | None) -> None:
            if sock is None:  # not a socket redis-py lets us use: it reads the replies
                buf = b"".join(_reply_bytes(conn.read_response()) for _ in range(ncmd))
            else:
                buf = _read_replies(sock, nreply)
            if sink is not None:
                sink.append(buf)

        def sender() -> None:
            inflight: list[tuple] = []
            while True:
                item = todo.get()
                if item is None:
                    break
                if errors:
                    continue  # drain: the caller stops at its next chunk
                try:
                    for chunk in item() if callable(item) else (item,):
                        if sock is None:
                            conn.send_packed_command(bytes(chunk[0]), check_health=False)
                        else:
                            sock.sendall(chunk[0])
                        inflight.append((chunk[1], chunk[2], chunk[3] if len(chunk) > 3 else None))
                        if len(inflight) > 1:
                            read(*inflight.pop(0))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    errors.append(e)
            try:
                for pending in inflight if not errors else ():
                    read(*pending)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        th = threading.Thread(target=sender, name="featureline-online-writer", daemon=True)
        th.start()
        try:
            for item in chunks:
                if errors:
                    break
                todo.put(item)
        finally:
            todo.put(None)
            th.join()
            if errors:
                conn.disconnect()  # replies may be left unread
            pool.release(conn)
        if errors:
            raise errors[0]

    # -- writes (merged: the stream) -------------------------------------------------
    def merge_tiles(
        self, layouts: list[TileLayout], items, *, tp: str, lo: int, hi: int, now_us: int | None = None, guard=None
    ) -> list[tuple[int, int, int]]:
        """Merge partial tiles of several slots (layouts of one entity) for many entities, from
        records of partition `tp` with offsets [lo, hi]. items: (entity key string, expire_at_ms,
        [block per layout, b"" for none]), blocks as `TileLayout.pack_block` makes them; BULK
        entities per Lua call. Returns [(item index, layout index, stored offset)] for the slots
        left alone because records up to `stored` were applied before; all others were merged.
        `guard`: a `state.Guard` (the stream's writes: each call checks the store's state first)."""
        from .merge import merge_script

        now = time.time_ns() // 1000 if now_us is None else now_us
        head = key_head(self.prefix, layouts[0].entity)
        name = "|".join(lay.code for lay in layouts) + ("|g" if guard is not None else "")
        left: list[tuple[int, int, int]] = []
        items = list(items)
        for base in range(0, len(items), BULK):
            args: list = [tp, lo, hi, now]
            keys: list[str] = []
            for ent, expire, blobs in items[base : base + BULK]:
                args += (expire, *blobs)
                keys += (f"{head}{ent}}}:{OFFSETS}", f"{head}{ent}}}")
            got = self._script(name, lambda: merge_script(layouts, guarded=guard is not None), args, guard, keys)
            left += [(base + int(got[k]), int(got[k + 1]), int(got[k + 2])) for k in range(0, len(got), 3)]
        return left

    def _script(self, name: str, make, args: list, guard=None, keys: tuple = ()):
        """EVALSHA of a generated script (loaded once; again when Redis forgot it). A guarded call
        (the stream's writes, `state.Guard`) takes its guard arguments once and, while Redis is
        unreachable, is retried with the same ones with backoff when `self.outage` is set."""
        from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

        if guard is not None:
            args = [*guard.take(), *args]
            keys = (guard.key, *keys)
        while True:
            t_try = time.monotonic()
            try:
                sha = self._merge_shas.get(name)
                if sha is None:
                    sha = self._merge_shas[name] = self.client.script_load(make())
                try:
                    got = self.client.evalsha(sha, len(keys), *keys, *args)
                except NoScriptError:  # Redis restarted or flushed its scripts
                    sha = self._merge_shas[name] = self.client.script_load(make())
                    got = self.client.evalsha(sha, len(keys), *keys, *args)
            except ResponseError as e:
                err = guard.error(e) if guard is not None else None
                if err is not None:
                    raise err from None
                raise
            except (ConnectionError, TimeoutError) as e:
                if self.outage is None or guard is None:
                    raise
                time.sleep(self.outage.failed(e, since=t_try))  # same guard arguments: a try that ran is not counted twice
                continue
            if self.outage is not None:
                self.outage.ok()
            return got

    # -- metadata (state.py) ------------------------------------------------------------------
    def read_state(self):
        from .state import read_state

        return read_state(self.client, self.prefix)

    async def read_state_async(self, aredis: AsyncRedis):
        from .state import marker_key, state_from

        return state_from(await aredis.client.hgetall(marker_key(self.prefix)))

    def begin_backfill(self) -> str:
        from .state import begin_backfill

        return begin_backfill(self.client, self.prefix)

    def finish_backfill(self, store_id: str) -> None:
        from .state import finish_backfill

        finish_backfill(self.client, self.prefix, store_id)

    def ensure_for_stream(self, *, has_history: bool, group: str):
        from .state import ensure_for_stream

        return ensure_for_stream(self.client, self.prefix, has_history=has_history, group=group)

    def guard(self, store_id: str, group: str, topic: str, partition: int):
        from .state import Guard

        st = self.retrying(self.read_state)
        start = st.seq(group, topic, partition) if st is not None else 0
        return Guard(self.client, self.prefix, store_id, group, topic, partition, start)

    def record_boundary(self, plan, views, end_us: int) -> list[str]:
        from .state import record_boundary

        return record_boundary(self, plan, views, end_us)

    def read_boundaries(self, plan, sources):
        from .state import read_boundaries

        return read_boundaries(self, plan, sources)

    def get_record(self, name: str) -> str | None:
        raw = self.client.get(f"{self.prefix}:_meta:{name}")
        return None if raw is None else raw.decode()

    def set_record(self, name: str, value: str) -> None:
        self.client.set(f"{self.prefix}:_meta:{name}", value)

    def retrying(self, fn):
        """fn() (a read, or a write safe to repeat), waiting out Redis outages when `self.outage` is set."""
        from redis.exceptions import ConnectionError, TimeoutError

        if self.outage is None:
            return fn()
        from ..outage import retrying

        return retrying(fn, self.outage, (ConnectionError, TimeoutError))

    def claim(self, contract: str, field: str, bucket: int, expire_ms: int, values: bytes, offsets: bytes, tp: str, guard=None) -> list:
        """The stream's uniqueness claims (`claims.py`); `guard` as in `merge_tiles`."""
        from .claims import claim_key, claim_script

        keys, args = (claim_key(self.prefix, contract, field, bucket),), [expire_ms, values, offsets, tp]
        if guard is None:
            return self._script("claim", lambda: claim_script(False), args, None, keys)
        return self._script("claim|g", lambda: claim_script(True), args, guard, keys)

    def mark_applied(self, guard, next_offset: int) -> None:
        """A micro-batch of guard's partition is in Redis in full: the stream resumes after it."""
        from .state import MARK_APPLIED

        self._script("mark_applied", lambda: MARK_APPLIED, [guard.applied_field, next_offset], guard)

    def merge_latest(self, view: str, rows, *, guard=None, now_us: int | None = None) -> int:
        """rows: (entity key string, event_time_us, arrival, [values in the view's feature order]),
        any number; each kept only if newer than the stored row. Returns how many were stored.
        `guard`: as in `merge_tiles`."""
        v = self.plan.views[view]
        head, code = key_head(self.prefix, v.entity), latest_code(v)
        now_ms = (time.time_ns() // 1000 if now_us is None else now_us) // 1000
        keys: list[str] = []
        args: list = []
        for ent, et, arrival, vals in rows:
            keys.append(head + ent + "}")
            args += (et, arrival, _enc.encode([et, arrival, vals]), (et + v.ttl_us) // 1000 + 1)
        stored = 0
        guarded = guard is not None
        for base in range(0, len(keys), BULK):
            chunk = [code, now_ms, *args[4 * base : 4 * (base + BULK)]]
            name = "latest|g" if guarded else "latest"
            stored += int(self._script(name, lambda: merge_latest_script(guarded), chunk, guard, keys[base : base + BULK]))
        return stored


def merge_latest_script(guarded: bool) -> str:
    """Keep the newest row per entity, as its section of the entity's value (`value.py`). KEYS =
    [the marker when guarded, then one value key per row]; ARGV = [the guard's arguments when
    guarded, the slot's code, now_ms, then per row: event_time, arrival, row, expire_at_ms]."""
    from .state import GUARD_ARGS, guard_lua
    from .value import LUA

    g, gk = (GUARD_ARGS, 1) if guarded else (0, 0)
    head = "\n".join(guard_lua()) if guarded else ""
    return (
        head
        + LUA
        + f"""
local code, now_ms = ARGV[{g + 1}], tonumber(ARGV[{g + 2}])
local stored = 0
for r = 1, #KEYS - {gk} do
  local key, i = KEYS[r + {gk}], {g + 2} + 4 * r - 3
  local t, a = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local secs = fl_parse(redis.call('GET', key))
  local at = fl_find(secs, code)
  local newer = true
  if at then
    local c = cmsgpack.unpack(secs[at][3])
    if c[1] > t or (c[1] == t and c[2] >= a) then newer = false end
  end
  if newer then
    local exp = tonumber(ARGV[i + 3])
    if at then secs[at][2] = exp; secs[at][3] = ARGV[i + 2] else secs[#secs + 1] = {{code, exp, ARGV[i + 2]}} end
    fl_write(key, secs, now_ms)
    stored = stored + 1
  end
end
return stored
"""
    )


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


def _feature_column(f: FeaturePlan):
    """finish(computed column, t, answer) for a windowed feature: its values from the computed
    ones (floats, msgpack bytes, None)."""
    dtype, name = f.dtype, f.name
    msgpack_value = FUNCTIONS[f.function].msgpack_value
    number = {"integer": int, "number": float}.get(dtype)
    elem = dtype[5:-1] if FUNCTIONS[f.function].list_value else None  # list<T>: T

    def finish(col: list, t: int, out: dict) -> None:
        if elem is not None:
            out[name] = [None if v is None else [_cast(elem, _dec.decode(x)) for x in v] for v in col]
        elif msgpack_value:
            out[name] = [None if v is None else _cast(dtype, _dec.decode(v)) for v in col]
        elif number is not None:
            out[name] = [None if v is None else number(v) for v in col]
        else:
            out[name] = [None if v is None else _cast(dtype, v.decode() if isinstance(v, bytes) else v) for v in col]

    return finish


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


def _latest_columns(ttl: int, feats: list, col: list, t: int, out: dict) -> None:
    """Stored rows [event_time, arrival, values] -> one column per feature (`feats`: its name,
    position and cast); a row outside [t - ttl, t) is null. All rows are decoded in one call
    (wrapped as one msgpack array)."""
    n = len(col)
    header = b"\xdd" + n.to_bytes(4, "big")  # msgpack array32
    rows = _dec.decode(header + b"".join(b"\xc0" if b is None else b for b in col)) if n else []
    lo = t - ttl
    for name, i, cast in feats:
        vals = [r[2][i] if r is not None and lo <= r[0] < t else None for r in rows]
        out[name] = vals if cast is None else [None if v is None else cast(v) for v in vals]


_CASTS = {"integer": int, "number": float, "boolean": bool, "timestamp": lambda v: from_us(int(v))}


# -- pre-encoded commands (backfill writes) ---------------------------------------------


def _read_replies(sock, nbytes: int) -> bytearray:
    """Read the replies of commands that take `nbytes` when all succeed; raise the first error
    reply. (An error reply is longer than any success reply, so `nbytes` always arrive.)"""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        k = sock.recv_into(view[got:])
        if not k:
            from redis.exceptions import ConnectionError

            raise ConnectionError("Redis closed the connection during a backfill write")
        got += k
    at = buf.find(b"-")
    if at >= 0:
        from redis.exceptions import ResponseError

        end = buf.find(b"\r\n", at)
        raise ResponseError(bytes(buf[at + 1 : end if end >= 0 else len(buf)]).decode(errors="replace"))
    return buf


def _reply_bytes(r) -> bytes:
    return b":%d\r\n" % r if isinstance(r, int) else b"+OK\r\n"


def _as_binary(x):
    import numpy as np
    import pyarrow as pa

    if isinstance(x, np.ndarray):
        x = pa.array(x)
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if pa.types.is_integer(x.type):
        x = x.cast(pa.string())
    return x if x.type == pa.large_binary() else x.cast(pa.large_binary())


def _join(parts):
    """Element-wise concatenation of bytes constants and arrays -> large_binary array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    args = [pa.scalar(p, pa.large_binary()) if isinstance(p, bytes) else _as_binary(p) for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar(b"", pa.large_binary()))


def resp(commands: list[list]) -> Any:
    """Per row, the RESP encoding of `commands` (each a list of arguments: bytes, the same for
    every row, or an array of one value per row: strings, binary or integers) as one
    large_binary array; its data buffer is every row's commands back to back."""
    import pyarrow.compute as pc

    parts: list = []
    const = bytearray()
    for cmd in commands:
        const += b"*%d\r\n" % len(cmd)
        for arg in cmd:
            if isinstance(arg, bytes):
                const += b"$%d\r\n%s\r\n" % (len(arg), arg)
                continue
            a = _as_binary(arg)
            parts += [bytes(const + b"$"), pc.binary_length(a), b"\r\n", a]
            const = bytearray(b"\r\n")
    parts.append(bytes(const))
    return _join(parts)


def _chunks(body, per_row: int, reply_per_row: int):
    """A `resp` array -> (slices of its data of about PIPELINE_BYTES, commands, reply bytes)."""
    import numpy as np

    n = len(body)
    if n == 0:
        return
    offs = np.frombuffer(body.buffers()[1], dtype=np.int64, count=n + 1, offset=body.offset * 8)
    data = memoryview(body.buffers()[2])
    cuts = np.searchsorted(offs, np.arange(offs[0] + PIPELINE_BYTES, offs[-1], PIPELINE_BYTES))
    cuts = np.unique(np.concatenate([[0], np.minimum(cuts, n), [n]])).tolist()
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        yield data[offs[lo] : offs[hi]], (hi - lo) * per_row, (hi - lo) * reply_per_row
