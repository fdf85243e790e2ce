"""Lua scripts generated from the plan: reads that compute windowed values in Redis.

A read script is generated per feature service (constants inlined, loaded once and
called by SHA): for each entity row it fetches every key of the service's views
(HGETALL of each (view, hop) tile hash, GET of each latest-value key), merges the
tiles each feature's window covers as of t, and returns one msgpack array of all
values. One EVALSHA is one round trip for N entities x F features.

Nulls travel as `false` (no feature value is ever a Lua boolean: booleans are stored
as 0/1 and restored by the client from the feature's type). `last`/`first` values
travel as the msgpack bytes they were written as, so no value is converted to a Lua
number on the way (Lua numbers are doubles).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import FeaturePlan, Plan
from .layout import TileLayout, input_name, tile_layouts


@dataclass(frozen=True)
class Slot:
    """One Redis key per entity row: a (view, hop) tile hash, or a latest-value string."""

    view: str
    kind: str  # window | latest
    hop_us: int | None
    layout: TileLayout | None
    features: tuple[FeaturePlan, ...]  # the service's features read from this slot, in output order
    join_keys: tuple[str, ...]


def service_slots(plan: Plan, service: str) -> list[Slot]:
    svc = plan.services[service]
    wanted = [plan.feature(ref) for ref in svc.features]
    slots: list[Slot] = []
    for vname in dict.fromkeys(f.view for f in wanted):
        view = plan.views[vname]
        mine = [f for f in wanted if f.view == vname]
        if view.kind == "latest":
            slots.append(Slot(vname, "latest", None, None, tuple(mine), view.join_keys))
            continue
        for lay in tile_layouts(view):
            feats = tuple(f for f in mine if f.hop_us == lay.hop_us)
            if feats:
                slots.append(Slot(vname, "window", lay.hop_us, lay, feats, view.join_keys))
    return slots


def read_script(slots: list[Slot]) -> str:
    """Lua: KEYS = per entity row, one key per slot; ARGV = [t_us, n_rows]. Returns msgpack of all values."""
    lines = [
        "local t = tonumber(ARGV[1])",
        "local nrows = tonumber(ARGV[2])",
        "local out = {}",
        "local o = 0",
        "local k = 0",
        "local unpack = cmsgpack.unpack",
        "local function fl(x, h) return x - (x % h) end",
        "for _ = 1, nrows do",
    ]
    for s in slots:
        lines.append("  k = k + 1")
        if s.kind == "latest":
            lines += ["  do", "    local v = redis.call('GET', KEYS[k])", "    o = o + 1", "    out[o] = v or false", "  end"]
            continue
        lay = s.layout
        h = lay.hop_us
        widest = max(f.window_us for f in s.features)
        lines += [
            "  do",
            "    local raw = redis.call('HGETALL', KEYS[k])",
            "    local tiles = {}",
            f"    local hi = fl(t, {h})",
            f"    local lo0 = fl(t - {widest}, {h})",
            "    for i = 1, #raw, 2 do",
            "      local f = raw[i]",
            "      if string.byte(f, 1) ~= 95 then",
            "        local st = tonumber(f)",
            "        if st >= lo0 and st <= hi then tiles[#tiles + 1] = {st, unpack(raw[i + 1])} end",
            "      end",
            "    end",
        ]
        for f in s.features:
            lines += ["    do", f"      local lo = fl(t - {f.window_us}, {h})"]
            lines += ["      " + x for x in _feature_lua(f, lay)]
            lines += ["    end"]
        lines.append("  end")
    lines += ["end", "return cmsgpack.pack(out)"]
    return "\n".join(lines)


def _feature_lua(f: FeaturePlan, lay: TileLayout) -> list[str]:
    """Lua computing one feature from `tiles` ({start, accs}) with start >= lo; appends to out."""
    inp = input_name(f)
    fn = f.function
    ix = lambda kind: lay.acc(kind, inp).index + 1  # noqa: E731 - Lua arrays are 1-based
    loop = "for _, tl in ipairs(tiles) do if tl[1] >= lo then local a = tl[2]"
    if fn == "count":
        i = lay.acc("cnt", None).index + 1 if inp is None else ix("nn")
        return ["local c = 0", f"{loop}; c = c + a[{i}] end end", "o = o + 1; out[o] = c"]
    nn = ix("nn")
    if fn in ("sum", "mean"):
        s = ix("sum")
        body = ["local s, n = 0, 0", f"{loop}; s = s + a[{s}]; n = n + a[{nn}] end end"]
        if fn == "sum":
            return body + ["o = o + 1; out[o] = s"]
        return body + ["o = o + 1; if n > 0 then out[o] = s / n else out[o] = false end"]
    if fn in ("min", "max"):
        m = ix(fn)
        cmp = "<" if fn == "min" else ">"
        return [
            "local m = nil",
            f"{loop}; if a[{nn}] > 0 and (m == nil or a[{m}] {cmp} m) then m = a[{m}] end end end",
            "o = o + 1; if m == nil then out[o] = false else out[o] = m end",
        ]
    if fn in ("last", "first"):
        li = ix(fn)
        better = "x[1] > b[1] or (x[1] == b[1] and x[2] > b[2])" if fn == "last" else "x[1] < b[1] or (x[1] == b[1] and x[2] < b[2])"
        return [
            "local b = nil",
            f"{loop}; if a[{nn}] > 0 then local x = a[{li}]; if b == nil or {better} then b = x end end end end",
            "o = o + 1; if b == nil then out[o] = false else out[o] = b[3] end",
        ]
    if fn in ("variance", "stddev"):
        vi = ix("var")
        final = "m2 / (n - 1)" if fn == "variance" else "math.sqrt(m2 / (n - 1))"
        return [
            "local n, mean, m2 = 0, 0, 0",
            f"{loop}; local ni = a[{nn}]; if ni > 0 then local v = a[{vi}]; local d = v[1] - mean; local nn2 = n + ni; "
            "mean = mean + d * ni / nn2; m2 = m2 + v[2] + d * d * n * ni / nn2; n = nn2 end end end",
            f"o = o + 1; if n >= 2 then out[o] = {final} else out[o] = false end",
        ]
    raise ValueError(fn)
