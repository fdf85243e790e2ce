"""The approximate aggregations' sketches (aggregations/hll.py): error bounds, merges exact."""

from __future__ import annotations

import random

import pytest

from featureline.aggregations import ddsketch, hll


@pytest.mark.parametrize("n", [0, 1, 10, 1000, 10_000, 100_000])
def test_hll_relative_error_within_two_percent(n):
    values = random.Random(n).sample(range(10**12), n)
    got = hll.estimate(hll.dense([hll.registers(values)]))
    assert got == n if n <= 10 else abs(got - n) <= 0.02 * n, (n, got)


def test_hll_merge_is_the_sketch_of_the_union_whatever_the_split():
    rnd = random.Random(3)
    values = [rnd.randrange(10**9) for _ in range(5000)] + ["a", "b", 1.5, True, -0.0]
    whole = hll.registers(values)
    parts = [values[i::7] for i in range(7)]
    merged = b""
    for p in parts:
        merged = hll.merge(merged, hll.registers(p))
    assert merged == whole  # the very same registers: tiles merged give the batch engine's number
    assert hll.estimate(hll.dense(hll.registers(p) for p in parts)) == hll.estimate(hll.dense([whole]))
    assert hll.registers([0.0, 1]) == hll.registers([-0.0, True])  # equal values hash alike


def test_hll_tile_state_is_sparse_and_bounded():
    assert hll.registers([]) == b""
    assert len(hll.registers(range(3))) == 9
    assert len(hll.registers(range(200_000))) <= 3 * hll.M


@pytest.mark.parametrize("seed", range(4))
def test_ddsketch_percentiles_within_one_percent(seed):
    """Lognormal, uniform, negative and mixed values: each percentile within 1% of the exact
    element of rank floor(q (n - 1)); any split of the values into tiles gives the same buckets."""
    rnd = random.Random(seed)
    n = [1, 7, 1000, 20_000][seed]
    gen = [lambda: rnd.lognormvariate(3, 2), lambda: rnd.uniform(0.01, 5000), lambda: -rnd.expovariate(0.01), lambda: rnd.choice([0.0, 1.0, -2.5, 1e6])][seed]
    values = [gen() for _ in range(n)]
    whole = ddsketch.buckets([ddsketch.sketch(values)])
    parts = [ddsketch.sketch(values[i::5]) for i in range(5)]
    split = ddsketch.buckets(parts)
    assert whole[0].tolist() == split[0].tolist() and whole[1].tolist() == split[1].tolist()
    exact = sorted(values)
    for q in (0.0, 0.01, 0.5, 0.9, 0.99, 1.0):
        want = exact[int(q * (n - 1))]
        got = ddsketch.quantile(*whole, q)
        assert abs(got - want) <= 0.01 * abs(want) + 1e-9, (q, got, want)


def test_ddsketch_state_is_bounded_and_folds_lowest():
    values = [1.0001**i for i in range(0, 3_000_000, 1000)]  # spans ~3,000 buckets
    s = ddsketch.sketch(values)
    assert len(s) == 8 * ddsketch.MAX_BUCKETS
    k, c = ddsketch.buckets([s])
    assert int(c.sum()) == len(values)
    assert abs(ddsketch.quantile(k, c, 1.0) - values[-1]) <= 0.01 * values[-1]  # the top is exact to 1%
    a, b = ddsketch.sketch(values[::2]), ddsketch.sketch(values[1::2])
    assert ddsketch.buckets([a, b])[1].tolist() == c.tolist()  # folding commutes with merging
