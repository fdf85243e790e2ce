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
from tests.projects import value_sections as sections

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


def _sections(v: bytes) -> list[tuple[str, float, bytes]]:
    """An entity's value (online/value.py) -> [(slot code, expire_ms, payload)]."""
    from featureline.online.value import HEAD, HEADER

    out, p = [], 0
    while p < len(v):
        code, exp, n = HEADER.unpack_from(v, p)
        out.append((code.decode(), exp, v[p + HEAD : p + HEAD + n]))
        p += HEAD + n
    return out


def test_one_value_per_entity_each_section_with_its_expiry(online):
    """Store format 3: one key per entity (all its slots), its hash tag the entity; each slot's
    section expires on its own (tiles within their reach of hop + widest window beyond now,
    whatever the ttl of the entity's latest-value views, 3650 days here; a latest row at event
    time + ttl), the key with its longest-lived section."""
    from featureline.online.layout import latest_code, tile_layouts, value_key

    plan, engine, store, T, written, prefix = online
    keys = [k.decode() for k in store.client.scan_iter(f"{prefix}:*", count=1000)]
    keys = [k for k in keys if ":_meta:" not in k]
    assert keys and all(k.startswith(f"{prefix}:{{") and k.endswith("}") for k in keys)  # no other keys after a backfill
    latest = {latest_code(v): v for v in plan.views.values() if v.kind == "latest"}
    reach = {lay.code: lay.reach_us for v in plan.views.values() if v.kind != "latest" for lay in tile_layouts(v)}
    now_ms = time.time_ns() // 1_000_000
    both = 0
    for k in keys[:400]:
        secs = _sections(store.client.get(k))
        assert secs and len({c for c, _, _ in secs}) == len(secs)
        assert abs(store.client.pexpiretime(k) - max(e for _, e, _ in secs)) <= 1  # the key lives as long as its longest section
        for code, exp, payload in secs:
            if code in latest:
                et = msgspec.msgpack.decode(payload)[0]
                assert exp == (et + latest[code].ttl_us) // 1000 + 1
            else:
                assert now_ms < exp <= now_ms + reach[code] // 1000 + 1000
        kinds = {c in latest for c, _, _ in secs}
        if kinds == {True, False}:  # an entity with both kinds: its tiles do not live as long as its profile
            both += 1
            assert max(e for c, e, _ in secs if c not in latest) < max(e for c, e, _ in secs if c in latest)
    assert both
    assert value_key(prefix, "user", "42") == f"{prefix}:{{user:42}}"


def test_rerun_is_idempotent(online):
    plan, engine, store, T, _, prefix = online
    rows = _rows(60, seed=9)
    before = store.get("fraud_detection", rows, at_us=T)
    n_keys = sum(1 for _ in store.client.scan_iter(f"{prefix}:*", count=1000))
    backfill_online(engine, store, T)
    assert store.get("fraud_detection", rows, at_us=T) == before
    assert sum(1 for _ in store.client.scan_iter(f"{prefix}:*", count=1000)) == n_keys


def test_backfill_and_reset_of_some_views_keep_the_others_sections(online):
    """`backfill --to online --view V` (rebuild_online of some views) replaces V's sections of
    every entity's value and keeps the other views' (the values read equal the batch engine's
    again); a reset of one view drops only its sections; of all an entity type's views, the
    whole values."""
    from featureline.batch.online_backfill import rebuild_online
    from featureline.online.layout import latest_code, tile_layouts

    plan, engine, store, T, _, prefix = online
    rows = _rows(80, seed=5)
    before = store.get("fraud_detection", rows, at_us=T)
    assert any(before["count_1h"]) and any(v is not None for v in before["country"])
    try:
        rebuild_online(engine, store, T, views=["user_profile"])
        assert store.get("fraud_detection", rows, at_us=T) == before
        store.reset_views(["user_transactions"])
        after = store.get("fraud_detection", rows, at_us=T)
        assert set(after["count_1h"]) == {0} and after["country"] == before["country"]
        gone = {lay.code.encode() for lay in tile_layouts(plan.views["user_transactions"])}
        vals = [store.client.get(k) for k in store.client.scan_iter(f"{prefix}:{{user:*}}", count=1000)]
        assert vals and not any(c in sections(v) for v in vals for c in gone)
        assert any(latest_code(plan.views["user_profile"]).encode() in sections(v) for v in vals)
        users = [v.name for v in plan.views.values() if v.online and v.entity == "user"]
        store.reset_views(users)
        assert not list(store.client.scan_iter(f"{prefix}:{{user:*}}", count=1000))
        assert list(store.client.scan_iter(f"{prefix}:{{merchant:*}}", count=1000))  # another entity type's values stay
    finally:
        backfill_online(engine, store, T)
    assert store.get("fraud_detection", rows, at_us=T) == before


def test_backfill_in_parts_writes_each_entity_once_whole(online, monkeypatch):
    """With an entity type's entities split in parts (a large source), every part carries all
    of its entities' slots: the values read are the same as from one part, and each entity's
    value holds every slot it has data for (a second SET of an entity would drop the first)."""
    from featureline.batch import online_backfill

    plan, engine, store, T, _, prefix = online
    rows = _rows(150, seed=11)
    before = store.get("fraud_detection", rows, at_us=T)
    values = {k: store.client.get(k) for k in store.client.scan_iter(f"{prefix}:{{*}}", count=1000)}
    monkeypatch.setattr(online_backfill, "PART_ROWS", 3000)  # 20,000 events: 6 parts
    assert online_backfill._parts(engine, [plan.views["user_transactions"]]) == 6
    written = backfill_online(engine, store, T)
    assert sum(w.entities for w in written) > 300
    assert store.get("fraud_detection", rows, at_us=T) == before
    again = {k: store.client.get(k) for k in store.client.scan_iter(f"{prefix}:{{*}}", count=1000)}
    assert set(again) == set(values)
    assert all(sections(again[k]) == sections(values[k]) for k in values)


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
        functions: [count, sum, mean, min, max, last, first, variance, stddev, count_distinct, approx_count_distinct, approx_percentile]
        percentiles: [0.5, 0.99]
        windows: [1h, 7d]
        hop: 5m
      - column: status
        functions: [count, min, max, last, first, count_distinct, approx_count_distinct]
        windows: [1d]
      - column: event_time
        functions: [min, max, last, count_distinct, approx_count_distinct]
        windows: [1d]
      - column: merchant_id
        functions: [last_k, first_k]
        k: 3
        windows: [1h, 7d]
        hop: 5m
        name: m
      - column: merchant_id
        functions: [last_k]
        k: 1
        windows: [7d]
        hop: 5m
        name: m1
      - column: status
        functions: [last_k, top_k]
        k: 2
        windows: [1d]
      - column: merchant_id
        functions: [top_k]
        k: 3
        windows: [1h, 7d]
        hop: 5m
        name: mt
      - expr: "status = 'declined'"
        name: dt
        functions: [top_k]
        k: 1
        windows: [1d]
      - column: event_time
        functions: [first_k]
        k: 4
        windows: [1d]
        name: at
      - expr: "status = 'declined'"
        name: declined
        functions: [sum, mean, count, min, max, variance, count_distinct, approx_percentile]
        percentiles: [0.9]
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
            if later == 0:  # every function has values to compare (1h windows can be sparse at night: by function)
                seen = {plan.feature(r).function for r in plan.services["everything"].features if any(got[r.partition(":")[2]])}
                assert seen == set(FUNCTIONS), set(FUNCTIONS) - seen
    finally:
        _drop(store)


def test_bulk_writes_set_whole_values_or_replace_sections_and_raise_redis_errors(online):
    """The backfill's pipelined writes: a batch of every slot of an entity type SETs each
    entity's value whole (a rewrite replaces it and its expiry: the key's expiry is its longest
    section's); a batch of some slots replaces only those sections, keeping the others; the
    backfill's Python path writes the blocks its layout packs; key values escaped (`}` too: it
    would end the hash tag); an error reply is raised, the commands around it run and the pool
    stays usable."""
    import numpy as np
    from redis.exceptions import ResponseError

    from featureline.batch.online_backfill import _blocks, _entity_keys
    from featureline.online.backend import EntityWrites, SlotWrites
    from featureline.online.layout import latest_code, tile_layouts, value_key, view_codes

    plan, engine, store, T, _, prefix = online
    r = store.client
    every = tuple(c for v in plan.views.values() if v.online and v.entity == "user" for c in view_codes(v))
    lay = tile_layouts(plan.views["user_transactions"])[0]
    view = plan.views["user_profile"]
    code = latest_code(view)
    now_ms = time.time_ns() // 1_000_000
    far, near = now_ms + 3_600_000, now_ms + 600_000
    ents = pa.array(["x1", "x2", "x3"])
    keys = [value_key(prefix, "user", f"x{i}") for i in (1, 2, 3)]
    r.set(keys[1], b"old", pxat=far)  # a rewrite replaces value and expiry
    tiles = SlotWrites("user", lay.code, ents, np.array([near] * 3), pa.array([b"a", b"b", b"c"], pa.binary()))
    rows = SlotWrites("user", code, pa.array(["x3", "x1"]), np.array([near + 5, near - 5]), pa.array([b"r3", b"r1"], pa.binary()))
    n = store.write_slots([EntityWrites("user", every, [tiles, rows])])
    assert n == 5
    assert [_sections(r.get(k)) for k in keys] == [
        [(lay.code, near, b"a"), (code, near - 5, b"r1")],
        [(lay.code, near, b"b")],
        [(lay.code, near, b"c"), (code, near + 5, b"r3")],
    ]
    assert [r.pexpiretime(k) for k in keys] == [near, near, near + 5]
    # some slots only: those sections replaced, the others kept; an entity absent from the batch untouched
    new = SlotWrites("user", code, pa.array(["x1", "x2"]), np.array([far, far]), pa.array([b"R1", b"R2"], pa.binary()))
    assert store.write_slots([EntityWrites("user", (code,), [new])]) == 2
    assert [_sections(r.get(k)) for k in keys] == [
        [(lay.code, near, b"a"), (code, far, b"R1")],
        [(lay.code, near, b"b"), (code, far, b"R2")],
        [(lay.code, near, b"c"), (code, near + 5, b"r3")],
    ]
    assert [r.pexpiretime(k) for k in keys] == [far, far, near + 5]
    # the backfill's Python path (tiles -> each entity's block, a write per 1,000 entities)
    tl = [("x1", T - T % lay.hop_us, [1] * len(lay.accs))]
    count = [0]
    store.write_slots([EntityWrites("user", every, list(_blocks(lay, tl, count)))])
    assert count == [1] and _sections(r.get(keys[0])) == [(lay.code, (tl[0][1] + lay.reach_us) // 1000 + 1, lay.pack_block([(tl[0][1], tl[0][2])]))]

    # latest rows: composite/escaped key values
    raw = [["a|b", 1], ["c\\d:%", 2], ["plain", 3], ["x}y", 4]]
    ent = _entity_keys([pa.array([v for v, _ in raw]), pa.array([k for _, k in raw])])
    assert ent.to_pylist() == ["a%7Cb|1", "c\\d%3A%25|2", "plain|3", "x%7Dy|4"] == [entity_key(r) for r in raw]
    et = T - 1000
    vals = [["US", 1, "low"], ["FR", None, "high"], ["DE", 3, None], ["IT", 4, "mid"]]
    packed = [msgspec.msgpack.encode([et, i, v]) for i, v in enumerate(vals)]
    exp = (et + view.ttl_us) // 1000 + 1
    store.write_slots([EntityWrites("user", (code,), [SlotWrites("user", code, ent, np.array([exp] * 4), pa.array(packed, pa.binary()))])])
    lkeys = [value_key(prefix, "user", e) for e in ent.to_pylist()]
    assert [_sections(r.get(k)) for k in lkeys] == [[(code, exp, p)] for p in packed]

    # an error reply (a hash where a value is written: the PUT script's GET fails on it) is raised; the store still works
    bad = value_key(prefix, "user", "bad")
    r.hset(bad, "f", "v")
    with pytest.raises(ResponseError):
        store.write_slots([EntityWrites("user", (code,), [SlotWrites("user", code, pa.array(["x1", "bad", "x3"]), np.array([near] * 3), pa.array([b"a", b"b", b"c"], pa.binary()))])])
    assert _sections(r.get(keys[2]))[-1] == (code, near, b"c")  # the commands around it ran
    store.get("fraud_detection", [{"user_id": 1, "merchant_id": 1}], at_us=T)
    r.delete(*keys, bad, *lkeys)


