"""Lua scripts generated from the plan: reads that compute windowed values inside Redis.

A read script is generated per feature service (constants inlined; loaded once, called
by SHA). KEYS holds, per entity row, one hash key per entity type the service uses
(e.g. fl:user:42, fl:merchant:7) and one string key per latest-value view
(fl:user:42:<slot>). For each hash the script fetches the blocks of the slots it
needs (HMGET), walks each block once
unpacks each tile its features' windows cover as of t, updates every
feature's running aggregate in the same pass, and finally returns one msgpack array:
per row, the windowed values in order and, per latest-value view, its stored row
(checked against the ttl by the client). One EVALSHA is one round trip for N
entities x F features.

Nulls travel as `false` (no value is ever a Lua boolean: booleans are 0/1 in tiles
and restored from the feature's type by the client). `last`/`first` values travel
as the msgpack bytes they were written as, so no value passes through a Lua number
on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..aggregations import ACCUMULATORS, FUNCTIONS
from ..plan import FeaturePlan, Plan
from .layout import TileLayout, input_name, latest_code, tile_layouts


@dataclass(frozen=True)
class Slot:
    view: str
    kind: str  # window | latest
    layout: TileLayout | None
    code: str
    features: tuple[FeaturePlan, ...]  # the service's features read from this slot


@dataclass(frozen=True)
class Group:
    """The slots of one entity type: read from one hash key per entity row."""

    entity: str
    join_keys: tuple[str, ...]
    slots: tuple[Slot, ...]


def service_groups(plan: Plan, service: str) -> list[Group]:
    svc = plan.services[service]
    wanted = [plan.feature(ref) for ref in svc.features]
    by_entity: dict[str, list[Slot]] = {}
    for vname in dict.fromkeys(f.view for f in wanted):
        view = plan.views[vname]
        mine = tuple(f for f in wanted if f.view == vname)
        slots = by_entity.setdefault(view.entity, [])
        if view.kind == "latest":
            slots.append(Slot(vname, "latest", None, latest_code(view), mine))
            continue
        for lay in tile_layouts(view):
            feats = tuple(f for f in mine if f.hop_us == lay.hop_us)
            if feats:
                slots.append(Slot(vname, "window", lay, lay.code, feats))
    return [Group(e, plan.entities[e].join_keys, tuple(s)) for e, s in by_entity.items()]


def outputs(groups: list[Group]) -> list[tuple[str, object]]:
    """The values one row returns, in order: ("f", FeaturePlan) or ("latest", Slot)."""
    out: list[tuple[str, object]] = []
    for g in groups:
        for s in g.slots:
            if s.kind == "latest":
                out.append(("latest", s))
            else:
                out.extend(("f", f) for f in s.features)
    return out


def read_script(groups: list[Group], prefix: str) -> str:
    """ARGV = [t_us, n_rows, then per row one entity key per group]. The script builds the
    key names itself (fewer bytes on the wire than sending them); on Redis Cluster a
    client would send KEYS grouped by slot instead."""
    n_out = len(outputs(groups))
    L = [
        "local t = tonumber(ARGV[1])",
        "local nrows = tonumber(ARGV[2])",
        "local out = {}",
        "local unpack = cmsgpack.unpack",
        "local sunpack = struct.unpack",
        "local sub = string.sub",
        "local function fl(x, h) return x - (x % h) end",
    ]
    # window bounds, fixed for the call
    for g in groups:
        for s in g.slots:
            if s.kind == "window":
                lay = s.layout
                L.append(f"local hi_{s.code} = fl(t, {lay.hop_us})")
                L.append(f"local lo_{s.code} = fl(t - {max(f.window_us for f in s.features)}, {lay.hop_us})")
                for k, w in enumerate(_windows(s)):
                    L.append(f"local lo_{s.code}_{k} = fl(t - {w}, {lay.hop_us})")
    pos = 0
    for gi, g in enumerate(groups):
        L.append(f"local function read_{gi}(ent, base)")
        L.append(f"  local key = '{prefix}:{g.entity}:' .. ent")
        body, finals, inits, slots = [], [], [], []
        nlatest = 0
        for s in g.slots:
            if s.kind == "latest":
                nlatest += 1
                finals.append(f"out[base + {pos + 1}] = redis.call('GET', key .. ':{s.code}') or false")
                pos += 1
                continue
            lay = s.layout
            # features over the same window share one test per tile, and features that keep the
            # same running state (sum and mean of one input, say) share that state
            wins = _windows(s)
            inputs = {inp: n for n, inp in enumerate(dict.fromkeys(input_name(f) for f in s.features))}
            steps: dict[int, list[str]] = {k: [] for k in range(len(wins))}
            seen: set[str] = set()
            for f in s.features:
                k = wins.index(f.window_us)
                v = f"{s.code}_{k}_{FUNCTIONS[f.function].state}{inputs[input_name(f)]}"
                init, step, final = _feature(f, lay, v)
                if v not in seen:
                    seen.add(v)
                    inits += init
                    steps[k] += step
                finals.append(f"out[base + {pos + 1}] = {final}")
                pos += 1
            upd = []
            for k, st_lines in steps.items():
                if st_lines:
                    upd += [f"if st >= lo_{s.code}_{k} then", *("  " + x for x in st_lines), "end"]
            slots.append((s, upd))
        body += ["  " + x for x in inits]
        if slots:
            codes = ", ".join(f"'{s.code}'" for s, _ in slots)
            body.append(f"  local blocks = redis.call('HMGET', key, {codes})")
            for n, (s, upd) in enumerate(slots):
                lay = s.layout
                body.append(f"  local blk = blocks[{n + 1}]")
                body.append("  if blk then")
                if lay.numeric:
                    w = lay.width
                    names = ", ".join(f"a{x + 1}" for x in range(w))
                    body += [
                        "    local p, stop = 1, #blk",
                        "    while p < stop do",
                        f"      local st, {names}, nxt = sunpack('<{'d' * (w + 1)}', blk, p)",
                        "      p = nxt",
                        f"      if st >= lo_{s.code} and st <= hi_{s.code} then",
                        *("        " + x for x in upd),
                        "      end",
                        "    end",
                    ]
                else:
                    body += [
                        "    for _, tl in ipairs(unpack(blk)) do",
                        "      local st = tl[1]",
                        f"      if st >= lo_{s.code} and st <= hi_{s.code} then",
                        "        local a = tl",
                        *("        " + x for x in upd),
                        "      end",
                        "    end",
                    ]
                body.append("  end")
        body += ["  " + x for x in finals]
        L += body
        L.append("end")
    ng = len(groups)
    L += [
        "for r = 0, nrows - 1 do",
        f"  local base = r * {n_out}",
    ]
    for gi in range(ng):
        L += [f"  read_{gi}(ARGV[3 + r * {ng} + {gi}], base)"]
    L += ["end", "return cmsgpack.pack(out)"]
    return "\n".join(L)


def _windows(s: Slot) -> list[int]:
    """The distinct windows of a slot's features, widest first."""
    return sorted({f.window_us for f in s.features}, reverse=True)


def _feature(f: FeaturePlan, lay: TileLayout, v: str) -> tuple[list[str], list[str], str]:
    """(locals to init, Lua updating them from one tile, final value expression): the function's."""
    inp = input_name(f)

    def a(kind: str, offset: int = 0) -> str:
        acc = lay.acc(kind, inp if kind != "cnt" else None)
        if lay.numeric:
            return f"a{acc.index + 1 + offset}"
        return f"a[{acc.index + 2}]" + (f"[{offset + 1}]" if ACCUMULATORS[kind].width > 1 else "")  # a[1] is the start

    return FUNCTIONS[f.function].lua(a, v, inp is None)
