"""How a feature view lives in Redis: keys, tile fields and accumulator layout.

Windowed views: one Redis hash per (view, hop, entity),

    <prefix>:<view>:<hop_us>:<entity>     field <tile_start_us>  -> msgpack array of accumulator states
                                          field _off:<topic>:<partition> -> last applied offset (stream)

one field per non-empty tile (tile = [start, start + hop)), with the key's expiry set to
when its newest tile stops being readable by any window (start + hop + widest window).
Latest-value views: one string per (view, entity),

    <prefix>:<view>:latest:<entity>       msgpack [event_time_us, arrival, value...], expiring at event_time + ttl

An accumulator is one partial aggregate of one input within a tile: `cnt` (events),
and per input `nn` (non-null count), `sum`, `min`, `max`, `last`/`first`
([event_time, arrival, msgpack(value)]), `var` ([mean, M2], with `nn` as n). A tile's
array holds the accumulators every feature of the (view, hop) needs, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import FeaturePlan, Plan, ViewPlan

# aggregation function -> accumulators it needs (besides `nn` for any column input)
NEEDS = {
    "count": (),
    "sum": ("sum",),
    "mean": ("sum",),
    "min": ("min",),
    "max": ("max",),
    "last": ("last",),
    "first": ("first",),
    "variance": ("var",),
    "stddev": ("var",),
}
ACC_ORDER = ("nn", "sum", "min", "max", "last", "first", "var")


def input_name(f: FeaturePlan) -> str | None:
    """The input a feature aggregates: a column, an expression (by feature), or None (counts events)."""
    if f.expr is not None:
        return f"expr:{f.name}"
    return f.column


@dataclass(frozen=True)
class Acc:
    kind: str  # cnt | nn | sum | min | max | last | first | var
    input: str | None  # input name (None for cnt)
    index: int  # position in the tile array


@dataclass(frozen=True)
class TileLayout:
    view: str
    hop_us: int
    accs: tuple[Acc, ...]
    reach_us: int  # a tile [s, s + hop) stays readable until s + hop + widest window using this hop
    features: tuple[FeaturePlan, ...]

    def acc(self, kind: str, inp: str | None) -> Acc:
        for a in self.accs:
            if a.kind == kind and a.input == inp:
                return a
        raise KeyError((kind, inp))


def tile_layouts(view: ViewPlan) -> list[TileLayout]:
    """One layout per hop of a windowed view."""
    out = []
    for hop in view.hops:
        feats = tuple(f for f in view.features if f.hop_us == hop)
        wanted: list[tuple[str, str | None]] = [("cnt", None)]
        for f in feats:
            inp = input_name(f)
            if inp is None:
                continue
            kinds = ("nn", *NEEDS[f.function])
            for k in kinds:
                if (k, inp) not in wanted:
                    wanted.append((k, inp))
        wanted.sort(key=lambda ki: (-1 if ki[0] == "cnt" else 0, ki[1] or "", ACC_ORDER.index(ki[0]) if ki[0] in ACC_ORDER else -1))
        accs = tuple(Acc(k, i, n) for n, (k, i) in enumerate(wanted))
        reach = max(f.window_us for f in feats) + hop
        out.append(TileLayout(view.name, hop, accs, reach, feats))
    return out


def entity_key(values) -> str:
    """Join-key values as one string: `42`, or `a|b` for composite keys (| and \\ escaped)."""
    return "|".join(_esc(v) for v in values)


def _esc(v) -> str:
    s = str(v)
    return s.replace("\\", "\\\\").replace("|", "\\|") if ("|" in s or "\\" in s) else s


def window_key(prefix: str, view: str, hop_us: int, entity: str) -> str:
    return f"{prefix}:{view}:{hop_us}:{entity}"


def latest_key(prefix: str, view: str, entity: str) -> str:
    return f"{prefix}:{view}:latest:{entity}"


def layouts(plan: Plan) -> dict[tuple[str, int], TileLayout]:
    out = {}
    for v in plan.views.values():
        if v.kind == "window":
            for lay in tile_layouts(v):
                out[(v.name, lay.hop_us)] = lay
    return out
