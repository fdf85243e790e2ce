"""The stream's write path against the real Redis: merged micro-batches equal a backfill, and a
record delivered twice (same batches again, or re-cut at other boundaries, or shuffled within a
batch) is counted once."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time
import uuid
from pathlib import Path

import pytest
from tests.projects import add_views

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import backfill_online
from featureline.compiler import compile_project
from featureline.generator import write_history
from featureline.online.layout import entity_key, tile_layouts
from featureline.online.merge import inputs_of, partial_tiles
from featureline.online.store import OnlineStore
from featureline.timeutil import HOUR

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
VIEWS = ("user_transactions", "user_declines", "merchant_transactions", "user_merchants")
DISTINCT = """
  - name: user_merchants
    entity: user
    source: transactions
    aggregations:
      - column: merchant_id
        functions: [count_distinct, count, approx_count_distinct, top_k]
        k: 3
        windows: [1h, 1d]
      - column: card_country
        function: count_distinct
        windows: [1d]
      - column: amount
        functions: [last_k, first_k, approx_percentile]
        k: 4
        percentiles: [0.1, 0.5, 0.95]
        windows: [1h, 1d]
      - column: merchant_id
        functions: [last_k]
        k: 2
        windows: [1d]
        name: recent
feature_services:
  - name: distinct
    features: ["user_merchants:*"]
"""


def _project(tmp: Path, port: int, prefix: str) -> Path:
    (tmp / "featureline.yaml").write_text(
        (REPO / "featureline.yaml").read_text().replace("key_prefix: fl", f"key_prefix: {prefix}").replace("${FEATURELINE_REDIS_PORT:-6379}", str(port))
    )
    shutil.copytree(REPO / "features", tmp / "features")
    shutil.copytree(REPO / "contracts", tmp / "contracts")
    add_views(tmp / "features/user_features.yaml", DISTINCT)
    return tmp


@pytest.fixture(scope="module")
def world(tmp_path_factory, services):
    T = time.time_ns() // 1000 - 1_000_000
    a = _project(tmp_path_factory.mktemp("merged"), services.redis_port, f"m{uuid.uuid4().hex[:8]}")
    b = _project(tmp_path_factory.mktemp("backfilled"), services.redis_port, f"b{uuid.uuid4().hex[:8]}")
    for d in (a, b):
        write_history(d, events=4000, users=60, merchants=10, days=9, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan_a, plan_b = compile_project(a), compile_project(b)
    engine = BatchEngine(plan_a)
    store_a, store_b = OnlineStore(plan_a), OnlineStore(plan_b)
    backfill_online(BatchEngine(plan_b), store_b, T, views=list(VIEWS))
    # the events as a stream would see them: one partition, offsets in arrival order
    records = {}
    for v in VIEWS:
        view = plan_a.views[v]
        rows = engine.con.sql(f"SELECT * FROM {engine.events_sql(view)} ORDER BY __ord").to_arrow_table().to_pylist()
        ins = inputs_of(view)
        for off, r in enumerate(rows):
            for inp, f in ins.items():
                r[inp] = r[f"__in_{f.name}"]
            r["__offset"] = off
        records[v] = rows
    yield plan_a, store_a, store_b, records, T
    for st in (store_a, store_b):
        keys = list(st.client.scan_iter(f"{st.prefix}:*", count=1000))
        if keys:
            st.client.delete(*keys)


def _merge(store, lay, ent, tiles, *, tp, lo, hi, now_us) -> int:
    """One entity's partial tiles of one slot: -1 when merged, else the offset already applied."""
    blob = lay.pack_block(sorted(tiles.items()))
    left = store.merge_tiles([lay], [(ent, (max(tiles) + lay.reach_us) // 1000 + 1, [blob])], tp=tp, lo=lo, hi=hi, now_us=now_us)
    return left[0][2] if left else -1


def _apply(plan, store, records, batches: list[tuple[int, int]], now: int, shuffle: random.Random | None = None) -> None:
    """Merge records [lo, hi) of each view as micro-batches; on a partial overlap re-send the rest."""
    for v, rows in records.items():
        view = plan.views[v]
        for lo, hi in batches:
            batch = rows[lo:hi]
            if not batch:
                continue
            if shuffle:
                batch = batch[:]
                shuffle.shuffle(batch)
            for lay in tile_layouts(view):
                for ent, tiles in partial_tiles(lay, batch, view.join_keys).items():
                    mine = [r for r in batch if entity_key(r[k] for k in view.join_keys) == ent]
                    offs = [r["__offset"] for r in mine]
                    got = _merge(store, lay, ent, tiles, tp="transactions:0", lo=min(offs), hi=max(offs), now_us=now)
                    if got >= 0 and got < max(offs):  # some of these were applied before: send only the rest
                        rest = [r for r in mine if r["__offset"] > got]
                        again = partial_tiles(lay, rest, view.join_keys)[ent]
                        assert _merge(store, lay, ent, again, tp="transactions:0", lo=min(r["__offset"] for r in rest), hi=max(offs), now_us=now) == -1


def _read(store, T, n_users=70, n_merchants=12):
    rows = [{"user_id": u, "merchant_id": 1 + u % n_merchants} for u in range(1, n_users)]
    users = [{"user_id": r["user_id"]} for r in rows]
    return {at: {**store.get("fraud_detection", rows, at_us=T + at), **store.get("distinct", users, at_us=T + at)} for at in (0, HOUR, 3 * 24 * HOUR)}


def _windowed(values: dict, plan) -> dict:
    keep = {f.name for v in VIEWS for f in plan.views[v].features}
    return {at: {k: col for k, col in cols.items() if k in keep} for at, cols in values.items()}


def _close(a: dict, b: dict) -> None:
    for at in a:
        for k in a[at]:
            for x, y in zip(a[at][k], b[at][k], strict=True):
                if isinstance(y, list):
                    assert x == y, (at, k, x, y)
                    continue
                assert (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 1e-9 * max(1.0, abs(y))), (at, k, x, y)


def test_merged_batches_equal_backfill_and_replays_count_once(world):
    plan, store_a, store_b, records, T = world
    n = max(len(r) for r in records.values())
    batches = [(i, i + 500) for i in range(0, n, 500)]
    _apply(plan, store_a, records, batches, T)
    want = _windowed(_read(store_b, T), plan)
    first = _windowed(_read(store_a, T), plan)
    _close(first, want)
    assert sum(first[0]["count_7d"]) > 0 and max(first[0]["merchant_id_count_distinct_1d"]) > 1
    assert max(len(v or ()) for v in first[0]["amount_last_k_1d"]) == 4
    # the same micro-batches delivered again: nothing changes
    _apply(plan, store_a, records, batches, T)
    _close(_windowed(_read(store_a, T), plan), want)
    # a replay from an earlier offset, cut at other boundaries, records shuffled within each batch
    recut = [(i, i + 777) for i in range(n // 3, n, 777)]
    _apply(plan, store_a, records, recut, T, shuffle=random.Random(7))
    _close(_windowed(_read(store_a, T), plan), want)


def test_latest_merge_keeps_newest_row(world):
    plan, store_a, _, _, T = world
    ent = "424242"
    one = lambda t, a, vals: store_a.merge_latest("user_last_merchant", [(ent, t, a, vals)]) == 1  # noqa: E731
    assert one(T - 10, 5, [7, 12.5])
    assert not one(T - 10, 5, [7, 12.5])  # the same row again
    assert not one(T - 20, 9, [8, 1.0])  # an older one
    assert one(T - 10, 6, [9, 2.0])  # a tie broken by arrival
    got = store_a.get("fraud_detection", [{"user_id": 424242, "merchant_id": 1}], at_us=T)
    assert got["last_merchant_id"] == [9]


def test_count_distinct_tiles_merge_by_union_up_to_the_bound(world):
    """Two partial tiles of 600 distinct values each, 200 of them shared: the merged tile
    holds the union, up to MAX_DISTINCT (1,000 of 1,000 here), and the read says so; past
    the bound more values change nothing. top_k's counts are bounded alike, keeping the most
    frequent."""
    from featureline.aggregations.distinct import MAX_DISTINCT

    plan, store_a, _, _, T = world
    view = plan.views["user_merchants"]
    lay = next(lay for lay in tile_layouts(view) if any(f.name == "merchant_id_count_distinct_1h" for f in lay.features))
    st = T - T % lay.hop_us - lay.hop_us
    ent = "777001"

    def recs(values, first_offset):
        return [{"__t": st + 1, "__arrival": k, "user_id": 777001, "merchant_id": v, "card_country": "FR", "__offset": first_offset + k} for k, v in enumerate(values)]

    a, b = recs(range(600), 0), recs(range(400, 1000), 600)
    for batch in (a, b, recs(range(2000, 2100), 1200)):
        tiles = partial_tiles(lay, batch, view.join_keys)[ent]
        offs = [r["__offset"] for r in batch]
        assert _merge(store_a, lay, ent, tiles, tp="distinct:0", lo=min(offs), hi=max(offs), now_us=T) == -1
        got = store_a.get("distinct", [{"user_id": 777001}], at_us=T)
        want = 600 if batch is a else MAX_DISTINCT
        assert got["merchant_id_count_distinct_1h"] == [want]
    assert got["merchant_id_count_1h"] == [1300]
    # the stored tile keeps at most the bound's values (state stays bounded)
    import msgpack
    from tests.projects import value_sections as sections

    from featureline.online.layout import value_key

    block = sections(store_a.client.get(value_key(store_a.prefix, "user", ent)))[lay.code.encode()]
    (tile,) = msgpack.unpackb(block, raw=True)
    assert tile[0] == st and len(tile[1 + lay.acc("dist", "merchant_id").index]) == MAX_DISTINCT
    # top_k's counts: the union of 1,100 values bounded to the 1,000 most frequent (ties by bytes)
    from featureline.aggregations.topk import MAX_VALUES

    freq = tile[1 + lay.acc("freq", "merchant_id").index]
    assert len(freq) == MAX_VALUES and sorted(c for _, c in freq)[-200:] == [2] * 200
    assert got["merchant_id_top_k_1h"] == [[400, 401, 402]]  # counted twice, ties by value
