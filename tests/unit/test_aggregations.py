"""The aggregation registry: complete, consistent, and its tile order fixed."""

from __future__ import annotations

import pytest

from featureline.aggregations import ACC_ORDER, ACCUMULATORS, FUNCTIONS, Function
from featureline.plan import ARROW_TYPES
from featureline.specs.features import Aggregation


def test_the_tile_order_of_accumulators_only_grows():
    """Tile slots in Redis are named after their accumulators in this order: reordering would
    make every stored tile unreadable after an upgrade (append new ones at the end)."""
    assert ACC_ORDER[:7] == ("nn", "sum", "min", "max", "var", "last", "first")
    assert next(iter(ACCUMULATORS)) == "cnt"


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_is_complete(name):
    fn = FUNCTIONS[name]
    for method in ("sql", "reduce", "reduce_row"):
        assert getattr(type(fn), method) is not getattr(Function, method), f"{name} lacks {method}"
    for kind in fn.needs:
        assert kind in ACCUMULATORS, f"{name} needs an unregistered accumulator {kind}"
    for t in ARROW_TYPES:
        if fn.inputs is None or t in fn.inputs:
            out = fn.output_type(t)
            if fn.list_value:
                assert out.startswith("list<") and out.endswith(">") and out[5:-1] in ARROW_TYPES, (name, t)
            else:
                assert out in ARROW_TYPES, (name, t)
    if fn.inputs is not None:
        assert fn.input_kind, f"{name}: an input-type error needs to say what it takes"
    for kind in fn.sized:
        assert kind in fn.needs and fn.param, f"{name}: a sized accumulator takes its size from the feature's param"
    settings = {fn.param: [0.5] if fn.param == "percentiles" else 3} if fn.param else {}
    assert Aggregation(column="x", function=name, windows=["1h"], **settings).function == name  # the spec accepts it
    if fn.param:
        with pytest.raises(ValueError, match=f"needs `{fn.param}`"):
            Aggregation(column="x", function=name, windows=["1h"])


def test_an_unregistered_function_is_refused_by_the_spec():
    with pytest.raises(ValueError, match="count"):
        Aggregation(column="x", function="median", windows=["1h"])


@pytest.mark.parametrize("kind", list(ACCUMULATORS))
def test_every_accumulator_has_sql_and_a_merge(kind):
    acc = ACCUMULATORS[kind].bound(3)  # sized ones (last_k's) need a size: a feature's k
    assert acc.kind == kind
    assert acc.sql('"x"', "number")
    assert acc.lua_merge("c", "n", 1, 2, acc.numeric("number"))
    if acc.numeric("number"):
        assert len(acc.doubles(acc.empty())) == acc.width
