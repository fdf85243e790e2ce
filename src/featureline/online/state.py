"""What the online store knows of its own state, so that a store that lost its data is never
mistaken for one that holds it.

One hash per key prefix, `<prefix>:_meta:store`:

    id                       this store's life: set by `backfill --to online` (or by a stream
                             that starts on a new store), gone when Redis loses its data
    state                    building (a backfill is writing) | ready
    format                   the key layout the data was written in (`layout.FORMAT`); a store
                             of another format (an older featureline's) is refused by the
                             stream and by /ready until a backfill rewrites it
    seq:<group>:<tp>         the number of stream writes for partition tp that Redis holds
    applied:<group>:<tp>     the offset after the last micro-batch of tp applied in full

and per stream source `<prefix>:_meta:stream_from:<source>`: the boundary of the last backfill
to online (the stream applies only events at or after it) and its epoch.

Every stream write (merges, latest values, uniqueness claims, the per-batch `applied` mark) is a
Lua script that first checks, atomically with its effect, that `id` is the one the stream
started with and that `seq` is the number the stream expects (then counts itself). So a write
can never land on a store that lost its data (Redis restarted empty, a flush: `id` is gone), nor
on one that went back in time (restored from an older AOF or snapshot, a failover to a lagging
replica: `seq` is behind): the stream stops, or restarts from what Redis holds (`applied`).
A write seen twice (a retry after a timeout whose first try ran) finds `seq` one ahead and
changes nothing new: the merges are idempotent per key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ..errors import FeaturelineError
from .layout import FORMAT

MARKER = "_meta:store"
BOUNDARY = "_meta:stream_from:"  # <prefix>:_meta:stream_from:<source> = {"at": boundary us, "epoch": id of the backfill}


class StoreStateError(FeaturelineError, RuntimeError):
    """The online store is not in the state the caller's writes need (one-line message)."""


class StoreLost(StoreStateError):
    """Redis holds none of the data featureline wrote (restarted empty, flushed, a new replica)."""


class StoreBehind(StoreStateError):
    """Redis lost its last writes (went back in time): resume from what it holds."""


class StoreRebuilt(StoreStateError):
    """A backfill rebuilt the store while the stream ran: restart the stream."""


class StoreBusy(StoreStateError):
    """A backfill is writing the store (or died while writing it)."""


def marker_key(prefix: str) -> str:
    return f"{prefix}:{MARKER}"


def tp_field(kind: str, group: str, topic: str, partition: int) -> str:
    return f"{kind}:{group}:{topic}:{partition}"


@dataclass
class StoreState:
    id: str | None
    state: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def applied(self, group: str, partitions) -> dict[tuple[str, int], int]:
        """Per (topic, partition): the offset after the last batch applied in full (those known)."""
        out = {}
        for t, p in partitions:
            v = self.fields.get(tp_field("applied", group, t, p))
            if v is not None:
                out[(t, p)] = int(v)
        return out

    @property
    def format(self) -> str | None:
        return self.fields.get("format")

    def seq(self, group: str, topic: str, partition: int) -> int:
        return int(self.fields.get(tp_field("seq", group, topic, partition), 0))


def read_state(client, prefix: str) -> StoreState | None:
    return state_from(client.hgetall(marker_key(prefix)))


def state_from(raw: dict) -> StoreState | None:
    """The marker hash's fields (HGETALL's reply, sync or async client) -> its state."""
    if not raw:
        return None
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
    return StoreState(d.pop("id", None), d.pop("state", None), d)


def where(client) -> str:
    """host:port of the client's Redis, for messages (never its URL: it may hold a password)."""
    kw = client.connection_pool.connection_kwargs
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}" if "path" not in kw else str(kw["path"])


def begin_backfill(client, prefix: str) -> str:
    """A backfill starts writing: a new store life, in state `building` (stream marks dropped)."""
    new = uuid.uuid4().hex[:16]
    pipe = client.pipeline(transaction=True)
    pipe.delete(marker_key(prefix))
    pipe.hset(marker_key(prefix), mapping={"id": new, "state": "building", "format": FORMAT})
    pipe.execute()
    return new


# KEYS = [marker key], ARGV = [id]: ready if the store is still the one this backfill began
FINISH = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return redis.error_reply('FLSTORE lost') end
redis.call('HSET', KEYS[1], 'state', 'ready')
return 1
"""


def finish_backfill(client, prefix: str, store_id: str) -> None:
    from redis.exceptions import ResponseError

    try:
        client.eval(FINISH, 1, marker_key(prefix), store_id)
    except ResponseError as e:
        if "FLSTORE" not in str(e):
            raise
        raise StoreLost(
            f"Redis at {where(client)} lost its data while the backfill wrote it (restarted without persistence, flushed, "
            "or failed over): run the backfill again"
        ) from None


def ensure_for_stream(client, prefix: str, *, has_history: bool, group: str) -> StoreState:
    """The store's state for a stream about to start: a new store is marked (when the group has
    applied nothing yet); one that lost its data, or that a backfill is writing, is refused."""
    st = read_state(client, prefix)
    if st is not None and st.id:
        if st.state == "building":
            raise StoreBusy(
                f"a backfill to online is writing the store at {where(client)} (prefix `{prefix}`), or died while writing it: "
                "wait for it to finish, or run `featureline backfill --to online` again"
            )
        if st.format != FORMAT:
            raise StoreStateError(format_message(client, prefix, st))
        return st
    if has_history:
        raise StoreLost(lost_message(client, prefix, group))
    new = uuid.uuid4().hex[:16]
    client.hsetnx(marker_key(prefix), "id", new)
    client.hsetnx(marker_key(prefix), "state", "ready")
    client.hsetnx(marker_key(prefix), "format", FORMAT)
    return read_state(client, prefix)


def format_message(client, prefix: str, st: StoreState) -> str:
    return (
        f"the online store at {where(client)} (prefix `{prefix}`) was written in store format {st.format or '1'} "
        f"(an older featureline); this one reads and writes format {FORMAT}. Rewrite it: "
        "`featureline backfill --to online --end <time>`"
    )


def lost_message(client, prefix: str, group: str) -> str:
    return (
        f"the online store at {where(client)} (prefix `{prefix}`) holds no featureline data, but consumer group `{group}` "
        "has applied records before: Redis lost its data (restarted without persistence, flushed, or failed over to an "
        "empty replica). Nothing was written. Rebuild it: `featureline backfill --to online --end <time>`, then "
        "`featureline stream` (it re-reads the topics from the backfill's boundary)"
    )


def guard_lua() -> list[str]:
    """Lua lines opening a guarded stream write. KEYS[1] = the marker key, ARGV[1..3] = store
    id, seq field, expected seq; the script's own keys follow from KEYS[2], its arguments
    from ARGV[4]."""
    return [
        "local fl_m = redis.call('HMGET', KEYS[1], 'id', ARGV[2])",
        "if fl_m[1] ~= ARGV[1] then return redis.error_reply('FLSTORE id ' .. tostring(fl_m[1] or '-')) end",
        "local fl_cur, fl_want = tonumber(fl_m[2] or '0'), tonumber(ARGV[3])",
        "if fl_cur == fl_want then redis.call('HSET', KEYS[1], ARGV[2], fl_want + 1)",
        "elseif fl_cur ~= fl_want + 1 then return redis.error_reply('FLSTORE seq ' .. fl_cur .. ' ' .. fl_want) end",
    ]


GUARD_ARGS = 3  # and one key, the marker

# KEYS = [marker], ARGV = guard + [applied field, next offset]: the batch is in Redis in full
MARK_APPLIED = "\n".join([*guard_lua(), "redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])", "return 1"])


class Guard:
    """The guard arguments of one partition's stream writes: each call takes the next number."""

    def __init__(self, client, prefix: str, store_id: str, group: str, topic: str, partition: int, start_seq: int):
        self.client, self.prefix = client, prefix
        self.key = marker_key(prefix)
        self.id = store_id
        self.group, self.topic, self.partition = group, topic, partition
        self.field = tp_field("seq", group, topic, partition)
        self.applied_field = tp_field("applied", group, topic, partition)
        self.next = start_seq

    def take(self) -> tuple:
        """The guard's arguments of the next call (its key is `key`)."""
        args = (self.id, self.field, self.next)
        self.next += 1
        return args

    def error(self, e: Exception) -> StoreStateError | None:
        """The store-state error a guarded call's ResponseError means, or None (another error)."""
        text = str(e)
        if "FLSTORE" not in text:
            return None
        parts = text.split("FLSTORE", 1)[1].split()
        tp = f"{self.topic}:{self.partition}"
        if parts[0] == "id":
            if parts[1] == "-":
                return StoreLost(lost_message(self.client, self.prefix, self.group))
            return StoreRebuilt(
                f"the online store at {where(self.client)} was rebuilt (a backfill to online) while the stream ran: "
                "the stream starts again from the new boundary"
            )
        have, want = int(parts[1]), int(parts[2])
        if have < want:
            return StoreBehind(
                f"Redis at {where(self.client)} lost its last writes for {tp} (it holds {have:,} of the stream's {want:,} writes: "
                "restored from an older AOF or snapshot, or a failover to a lagging replica): the stream starts again from "
                "the offsets Redis holds"
            )
        return StoreStateError(
            f"another writer applies {tp} to the online store at {where(self.client)} ({have:,} writes where this job made "
            f"{want:,}): two stream jobs in consumer group `{self.group}`? This one stops"
        )


def boundary_key(plan, source: str) -> str:
    return f"{plan.project.redis_key_prefix}:{BOUNDARY}{source}"


def record_boundary(store, plan, views, end_us: int) -> list[str]:
    """After a backfill to online at `end_us`: the stream continues each backfilled source from there."""
    import json

    sources = sorted({plan.views[v].source for v in views if plan.sources[plan.views[v].source].stream is not None})
    for s in sources:
        store.client.set(boundary_key(plan, s), json.dumps({"at": end_us, "epoch": uuid.uuid4().hex[:12]}))
    return sources


def read_boundaries(store, plan, sources) -> tuple[dict[str, int | None], dict[str, str]]:
    """Per source: the boundary of the last backfill to online (None: none), and its epoch id."""
    import json

    vals = store.client.mget([boundary_key(plan, s) for s in sources]) if sources else []
    at, epoch = {}, {}
    for s, v in zip(sources, vals, strict=True):
        d = json.loads(v) if v is not None else {}
        at[s], epoch[s] = d.get("at"), d.get("epoch", "")
    return at, epoch
