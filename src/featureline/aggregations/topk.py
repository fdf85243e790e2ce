"""`top_k` (with `k: N`): the window's N most frequent non-null values, most frequent first,
ties by value ascending; a list, null for an empty window.

Accumulator `freq`: a tile's values with their counts, [value bytes (`value_bytes`), count],
at most MAX_VALUES of them. Tiles merge by adding counts (Lua); a window's counts are the sums
over its tiles. Exact (the oracle's) while no tile met more than MAX_VALUES distinct values;
a tile past that keeps its MAX_VALUES most frequent values (ties by their bytes), so a value
dropped from it is undercounted, and the stream (which bounds a tile at every merge) and the
batch engine (which counts the window's events) may then disagree: documented in
docs/semantics.md. A boolean is counted as 0/1 inside tiles and read back as a boolean.
"""

from __future__ import annotations

from collections import Counter

import msgspec

from .base import Function, ObjectState, stored, value_bytes

MAX_VALUES = 1000
_dec = msgspec.msgpack.Decoder()


def _bounded(pairs: list) -> list:
    """[value bytes, count] -> the MAX_VALUES most frequent (ties by bytes), sorted so."""
    pairs.sort(key=lambda p: (-p[1], p[0]))
    del pairs[MAX_VALUES:]
    return pairs


def top(counts: dict, k: int) -> list:
    """{value bytes: count} -> the k most frequent values' bytes, ties by value ascending."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], _dec.decode(kv[0])))
    return [b for b, _ in ranked[:k]]


class Freq(ObjectState):
    kind = "freq"

    def sql(self, col, input_type):
        return f"histogram({stored(col, input_type)}) FILTER (WHERE {col} IS NOT NULL)"

    def state(self, v):
        if not v:
            return []
        items = v.items() if isinstance(v, dict) else v
        counts: Counter = Counter()
        for x, c in items:
            counts[value_bytes(x)] += c
        return _bounded([[b, c] for b, c in counts.items()])

    def empty(self):
        return []

    def add(self, s, v, t, arrival, n0):
        b = value_bytes(v)
        for p in s:
            if p[0] == b:
                p[1] += 1
                return _bounded(s)
        s.append([b, 1])
        return _bounded(s)

    def lua_merge(self, cur, new, i, nn, numeric):
        a, b = f"{cur}[{i}]", f"{new}[{i}]"
        return [
            f"do local a, at = {a}, {{}}",
            "  for j, p in ipairs(a) do at[p[1]] = j end",
            f"  for _, p in ipairs({b}) do",
            "    local j = at[p[1]]",
            "    if j then a[j][2] = a[j][2] + p[2] else a[#a + 1] = {p[1], p[2]}; at[p[1]] = #a end",
            "  end",
            f"  if #a > {MAX_VALUES} then",
            "    local function lt(x, y)  -- bytewise: Lua's < on strings follows the locale",
            "      for q = 1, math.min(#x, #y) do local u, w = string.byte(x, q), string.byte(y, q); if u ~= w then return u < w end end",
            "      return #x < #y",
            "    end",
            "    table.sort(a, function(x, y) if x[2] ~= y[2] then return x[2] > y[2] end return lt(x[1], y[1]) end)",
            f"    for j = #a, {MAX_VALUES + 1}, -1 do a[j] = nil end",
            "  end",
            "end",
        ]


class TopKFn(Function):
    name = "top_k"
    needs = ("freq",)
    list_value = True
    param = "k"

    def output_type(self, input_type):
        return f"list<{input_type}>"

    def sql(self, inp, win, dtype, counts_events):
        return f"list({inp}) FILTER (WHERE {win} AND {inp} IS NOT NULL)"

    def finalize(self, column):
        import pyarrow as pa

        out = []
        for vs in column.to_pylist():
            if not vs:
                out.append(None)
                continue
            ranked = sorted(Counter(vs).items(), key=lambda kv: (-kv[1], kv[0]))
            out.append([x for x, _ in ranked[: self.value]])
        return pa.array(out, column.type)

    def reduce(self, w, inp):
        return [self._top(tiles) for tiles in w.states("freq", inp)]

    def reduce_row(self, r, inp):
        return self._top(r.nonempty("freq", inp))

    def _top(self, tiles: list):
        """One row's tiles' [value bytes, count] lists -> its k most frequent (None: no tile)."""
        if not tiles:
            return None
        counts: dict = {}
        for s in tiles:
            for b, c in s:
                counts[b] = counts.get(b, 0) + c
        return top(counts, self.value)


ACCUMULATORS = (Freq(),)
FUNCTIONS = (TopKFn(),)
