"""`variance` and `stddev` (sample: n - 1) of a numeric input: accumulator `var`, a tile's
(mean, M2) with its input's `nn` as n, merged by Chan's formula."""

from __future__ import annotations

import numpy as np

from .base import Accumulator, NumericFunction, with_nulls
from .window import seq_sum


class Var(Accumulator):
    kind = "var"
    phase = 0  # needs both sides' counts before `nn` adds up
    width = 2

    def sql(self, col, input_type):
        return f"struct_pack(m := avg({col}::DOUBLE), m2 := coalesce(var_pop({col}::DOUBLE), 0.0) * count({col}))"

    def state(self, v):
        return [v["m"] or 0.0, v["m2"] or 0.0]

    def doubles(self, s):
        return [float(s[0]), float(s[1])]

    def columns(self, column):
        import pyarrow.compute as pc

        return [pc.struct_field(column, "m"), pc.struct_field(column, "m2")]

    def empty(self):
        return [0.0, 0.0]

    def add(self, s, v, t, arrival, n0):
        m, q = s
        d = v - m
        m += d / (n0 + 1)
        return [m, q + d * (v - m)]

    def lua_merge(self, cur, new, i, nn, numeric):
        if numeric:
            m1, q1, m2, q2 = f"{cur}[{i}]", f"{cur}[{i + 1}]", f"{new}[{i}]", f"{new}[{i + 1}]"
        else:
            m1, q1, m2, q2 = f"{cur}[{i}][1]", f"{cur}[{i}][2]", f"{new}[{i}][1]", f"{new}[{i}][2]"
        return [
            f"do local na, nb = {cur}[{nn}], {new}[{nn}]",
            "  if nb > 0 then",
            f"    if na == 0 then {m1} = {m2}; {q1} = {q2}",
            f"    else local d = {m2} - {m1}; local nt = na + nb; {m1} = {m1} + d * nb / nt; {q1} = {q1} + {q2} + d * d * na * nb / nt end",
            "  end",
            "end",
        ]


class _Spread(NumericFunction):
    needs = ("var",)
    sql_fn = ""

    def output_type(self, input_type):
        return "number"

    def sql(self, inp, win, dtype, counts_events):
        return f"{self.sql_fn}({inp}::DOUBLE) FILTER (WHERE {win})"

    def reduce(self, w, inp):
        # the tiles' (count, mean, M2) combined at once: M2 = sum(M2_i + n_i (mean_i - mean)^2)
        ni, mi, m2i = w.values("nn", inp), w.values("var", inp, 0), w.values("var", inp, 1)
        tot = w.total("nn", inp)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = w.per_row(ni * mi) / tot
            d = np.where(ni > 0, mi - mean[w.seg], 0.0)
            m2 = w.per_row(m2i + ni * d * d)
            return with_nulls(self._value(m2, tot), tot >= 2)

    def reduce_row(self, r, inp):
        ni, mi, m2i = r.col("nn", inp), r.col("var", inp, 0), r.col("var", inp, 1)
        tot = seq_sum(ni)  # the same operations, in the same order, as `reduce`
        if tot < 2:
            return None
        mean = np.float64(seq_sum([a * b for a, b in zip(ni, mi, strict=True)])) / tot
        d = [b - mean if a > 0 else 0.0 for a, b in zip(ni, mi, strict=True)]
        m2 = seq_sum([q + a * x * x for q, a, x in zip(m2i, ni, d, strict=True)])
        return float(self._value(np.float64(m2), np.float64(tot)))


class VarianceFn(_Spread):
    name = "variance"
    sql_fn = "var_samp"

    def _value(self, m2, n):
        return m2 / (n - 1)


class StddevFn(_Spread):
    name = "stddev"
    sql_fn = "stddev_samp"

    def _value(self, m2, n):
        return np.sqrt(m2 / (n - 1))


ACCUMULATORS = (Var(),)
FUNCTIONS = (VarianceFn(), StddevFn())
