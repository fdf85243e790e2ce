"""`min` and `max` of an orderable input: accumulators `min` and `max`.

Booleans compare as 0/1 and timestamps as epoch microseconds inside tiles; strings make the
tile a msgpack one (they do not pack as doubles)."""

from __future__ import annotations

import numpy as np

from .base import NUMERIC_INPUTS, ORDERED, Accumulator, Function, with_nulls


class Extreme(Accumulator):
    phase = 1

    def __init__(self, kind: str):
        self.kind = kind
        self.cmp = "<" if kind == "min" else ">"

    def numeric(self, input_type):
        return input_type in NUMERIC_INPUTS

    def sql(self, col, input_type):
        v = f"{col}::INTEGER" if input_type == "boolean" else (f"epoch_us({col})" if input_type == "timestamp" else col)
        return f"{self.kind}({v})"

    def state(self, v):
        return 0 if v is None else v  # a null is never read: the tile's `nn` is 0

    def add(self, s, v, t, arrival, n0):
        return v if n0 == 0 or (v < s if self.kind == "min" else v > s) else s

    def lua_merge(self, cur, new, i, nn, numeric):
        return [f"if {new}[{nn}] > 0 and ({cur}[{nn}] == 0 or {new}[{i}] {self.cmp} {cur}[{i}]) then {cur}[{i}] = {new}[{i}] end"]


class ExtremeFn(Function):
    inputs = ORDERED
    input_kind = "orderable"

    def __init__(self, name: str):
        self.name = name
        self.needs = (name,)
        self.cmp = "<" if name == "min" else ">"

    def sql(self, inp, win, dtype, counts_events):
        return f"{self.name}({inp}) FILTER (WHERE {win})"

    def reduce(self, w, inp):
        lowest = self.name == "min"
        if w.objects is None:
            vals, present = w.extreme(self.name, inp, lowest)
            return with_nulls(vals, present)
        states = w.objects(w.column(self.name, inp))  # msgpack tiles: strings, or numbers among them
        best: list = [None] * w.n
        for i in np.flatnonzero(w.nonempty(inp)).tolist():
            e, x = w.seg[i], states[i]
            if best[e] is None or (x < best[e] if lowest else x > best[e]):
                best[e] = x
        return best

    def reduce_row(self, r, inp):
        vals = r.nonempty(self.name, inp)
        return (min(vals) if self.name == "min" else max(vals)) if vals else None


ACCUMULATORS = (Extreme("min"), Extreme("max"))
FUNCTIONS = (ExtremeFn("min"), ExtremeFn("max"))
