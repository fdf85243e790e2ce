"""`variance` and `stddev` (sample: n - 1) of a numeric input: accumulator `var`, a tile's
(mean, M2) with its input's `nn` as n, merged by Chan's formula."""

from __future__ import annotations

from .base import NUMERIC, Accumulator, Function


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
    state = "v"
    bool_as_int = True
    sql_fn = ""

    def output_type(self, input_type):
        return "number"

    def sql(self, inp, win, dtype, counts_events):
        return f"{self.sql_fn}({inp}::DOUBLE) FILTER (WHERE {win})"

    def lua(self, a, v, counts_events):
        mean, m2 = a("var", 0), a("var", 1)
        step = [
            f"local ni = {a('nn')}",
            "if ni > 0 then",
            f"  local d = {mean} - mu_{v}; local nt = n_{v} + ni",
            f"  mu_{v} = mu_{v} + d * ni / nt; m2_{v} = m2_{v} + {m2} + d * d * n_{v} * ni / nt; n_{v} = nt",
            "end",
        ]
        return [f"local n_{v}, mu_{v}, m2_{v} = 0, 0, 0"], step, f"(n_{v} >= 2 and {self._final(v)} or false)"


class VarianceFn(_Spread):
    name = "variance"
    sql_fn = "var_samp"

    def _final(self, v):
        return f"m2_{v} / (n_{v} - 1)"


class StddevFn(_Spread):
    name = "stddev"
    sql_fn = "stddev_samp"

    def _final(self, v):
        return f"math.sqrt(m2_{v} / (n_{v} - 1))"


ACCUMULATORS = (Var(),)
FUNCTIONS = (VarianceFn(), StddevFn())
