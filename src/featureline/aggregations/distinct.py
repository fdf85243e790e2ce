"""`count_distinct`: how many distinct non-null values the window holds, exactly, up to a bound.

Accumulator `dist`: a tile's distinct values, each as its msgpack bytes (a timestamp as epoch
microseconds), at most MAX_DISTINCT of them: a tile that saw more keeps MAX_DISTINCT (the
smallest encodings when the backfill or a micro-batch computes it, the first met when the
stream merges; which ones does not change a value, see below). Tiles merge by union (up to
the bound); a window's value is the size of the union of its tiles' values, at most
MAX_DISTINCT. So every engine gives min(distinct values in the window, MAX_DISTINCT): exact
below the bound, MAX_DISTINCT meaning "that many or more" (a tile at the bound already holds
MAX_DISTINCT values of the window). An empty window counts 0. Values equal as their type's
values are one value (0.0 and -0.0 are one number).
"""

from __future__ import annotations

from .base import Function, ObjectState, stored
from .base import value_bytes as _key

MAX_DISTINCT = 1000


def distinct_sql(col: str, input_type: str | None) -> str:
    """A tile's distinct non-null values (as tiles keep them), a DuckDB list."""
    return f"list(DISTINCT {stored(col, input_type)}) FILTER (WHERE {col} IS NOT NULL)"


class Distinct(ObjectState):
    kind = "dist"

    def sql(self, col, input_type):
        return distinct_sql(col, input_type)

    def state(self, v):
        return sorted({_key(x) for x in v})[:MAX_DISTINCT] if v else []

    def empty(self):
        return []

    def add(self, s, v, t, arrival, n0):
        k = _key(v)
        if len(s) < MAX_DISTINCT and k not in s:
            s.append(k)
        return s

    def lua_merge(self, cur, new, i, nn, numeric):
        a, b = f"{cur}[{i}]", f"{new}[{i}]"
        return [
            f"if #{a} < {MAX_DISTINCT} and #{b} > 0 then",
            f"  local seen, a = {{}}, {a}",
            "  for _, x in ipairs(a) do seen[x] = true end",
            f"  for _, x in ipairs({b}) do",
            f"    if not seen[x] then a[#a + 1] = x; seen[x] = true; if #a >= {MAX_DISTINCT} then break end end",
            "  end",
            "end",
        ]


class CountDistinctFn(Function):
    name = "count_distinct"
    needs = ("dist",)

    def output_type(self, input_type):
        return "integer"

    def sql(self, inp, win, dtype, counts_events):
        return f"least(count(DISTINCT {inp}) FILTER (WHERE {win}), {MAX_DISTINCT})"

    def reduce(self, w, inp):
        return [_count(tiles) for tiles in w.states("dist", inp)]

    def reduce_row(self, r, inp):
        return _count(r.nonempty("dist", inp))


def _count(tiles: list) -> int:
    """Tiles' sets of values' msgpack bytes -> the bounded size of their union."""
    return min(len(set().union(*tiles)), MAX_DISTINCT)


ACCUMULATORS = (Distinct(),)
FUNCTIONS = (CountDistinctFn(),)
