"""The Redis online store against the batch engine (itself held to the oracle): exact as of read time,
windows expiring on their own, reruns idempotent. Real Redis, started by scripts/services."""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest
from tests.projects import add_views, make_project

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import backfill_online
from featureline.compiler import compile_project
from featureline.generator import write_history
from featureline.online.layout import entity_key
from featureline.online.store import OnlineError, OnlineStore
from featureline.timeutil import DAY, HOUR, MINUTE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _drop(store) -> None:
    keys = list(store.client.scan_iter(f"{store.prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)


@pytest.fixture(scope="module")
def online(tmp_path_factory, services):
    d = make_project(tmp_path_factory.mktemp("online"), services)
    T = time.time_ns() // 1000 - 1_000_000  # the history ends just before now: keys expire in wall-clock time
    write_history(d, events=20_000, users=300, merchants=40, days=12, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan = compile_project(d)
    engine = BatchEngine(plan)
    store = OnlineStore(plan)
    written = backfill_online(engine, store, T)
    yield plan, engine, store, T, written, store.prefix
    _drop(store)


def _rows(n=120, seed=3):
    rnd = random.Random(seed)
    return [{"user_id": rnd.randint(1, 320), "merchant_id": rnd.randint(1, 40)} for _ in range(n)]


def _batch(engine, rows, at):
    spine = pa.table(
        {
            "user_id": [r["user_id"] for r in rows],
            "merchant_id": [r["merchant_id"] for r in rows],
            "ts": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC")),
        }
    )
    return engine.historical(spine, "fraud_detection", at_column="ts").to_pydict()


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


@pytest.mark.parametrize("later", [0, 5 * MINUTE, HOUR, 8 * DAY], ids=["T", "T+1hop", "T+1h", "T+8d"])
def test_reads_equal_batch_values_as_of_read_time(online, later):
    plan, engine, store, T, _, _ = online
    rows = _rows()
    at = T + later
    got = store.get("fraud_detection", rows, at_us=at)
    want = _batch(engine, rows, at)
    for name in want:
        if name in ("ts",):
            continue
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(got[name], want[name], strict=True)) if not _same(a, b)]
        assert not bad, (name, bad[:3])
    if later == 8 * DAY:  # every window has expired by then: counts 0, aggregates null; latest values within ttl only
        assert set(got["count_7d"]) == {0} and set(got["amount_max_7d"]) == {None}
        assert any(v is not None for v in got["country"])  # profiles live 3650d


def test_one_round_trip_and_expiry_set(online):
    """Every key expires on its own: a tile slot's key within its reach (hop + widest window)
    beyond now, whatever the ttl of the entity's latest-value views (3650 days here), and a
    latest row at event time + ttl; all of one entity's keys share its hash tag."""
    from featureline.online.layout import latest_code

    plan, engine, store, T, written, prefix = online
    keys = [k.decode() for k in store.client.scan_iter(f"{prefix}:*", count=1000)]
    keys = [k for k in keys if ":_meta:" not in k]
    assert keys
    latest = {latest_code(v) for v in plan.views.values() if v.kind == "latest"}
    tiles = [k for k in keys if k.rpartition("}:")[2] not in latest]
    rows = [k for k in keys if k.rpartition("}:")[2] in latest]
    assert tiles and rows
    pttl = {k: store.client.pttl(k) for k in tiles[:300] + rows[:300]}
    assert all(t > 0 for t in pttl.values())  # nothing lives forever
    assert max(pttl[k] for k in tiles[:300]) <= (7 * DAY + HOUR) // 1000 + 1000
    assert max(pttl[k] for k in rows[:300]) <= 3650 * DAY // 1000 + 1000
    # an entity with both kinds: its tiles do not live as long as its profile
    ent = next(k.partition("{")[2].rpartition("}:")[0] for k in tiles if any(r.startswith(k.rpartition("}:")[0]) for r in rows[:2000]))
    mine = [k for k in keys if k.partition("{")[2].rpartition("}:")[0] == ent]
    assert {k.rpartition("}:")[2] in latest for k in mine} == {True, False}
    assert all(k.startswith(f"{prefix}:{{{ent}}}:") for k in mine)  # one hash tag: one Redis Cluster slot


def test_rerun_is_idempotent(online):
    plan, engine, store, T, _, prefix = online
    rows = _rows(60, seed=9)
    before = store.get("fraud_detection", rows, at_us=T)
    n_keys = sum(1 for _ in store.client.scan_iter(f"{prefix}:*", count=1000))
    backfill_online(engine, store, T)
    assert store.get("fraud_detection", rows, at_us=T) == before
    assert sum(1 for _ in store.client.scan_iter(f"{prefix}:*", count=1000)) == n_keys


def test_latest_value_respects_ttl(online):
    plan, engine, store, T, _, _ = online
    rows = _rows(200, seed=4)
    now = store.get("fraud_detection", rows, at_us=T)
    later = store.get("fraud_detection", rows, at_us=T + 30 * DAY + 1)  # user_last_merchant has ttl 30d
    assert any(v is not None for v in now["last_merchant_id"])
    assert all(v is None for v in later["last_merchant_id"])


def test_bad_requests(online):
    plan, engine, store, T, _, _ = online
    with pytest.raises(OnlineError, match="did you mean `fraud_detection`"):
        store.get("fraud_detect", [{"user_id": 1, "merchant_id": 1}])
    with pytest.raises(OnlineError, match="lacks join key"):
        store.get("fraud_detection", [{"user_id": 1}])
    with pytest.raises(OnlineError, match="limit"):
        store.get("fraud_detection", [{"user_id": 1, "merchant_id": 1}] * 1001)


def test_reads_load_no_script_into_redis_whatever_the_feature_list(online):
    """Before, each distinct feature list generated and loaded a Lua script (300 random lists:
    288 scripts, kept by Redis until a flush). Reads now send plain commands."""
    import dataclasses

    from featureline.plan import ServicePlan

    plan, engine, store, T, _, _ = online
    refs = list(plan.services["fraud_detection"].features)
    rnd = random.Random(7)
    scripts = store.client.info("memory")["number_of_cached_scripts"]
    for i in range(40):
        pick = tuple(rnd.sample(refs, rnd.randint(1, len(refs))))
        keys = tuple(dict.fromkeys(k for r in pick for k in plan.views[r.partition(":")[0]].join_keys))
        adhoc = dataclasses.replace(plan, services={**plan.services, f"s{i}": ServicePlan(f"s{i}", pick, keys)})
        got = OnlineStore(adhoc, client=store.client).get(f"s{i}", _rows(3, seed=i), at_us=T)
        want = store.get("fraud_detection", _rows(3, seed=i), at_us=T)
        assert all(got[r.partition(":")[2]] == want[r.partition(":")[2]] for r in pick)
    assert store.client.info("memory")["number_of_cached_scripts"] == scripts


def test_msgpack_tiles_last_first_variance(tmp_path, services):
    """Layouts with last/first (tiles as msgpack, not packed doubles) read back exactly too."""
    make_project(tmp_path, services)
    f = tmp_path / "features/user_features.yaml"
    f.write_text(f.read_text().replace("functions: [sum, mean, max]", "functions: [sum, mean, max, last, first, variance, stddev]"))
    T = time.time_ns() // 1000 - 1_000_000
    write_history(tmp_path, events=8000, users=120, merchants=15, days=9, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan = compile_project(tmp_path)
    engine, store = BatchEngine(plan), OnlineStore(plan)
    try:
        backfill_online(engine, store, T)
        rows = _rows(80, seed=5)
        for later in (0, HOUR):
            got = store.get("fraud_detection", rows, at_us=T + later)
            want = _batch(engine, rows, T + later)
            for name in ("amount_last_7d", "amount_first_24h", "amount_variance_7d", "amount_stddev_1h", "count_7d"):
                assert all(_same(a, b) for a, b in zip(got[name], want[name], strict=True)), name
            assert any(v is not None for v in got["amount_last_7d"])
    finally:
        _drop(store)


EVERYTHING = """
  - name: user_everything
    entity: user
    source: transactions
    aggregations:
      - column: amount
        functions: [count, sum, mean, min, max, variance, stddev]
        windows: [1h, 1d]
      - column: merchant_id
        functions: [count, sum, mean, min, max, last, first, variance, stddev]
        windows: [1h, 7d]
        hop: 5m
      - column: status
        functions: [count, min, max, last, first]
        windows: [1d]
      - column: event_time
        functions: [min, max, last]
        windows: [1d]
      - expr: "status = 'declined'"
        name: declined
        functions: [sum, mean, count, min, max, variance]
        windows: [1h, 1d]

feature_services:
  - name: everything
    features: ["user_everything:*"]
"""


def test_every_function_over_every_input_kind_reads_equal_batch_values(tmp_path, services):
    """Each registered function, over numbers, integers, strings, timestamps and a boolean
    expression, in packed and msgpack tiles: the online read (tiles combined in the client)
    equals the batch engine (itself held to the oracle) at several read times."""
    from featureline.aggregations import FUNCTIONS

    make_project(tmp_path, services)
    add_views(tmp_path / "features/user_features.yaml", EVERYTHING)
    T = time.time_ns() // 1000 - 1_000_000
    write_history(tmp_path, events=8000, users=120, merchants=15, days=9, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan = compile_project(tmp_path)
    assert {plan.feature(r).function for r in plan.services["everything"].features} == set(FUNCTIONS)
    engine, store = BatchEngine(plan), OnlineStore(plan)
    try:
        backfill_online(engine, store, T)
        rows = [{"user_id": u} for u in range(1, 131)]
        for later in (0, 7 * MINUTE, 3 * HOUR, 2 * DAY):
            at = T + later
            got = store.get("everything", rows, at_us=at)
            spine = pa.table({"user_id": [r["user_id"] for r in rows], "ts": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC"))})
            want = engine.historical(spine, "everything", at_column="ts").to_pydict()
            for name in got:
                if name != "user_id":
                    bad = [(i, a, b) for i, (a, b) in enumerate(zip(got[name], want[name], strict=True)) if not _same(a, b)]
                    assert not bad, (later, name, bad[:3])
            for i in range(0, len(rows), 13):  # a row read alone: the very same values (bits) as read with others
                alone = store.get("everything", [rows[i]], at_us=at)
                assert {k: v[0] for k, v in alone.items()} == {k: v[i] for k, v in got.items()}, (later, rows[i])
            if later == 0:  # every feature has values to compare
                empty = [k for k, v in got.items() if all(x is None for x in v) or (k.startswith("count") and not any(v))]
                assert not empty, empty
    finally:
        _drop(store)


def test_bulk_writes_set_each_slot_key_and_raise_redis_errors(online):
    """The backfill's pipelined writes: each slot block is its own key with its own expiry (a
    rewrite replaces block and expiry); the backfill's Python path writes the blocks its
    layout packs; key values escaped (`}` too: it would end the hash tag); an error reply is
    raised, the commands around it run and the pool stays usable."""
    import numpy as np
    from redis.exceptions import ResponseError

    from featureline.batch.online_backfill import _blocks, _entity_keys
    from featureline.online.backend import SlotWrites
    from featureline.online.layout import latest_code, slot_key, tile_layouts

    plan, engine, store, T, _, prefix = online
    r = store.client
    lay = tile_layouts(plan.views["user_transactions"])[0]
    now_ms = time.time_ns() // 1_000_000
    far, near = now_ms + 3_600_000, now_ms + 600_000
    ents = pa.array(["x1", "x2", "x3"])
    keys = [slot_key(prefix, "user", f"x{i}", lay.code) for i in (1, 2, 3)]
    r.set(keys[1], b"old", pxat=far)  # a rewrite replaces block and expiry
    n = store.write_slots([SlotWrites("user", lay.code, ents, np.array([near] * 3), pa.array([b"a", b"b", b"c"], pa.binary()))])
    assert n == 3
    assert [r.get(k) for k in keys] == [b"a", b"b", b"c"]
    assert all(abs(r.pexpiretime(k) - near) <= 1 for k in keys)
    # the backfill's Python path (tiles -> each entity's block, a write per 1,000 entities)
    tiles = [("x1", T - T % lay.hop_us, [1] * len(lay.accs))]
    count = [0]
    store.write_slots(_blocks(lay, tiles, count))
    assert count == [1] and r.get(keys[0]) == lay.pack_block([(tiles[0][1], tiles[0][2])])
    assert abs(r.pexpiretime(keys[0]) - ((tiles[0][1] + lay.reach_us) // 1000 + 1)) <= 1

    # latest rows: composite/escaped key values
    view = plan.views["user_profile"]
    code = latest_code(view)
    raw = [["a|b", 1], ["c\\d:%", 2], ["plain", 3], ["x}y", 4]]
    ent = _entity_keys([pa.array([v for v, _ in raw]), pa.array([k for _, k in raw])])
    assert ent.to_pylist() == ["a%7Cb|1", "c\\d%3A%25|2", "plain|3", "x%7Dy|4"] == [entity_key(r) for r in raw]
    et = T - 1000
    vals = [["US", 1, "low"], ["FR", None, "high"], ["DE", 3, None], ["IT", 4, "mid"]]
    packed = [msgspec.msgpack.encode([et, i, v]) for i, v in enumerate(vals)]
    store.write_slots([SlotWrites("user", code, ent, np.array([(et + view.ttl_us) // 1000 + 1] * 4), pa.array(packed, pa.binary()))])
    lkeys = [slot_key(prefix, "user", e, code) for e in ent.to_pylist()]
    assert [r.get(k) for k in lkeys] == packed
    assert abs(r.pexpiretime(lkeys[2]) - ((et + view.ttl_us) // 1000 + 1)) <= 1

    # an error reply (a hash where a block is written with an option SET refuses for it) is raised; the store still works
    bad = slot_key(prefix, "user", "bad", lay.code)
    with pytest.raises(ResponseError):
        store.write_slots([SlotWrites("user", lay.code, pa.array(["x1", "bad", "x3"]), np.array([near, -5, near]), pa.array([b"a", b"b", b"c"], pa.binary()))])
    assert r.get(keys[2]) == b"c"  # the commands around it ran
    store.get("fraud_detection", [{"user_id": 1, "merchant_id": 1}], at_us=T)
    r.delete(*keys, bad, *lkeys)
