"""The approximate aggregations' sketches (aggregations/hll.py): error bounds, merges exact."""

from __future__ import annotations

import random

import pytest

from featureline.aggregations import hll


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
