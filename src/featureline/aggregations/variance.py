"""`variance` and `stddev` (sample: n - 1) of a numeric input: accumulator `var`, a tile's
(mean, M2) with its input's `nn` as n, merged by Chan's formula."""

from __future__ import annotations

import numpy as np

from .base import NUMERIC, Accumulator, Function, per_entity_sum, with_nulls


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


class _Spread(Function):
    inputs = NUMERIC + ("boolean",)
    input_kind = "numeric (integer, number or boolean)"
    hint = "count, last and first work on any type"
    needs = ("var",)
    bool_as_int = True
    sql_fn = ""

    def output_type(self, input_type):
        return "number"

    def sql(self, inp, win, dtype, counts_events):
        return f"{self.sql_fn}({inp}::DOUBLE) FILTER (WHERE {win})"

    def reduce(self, col, keep, seg, n, counts_events):
        # the tiles' (count, mean, M2) combined at once: M2 = sum(M2_i + n_i (mean_i - mean)^2)
        ni = np.asarray(col("nn"), dtype=np.float64)
        mi, m2i = np.asarray(col("var", 0), dtype=np.float64), np.asarray(col("var", 1), dtype=np.float64)
        tot = per_entity_sum(ni, keep, seg, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = per_entity_sum(ni * mi, keep, seg, n) / tot
            d = np.where(ni > 0, mi - mean[seg], 0.0)
            m2 = per_entity_sum(m2i + ni * d * d, keep, seg, n)
            return with_nulls(self._value(m2, tot), tot >= 2)


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
