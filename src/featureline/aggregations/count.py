"""`count`: events (no input) or non-null values of an input in the window.

Accumulators: `cnt` (a tile's events) and `nn` (a tile's non-null values of one input; every
input has one, and the other accumulators read it as their count)."""

from __future__ import annotations

from .base import Accumulator, Function, per_entity_sum


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

    def output_type(self, input_type):
        return "integer"

    def sql(self, inp, win, dtype, counts_events):
        return f"count({'e.__t' if counts_events else inp}) FILTER (WHERE {win})"

    def reduce(self, col, keep, seg, n, counts_events):
        return per_entity_sum(col("cnt") if counts_events else col("nn"), keep, seg, n).tolist()


ACCUMULATORS = (Count(), NonNull())
FUNCTIONS = (CountFn(),)
