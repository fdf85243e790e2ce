"""The read path: Redis fetches the tiles, the client computes the windows.

One fixed script (`FETCH`, the same for every service and request) fetches, for every entity
row, the slot blocks its features need from each entity hash (HMGET) and the rows of its
latest-value views (GET), in one round trip; no arithmetic runs in Redis. The client then
computes every feature over all rows at once: a slot's packed tiles of all rows become one
float64 matrix (`numpy.frombuffer`), each window one mask over its tile starts, each
feature one call to its function's `reduce` (aggregations/), which combines the kept tiles
per entity.

A window as of t covers the tiles with floor(t - W, hop) <= start <= floor(t, hop)
(docs/semantics.md, "Windowed aggregations").
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from ..aggregations import ACCUMULATORS, FUNCTIONS
from ..plan import FeaturePlan, Plan
from .layout import TileLayout, input_name, latest_code, tile_layouts

# KEYS: per row, its keys (entity hashes, latest-value keys). ARGV: the number of field lists,
# each list (its length, then its fields), then the row pattern: its length, then per key of a
# row the list to HMGET (0: GET the key). Returns every value in order, nil for a missing one.
FETCH = """
local nl, p = tonumber(ARGV[1]), 2
local lists = {}
for l = 1, nl do
  local c = tonumber(ARGV[p])
  lists[l] = {unpack(ARGV, p + 1, p + c)}
  p = p + c + 1
end
local np = tonumber(ARGV[p])
local pat = {}
for k = 1, np do pat[k] = tonumber(ARGV[p + k]) end
local out, o = {}, 0
for i = 1, #KEYS do
  local l = pat[(i - 1) % np + 1]
  if l == 0 then
    o = o + 1
    out[o] = redis.call('GET', KEYS[i])
  else
    local got = redis.call('HMGET', KEYS[i], unpack(lists[l]))
    for j = 1, #got do out[o + j] = got[j] end
    o = o + #got
  end
end
return out
"""


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
    """The columns a read computes, in order: ("f", FeaturePlan) or ("latest", Slot)."""
    out: list[tuple[str, object]] = []
    for g in groups:
        for s in g.slots:
            if s.kind == "latest":
                out.append(("latest", s))
            else:
                out.extend(("f", f) for f in s.features)
    return out


class ServiceRead:
    """One service's read: the keys and arguments of `FETCH`, and the features from its reply."""

    def __init__(self, plan: Plan, service: str, prefix: str):
        self.groups = service_groups(plan, service)
        self.outputs = outputs(self.groups)
        self.prefix = prefix
        lists: list[list[str]] = []
        pattern: list[int] = []
        self.suffixes: list[tuple[int, str]] = []  # per key of a row: (group, key suffix)
        self.places: list[tuple[Slot, int]] = []  # per slot: its position in a row's reply
        pos = 0
        for gi, g in enumerate(self.groups):
            windows = [s for s in g.slots if s.kind == "window"]
            if windows:
                lists.append([s.code for s in windows])
                pattern.append(len(lists))
                self.suffixes.append((gi, ""))
                for s in windows:
                    self.places.append((s, pos))
                    pos += 1
            for s in g.slots:
                if s.kind == "latest":
                    pattern.append(0)
                    self.suffixes.append((gi, ":" + s.code))
                    self.places.append((s, pos))
                    pos += 1
        self.width = pos  # reply values per row
        head: list = [len(lists)]
        for fields in lists:
            head += [len(fields), *fields]
        self.argv_tail = [*head, len(pattern), *pattern]
        self.entity_prefixes = [f"{prefix}:{g.entity}:" for g in self.groups]
        self.at = {id(what): j for j, (_, what) in enumerate(self.outputs)}  # output -> its column

    def keys(self, ents: list[str]) -> list[str]:
        """`ents`: per row, one entity key per group (`OnlineStore._prepare`)."""
        ng = len(self.groups)
        pre = self.entity_prefixes
        return [pre[gi] + ents[r * ng + gi] + suffix for r in range(len(ents) // ng) for gi, suffix in self.suffixes]

    def columns(self, reply: list, n: int, t: int) -> list[list]:
        """`FETCH`'s reply for `n` rows -> one column per output: feature values (None for null;
        msgpack bytes for `msgpack_value` functions), or a latest-value slot's stored rows."""
        cols: list = [None] * len(self.outputs)
        at = self.at
        for slot, pos in self.places:
            blocks = reply[pos :: self.width] if reply else [None] * n
            if slot.kind == "latest":
                cols[at[id(slot)]] = blocks
                continue
            lay = slot.layout
            start, seg, col = _tiles(lay, blocks, n)
            hi = t - t % lay.hop_us
            keep: dict[int, np.ndarray] = {}
            for f in slot.features:
                k = keep.get(f.window_us)
                if k is None:
                    lo = (t - f.window_us) - (t - f.window_us) % lay.hop_us
                    k = keep[f.window_us] = (start >= lo) & (start <= hi)
                inp = input_name(f)
                cols[at[id(f)]] = FUNCTIONS[f.function].reduce(col(inp), k, seg, n, inp is None)
        return cols


def _tiles(lay: TileLayout, blocks: list, n: int):
    """A slot's blocks of n rows -> (tile starts, each tile's row, col(input)(kind, part=0))."""
    if lay.numeric:
        stride = (lay.width + 1) * 8
        counts = np.fromiter((len(b) // stride if b else 0 for b in blocks), np.int64, n)
        mat = np.frombuffer(b"".join(b for b in blocks if b), "<f8").reshape(-1, lay.width + 1)

        def col(inp):
            def get(kind: str, part: int = 0):
                return mat[:, 1 + lay.acc(kind, None if kind == "cnt" else inp).index + part]

            return get

        return mat[:, 0], np.repeat(np.arange(n), counts), col
    tiles = [msgpack.unpackb(b, raw=True) if b else [] for b in blocks]
    rows = [tl for ts in tiles for tl in ts]
    counts = np.fromiter((len(ts) for ts in tiles), np.int64, n)

    def col(inp):
        def get(kind: str, part: int = 0):
            i = 1 + lay.acc(kind, None if kind == "cnt" else inp).index
            if ACCUMULATORS[kind].width > 1:
                return [tl[i][part] for tl in rows]
            return [tl[i] for tl in rows]

        return get

    return np.array([tl[0] for tl in rows], dtype=np.float64), np.repeat(np.arange(n), counts), col
