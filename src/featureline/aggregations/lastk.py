"""`last_k` and `first_k` (with `k: N`): the window's N newest (oldest) non-null values by event
time, ties by arrival order, as a list, newest (oldest) first; null for an empty window.

Accumulators `lastk` and `firstk`, sized: a tile's K newest (oldest) values, newest (oldest)
first, each [event_time, arrival, msgpack(value)], K the largest k of the layout's features on
that input (at most MAX_K). Two tiles merge by merging their sorted lists and keeping K. A
window's value: its tiles' lists taken from the newest (oldest) tile on until k values; the
tiles cover disjoint times, so that is the window's k newest (oldest)."""

from __future__ import annotations

import msgspec

from .base import Function, ObjectState, stored

MAX_K = 100  # the largest k: a tile keeps up to k values of each input
_enc = msgspec.msgpack.Encoder()


class PickK(ObjectState):
    def __init__(self, kind: str):
        self.kind = kind
        self.newer = kind == "lastk"

    def sql(self, col, input_type):
        v = stored(col, input_type)
        order = "DESC" if self.newer else "ASC"
        return f"(list(struct_pack(t := __t, a := __arrival, v := {v}) ORDER BY __ord {order}) FILTER (WHERE {col} IS NOT NULL))[1:{self.size}]"

    def state(self, v):
        return [[x["t"], x["a"], _enc.encode(x["v"])] for x in v] if v else []

    def empty(self):
        return []

    def add(self, s, v, t, arrival, n0):
        s.append([t, arrival, _enc.encode(v)])
        s.sort(key=lambda x: (x[0], x[1]), reverse=self.newer)
        del s[self.size :]
        return s

    def lua_merge(self, cur, new, i, nn, numeric):
        c = ">" if self.newer else "<"
        a, b = f"{cur}[{i}]", f"{new}[{i}]"
        return [
            f"do local a, b, out, x, y = {a}, {b}, {{}}, 1, 1",
            f"  while #out < {self.size} and (x <= #a or y <= #b) do",
            "    local p, q = a[x], b[y]",
            f"    if q == nil or (p ~= nil and (p[1] {c} q[1] or (p[1] == q[1] and p[2] {c} q[2]))) then out[#out + 1] = p; x = x + 1",
            "    else out[#out + 1] = q; y = y + 1 end",
            "  end",
            f"  {a} = out",
            "end",
        ]


class PickKFn(Function):
    list_value = True
    param = "k"

    def __init__(self, name: str):
        self.name = name
        self.newer = name == "last_k"
        self.needs = self.sized = ("lastk" if self.newer else "firstk",)

    def output_type(self, input_type):
        return f"list<{input_type}>"

    def sql(self, inp, win, dtype, counts_events):
        order = "DESC" if self.newer else "ASC"
        return f"(list({inp} ORDER BY e.__ord {order}) FILTER (WHERE {win} AND {inp} IS NOT NULL))[1:{self.value}]"

    def _take(self, tiles: list) -> list | None:
        """One row's tiles' lists, oldest tile first -> its k values (msgpack bytes)."""
        if not tiles:
            return None
        k, got = self.value, []
        for items in reversed(tiles) if self.newer else tiles:
            got.extend(x[2] for x in items[: k - len(got)])
            if len(got) >= k:
                break
        return got

    def reduce(self, w, inp):
        return [self._take(t) for t in w.states(self.needs[0], inp)]

    def reduce_row(self, r, inp):
        return self._take(r.nonempty(self.needs[0], inp))


ACCUMULATORS = (PickK("lastk"), PickK("firstk"))
FUNCTIONS = (PickKFn("last_k"), PickKFn("first_k"))
