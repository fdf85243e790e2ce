"""`count`: events (no input) or non-null values of an input in the window.

Accumulators: `cnt` (a tile's events) and `nn` (a tile's non-null values of one input; every
input has one, and the other accumulators read it as their count)."""

from __future__ import annotations

from .base import Additive, Function


class Count(Additive):
    kind = "cnt"

    def sql(self, col, input_type):
        return "count(*)"


class NonNull(Additive):
    kind = "nn"

    def sql(self, col, input_type):
        return f"count({col})"


class CountFn(Function):
    name = "count"

    def output_type(self, input_type):
        return "integer"

    def sql(self, inp, win, dtype, counts_events):
        return f"count({'e.__t' if counts_events else inp}) FILTER (WHERE {win})"

    def reduce(self, w, inp):
        return w.total("cnt", None).tolist() if inp is None else w.total("nn", inp).tolist()

    def reduce_row(self, r, inp):
        return r.total("cnt", None) if inp is None else r.total("nn", inp)


ACCUMULATORS = (Count(), NonNull())
FUNCTIONS = (CountFn(),)
