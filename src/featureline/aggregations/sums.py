"""`sum` and `mean` of a numeric input (booleans as 0/1): accumulator `sum`."""

from __future__ import annotations

import numpy as np

from .base import Additive, NumericFunction, with_nulls


class Sum(Additive):
    kind = "sum"

    def sql(self, col, input_type):
        if input_type in ("integer", "boolean"):
            return f"coalesce(sum({col}::BIGINT), 0)::BIGINT"
        return f"coalesce(fsum({col}), 0.0)"

    def add(self, s, v, t, arrival, n0):
        return s + v


class _Numeric(NumericFunction):
    needs = ("sum",)


class SumFn(_Numeric):
    name = "sum"

    def output_type(self, input_type):
        return "number" if input_type == "number" else "integer"

    def sql(self, inp, win, dtype, counts_events):
        if dtype == "integer":  # exact
            return f"coalesce(CAST(sum({inp}) FILTER (WHERE {win}) AS BIGINT), 0)"
        return f"coalesce(fsum({inp}) FILTER (WHERE {win}), 0.0)"  # compensated

    def reduce(self, w, inp):
        return w.total("sum", inp).tolist()

    def reduce_row(self, r, inp):
        return r.total("sum", inp)


class MeanFn(_Numeric):
    name = "mean"

    def output_type(self, input_type):
        return "number"

    def sql(self, inp, win, dtype, counts_events):
        return f"(fsum({inp}::DOUBLE) FILTER (WHERE {win}) / nullif(count({inp}) FILTER (WHERE {win}), 0))"

    def reduce(self, w, inp):
        s, c = w.total("sum", inp), w.total("nn", inp)
        with np.errstate(invalid="ignore", divide="ignore"):
            return with_nulls(s / c, c > 0)

    def reduce_row(self, r, inp):
        c = r.total("nn", inp)
        return r.total("sum", inp) / c if c > 0 else None


ACCUMULATORS = (Sum(),)
FUNCTIONS = (SumFn(), MeanFn())
