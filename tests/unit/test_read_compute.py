"""The read's computation in the client (online/read.py), without Redis: tiles built from random
records by the reference per-record update (`merge.partial_tiles`), then every feature
computed row by row (few rows: pure Python) and over many rows at once (numpy) must give the
same bits, and match a direct computation from the records."""

from __future__ import annotations

import math
import random

import pytest
from tests import oracle
from tests.projects import add_views

from featureline.compiler import compile_project
from featureline.online.layout import TileLayout, entity_key, input_name
from featureline.online.merge import partial_tiles
from featureline.online.read import ROWS_IN_PYTHON, ServiceRead
from featureline.timeutil import HOUR, MINUTE

VIEW = """
  - name: user_everything
    entity: user
    source: transactions
    aggregations:
      - column: amount
        functions: [count, sum, mean, min, max, variance, stddev]
        windows: [1h, 1d]
      - column: merchant_id
        functions: [count, sum, mean, min, max, last, first, variance, stddev]
        windows: [1h]
        hop: 5m
      - column: status
        functions: [count, min, max, last, first]
        windows: [1d]
      - column: merchant_id
        functions: [count_distinct, approx_count_distinct, last_k, top_k]
        k: 3
        windows: [1h, 1d]
        hop: 5m
        name: m
      - column: status
        functions: [first_k, count_distinct, top_k]
        k: 2
        windows: [1d]
        name: st
      - column: amount
        function: approx_percentile
        percentiles: [0, 0.5, 0.9]
        windows: [1h, 1d]
        hop: 10m

feature_services:
  - name: everything
    features: ["user_everything:*"]
"""


@pytest.fixture
def plan(example_project):
    add_views(example_project / "features/user_features.yaml", VIEW)
    return compile_project(example_project)


def _records(rnd, users, t_end):
    out = []
    for arrival in range(3000):
        out.append(
            {
                "user_id": rnd.choice(users),
                "__t": t_end - rnd.randrange(0, 30 * HOUR),
                "__arrival": arrival,
                "amount": None if rnd.random() < 0.1 else round(rnd.uniform(-50, 500), 2),
                "merchant_id": None if rnd.random() < 0.1 else rnd.randint(1, 40),
                "status": rnd.choice(["ok", "declined", "review", None]),
            }
        )
    return out


def _replies(read: ServiceRead, plan, records, users):
    """What Redis would answer the read of `users`: per user and entity type its value, each
    slot's block a section (and no latest rows)."""
    from featureline.online.value import pack

    blocks: dict = {}
    for g in read.groups:
        for s in g.slots:
            if s.kind != "window":
                continue
            lay: TileLayout = s.layout
            recs = [dict(r, **{input_name(f): r.get(f.column) for f in lay.features if f.column}) for r in records]
            for ent, tiles in partial_tiles(lay, recs, ("user_id",)).items():
                blocks.setdefault((g.entity, ent), []).append((s.code, 0, lay.pack_block(sorted(tiles.items()))))
    out = [pack(blocks[(g.entity, entity_key([u]))]) if (g.entity, entity_key([u])) in blocks else None for u in users for g in read.groups]
    return [out]


NEWER = ("count_distinct", "approx_count_distinct", "last_k", "first_k", "top_k", "approx_percentile")


def _oracle(f, records, user, t):
    """The newer functions straight from the records, by the test oracle (tests/oracle.py)."""
    evs = [{"event_time": r["__t"], "arrival": r["__arrival"], f.column: r[f.column]} for r in records if r["user_id"] == user]
    return oracle.window_value(evs, t, f.function, f.column, f.window_us, f.hop_us, f.param)


def _direct(f, records, user, t):
    """The feature straight from the records (docs/semantics.md): events in [floor(t - W, H), t)."""
    lo = (t - f.window_us) - (t - f.window_us) % f.hop_us
    rows = sorted((r for r in records if r["user_id"] == user and lo <= r["__t"] < t), key=lambda r: (r["__t"], r["__arrival"]))
    vals = [r[f.column] for r in rows if r[f.column] is not None]
    fn = f.function
    if fn == "count":
        return len(vals)
    if fn == "sum":
        return sum(vals)
    if not vals:
        return None
    return {
        "mean": lambda: sum(vals) / len(vals),
        "min": lambda: min(vals),
        "max": lambda: max(vals),
        "last": lambda: vals[-1],
        "first": lambda: vals[0],
        "variance": lambda: None if len(vals) < 2 else sum((v - sum(vals) / len(vals)) ** 2 for v in vals) / (len(vals) - 1),
        "stddev": lambda: None if len(vals) < 2 else math.sqrt(sum((v - sum(vals) / len(vals)) ** 2 for v in vals) / (len(vals) - 1)),
    }[fn]()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_alone_and_together_give_the_same_bits_and_the_direct_values(plan, seed):
    import msgspec

    from featureline.aggregations import FUNCTIONS

    rnd = random.Random(seed)
    read = ServiceRead(plan, "everything", "fl")
    t = 1_764_000_000_000_000 + rnd.randrange(0, HOUR)
    users = list(range(1, 11))
    records = _records(rnd, users, t - 5 * MINUTE)
    feats = [(j, what) for j, (kind, what) in enumerate(read.outputs) if kind == "f"]
    together = read.columns(_replies(read, plan, records, users), len(users), t)
    assert len(users) > ROWS_IN_PYTHON  # the numpy path
    for i, u in enumerate(users):
        alone = read.columns(_replies(read, plan, records, [u]), 1, t)
        for j, f in feats:
            assert alone[j][0] == together[j][i], (f.name, u)
            got = together[j][i]
            if FUNCTIONS[f.function].msgpack_value and got is not None:
                got = msgspec.msgpack.decode(got)
            if FUNCTIONS[f.function].list_value and got is not None:
                got = [msgspec.msgpack.decode(x) for x in got]
            if isinstance(got, bytes):
                got = got.decode()
            if f.function in NEWER:
                want = _oracle(f, records, u, t)
                ok = oracle.approx_close(f.function, got, want) if f.function.startswith("approx_") else got == want
                assert ok, (f.name, u, got, want)
                continue
            want = _direct(f, records, u, t)
            if isinstance(want, float) and got is not None:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (f.name, u, got, want)
            else:
                assert got == want, (f.name, u, got, want)
