"""`last` and `first`: the newest (oldest) non-null value by event time, ties by arrival.

Accumulators `last` and `first`: [event_time, arrival, msgpack(value)], so a value of any
type travels through Redis as the bytes it was written as (never a Lua number)."""

from __future__ import annotations

import msgspec
import numpy as np

from .base import Function, ObjectState, stored

_enc = msgspec.msgpack.Encoder()


class Pick(ObjectState):
    def __init__(self, kind: str):
        self.kind = kind
        self.newer = kind == "last"

    def sql(self, col, input_type):
        fn = "arg_max" if self.newer else "arg_min"
        v = stored(col, input_type)
        return f"{fn}(struct_pack(t := __t, a := __arrival, v := {v}), __ord) FILTER (WHERE {col} IS NOT NULL)"

    def state(self, v):
        return [0, 0, b""] if v is None else [v["t"], v["a"], _enc.encode(v["v"])]

    def empty(self):
        return [0, 0, b""]

    def add(self, s, v, t, arrival, n0):
        if n0 == 0 or ((t, arrival) > (s[0], s[1]) if self.newer else (t, arrival) < (s[0], s[1])):
            return [t, arrival, _enc.encode(v)]
        return s

    def lua_merge(self, cur, new, i, nn, numeric):
        x, b = f"{new}[{i}]", f"{cur}[{i}]"
        return [f"if {new}[{nn}] > 0 and ({cur}[{nn}] == 0 or {_better(self.newer, x, b)}) then {cur}[{i}] = {x} end"]


def _better(newer: bool, x: str, b: str) -> str:
    """Lua: state `x` is newer (older) than `b`, by event time then arrival."""
    c = ">" if newer else "<"
    return f"{x}[1] {c} {b}[1] or ({x}[1] == {b}[1] and {x}[2] {c} {b}[2])"


class PickFn(Function):
    msgpack_value = True

    def __init__(self, name: str):
        self.name = name
        self.needs = (name,)
        self.newer = name == "last"

    def sql(self, inp, win, dtype, counts_events):
        return f"{'arg_max' if self.newer else 'arg_min'}({inp}, e.__ord) FILTER (WHERE {win} AND {inp} IS NOT NULL)"

    def reduce(self, w, inp):
        picks = w.objects(w.column(self.name, inp))  # [event_time, arrival, msgpack bytes] per tile
        best: list = [None] * w.n
        for i in np.flatnonzero(w.nonempty(inp)).tolist():
            e, x = w.seg[i], picks[i]
            b = best[e]
            if b is None or ((x[0], x[1]) > (b[0], b[1]) if self.newer else (x[0], x[1]) < (b[0], b[1])):
                best[e] = x
        return [None if b is None else b[2] for b in best]

    def reduce_row(self, r, inp):
        picks = r.nonempty(self.name, inp)
        if not picks:
            return None
        key = lambda x: (x[0], x[1])  # noqa: E731
        return (max(picks, key=key) if self.newer else min(picks, key=key))[2]


ACCUMULATORS = (Pick("last"), Pick("first"))
FUNCTIONS = (PickFn("last"), PickFn("first"))
