"""`count`: events (no input) or non-null values of an input in the window.

Accumulators: `cnt` (a tile's events) and `nn` (a tile's non-null values of one input; every
input has one, and the other accumulators read it as their count)."""

from __future__ import annotations

from .base import Accumulator, Function


class _Additive(Accumulator):
    def lua_merge(self, cur, new, i, nn, numeric):
        return [f"{cur}[{i}] = {cur}[{i}] + {new}[{i}]"]


class Count(_Additive):
    kind = "cnt"

    def sql(self, col, input_type):
        return "count(*)"


class NonNull(_Additive):
    kind = "nn"

    def sql(self, col, input_type):
        return f"count({col})"


class CountFn(Function):
    name = "count"
    state = "c"

    def output_type(self, input_type):
        return "integer"

    def sql(self, inp, win, dtype, counts_events):
        return f"count({'e.__t' if counts_events else inp}) FILTER (WHERE {win})"

    def lua(self, a, v, counts_events):
        src = a("cnt") if counts_events else a("nn")
        return [f"local c_{v} = 0"], [f"c_{v} = c_{v} + {src}"], f"c_{v}"


ACCUMULATORS = (Count(), NonNull())
FUNCTIONS = (CountFn(),)
