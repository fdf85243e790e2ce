"""The read path: Redis fetches the tiles, the client computes the windows.

A read is one command: an MGET of one value per entity row and entity type (`layout.py`),
holding the slots (tile blocks and latest-value rows) the service's features need with
others of the entity. Redis runs no script and no arithmetic. The client computes each
feature through its function's module (aggregations/): for up to `ROWS_IN_PYTHON` rows in
plain Python (`reduce_row`, over a memoryview of each block), for more over all rows at once
(`reduce`: a slot's packed tiles of all rows are one float64 matrix, each window one mask over
the tile starts). Both add a row's tiles one after the other, oldest first, so a row reads the
same bits alone or with others.

A window as of t covers the tiles with floor(t - W, hop) <= start <= floor(t, hop)
(docs/semantics.md, "Windowed aggregations").
"""

from __future__ import annotations

import struct
import sys
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import msgpack
import numpy as np

from ..aggregations import FUNCTIONS
from ..aggregations.window import Row, Tiles, Window
from ..plan import FeaturePlan, Plan
from .layout import TileLayout, input_name, key_head, latest_code, tile_layouts
from .value import into

LITTLE = sys.byteorder == "little"
ROWS_IN_PYTHON = 4  # reads of up to this many rows compute in pure Python (numpy's per-call cost)


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


@dataclass(frozen=True)
class Slot:
    view: str
    kind: str  # window | latest
    layout: TileLayout | None
    code: str
    features: tuple[FeaturePlan, ...]  # the service's features read from this slot


@dataclass(frozen=True)
class Group:
    """The slots of one entity type: read from one value per entity row."""

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
    """One service's read: its command for some rows, and the features from its reply."""

    def __init__(self, plan: Plan, service: str, prefix: str):
        self.groups = service_groups(plan, service)
        self.outputs = outputs(self.groups)
        self.at = {id(what): j for j, (_, what) in enumerate(self.outputs)}  # output -> its column
        self.heads = [key_head(prefix, g.entity).encode() for g in self.groups]  # one key per row and group
        self.slots: list[list[tuple[int, bytes]]] = [[] for _ in self.groups]  # per group: (slot index, code)
        self.nslots = 0
        self.latest: list[tuple[Slot, int]] = []  # latest slot, its slot index
        # per window slot: its layout, its slot index, its column and spot maps,
        # its features as (output column, function, input, window, its index in the distinct
        # windows), the distinct windows
        self.computed: list[tuple] = []
        for gi, g in enumerate(self.groups):
            for s in g.slots:
                k = self.nslots
                self.nslots += 1
                self.slots[gi].append((k, s.code.encode()))
                if s.kind == "latest":
                    self.latest.append((s, k))
                    continue
                wins = tuple(dict.fromkeys(f.window_us for f in s.features))
                feats = [(self.at[id(f)], FUNCTIONS[f.function].bound(f.param, f.input_type), input_name(f), f.window_us, wins.index(f.window_us)) for f in s.features]
                self.computed.append((s.layout, k, _columns(s.layout), _spots(s.layout), feats, wins))

    def commands(self, ents: list[str]) -> tuple[bytes, int]:
        """`ents`: per row, one entity key per group (`OnlineStore._prepare`) -> (the command,
        how many replies it gets: 1, or 0 for no rows)."""
        ng = len(self.groups)
        n = len(ents) // ng if ng else 0
        if not n or not self.nslots:
            return b"", 0
        heads = self.heads
        keys = [_bulk(heads[i % ng] + e.encode() + b"}") for i, e in enumerate(ents)]
        return b"*%d\r\n$4\r\nMGET\r\n" % (1 + len(keys)) + b"".join(keys), 1

    def per_slot(self, values: list) -> list[list]:
        """The MGET's values (one per row and group) -> per slot, its payload of each row (None: none)."""
        ng = len(self.groups)
        n = len(values) // ng if ng else 0
        per: list[list] = [[None] * n for _ in range(self.nslots)]
        for gi, members in enumerate(self.slots):
            cols = {code: per[k] for k, code in members}
            for r, v in enumerate(values[gi::ng]):
                if v:
                    into(v, cols, r)
        return per

    def columns(self, replies: list, n: int, t: int) -> list[list]:
        """The reply of `commands` for `n` rows -> one column per output: feature values (None
        for null; msgpack bytes for `msgpack_value` functions), or a latest-value slot's rows."""
        cols: list = [None] * len(self.outputs)
        at = self.at
        per = self.per_slot(replies[0]) if n and self.nslots else [[None] * n for _ in range(self.nslots)]
        for slot, j in self.latest:
            cols[at[id(slot)]] = per[j]
        if n <= ROWS_IN_PYTHON:
            self._rows(per, n, t, cols)
            return cols
        for lay, j, column, spots, feats, wins in self.computed:
            tiles = _tiles(lay, per[j], n, column, spots)
            hop = lay.hop_us
            hi = t - t % hop
            windows = {w: Window(tiles, (tiles.start >= (t - w) - (t - w) % hop) & (tiles.start <= hi)) for w in wins}
            for c, fn, inp, w, _ in feats:
                cols[c] = fn.reduce(windows[w], inp)
        return cols

    def _rows(self, per: list[list], n: int, t: int, cols: list) -> None:
        """`columns` row by row, in pure Python (`Function.reduce_row`)."""
        for lay, j, column, spots, feats, wins in self.computed:
            hop = lay.hop_us
            hi = t - t % hop
            los = [(t - w) - (t - w) % hop for w in wins]
            outs: list[list] = [[] for _ in feats]
            for r in range(n):
                starts, get = _row_tiles(lay, per[j][r], spots)
                b = bisect_right(starts, hi)
                rows = [Row(get, column, bisect_left(starts, lo), b) for lo in los]
                for out, (_, fn, inp, _, wi) in zip(outs, feats, strict=True):
                    out.append(fn.reduce_row(rows[wi], inp))
            for out, f in zip(outs, feats, strict=True):
                cols[f[0]] = out


def _row_tiles(lay: TileLayout, blk, spots: list[tuple[int, int, int]]):
    """One row's block -> (tile starts, get(column, first tile, end tile) -> that column's states)."""
    if not blk:
        return (), lambda c, a, b: []
    if lay.numeric:
        stride = lay.width + 1
        # little-endian doubles: a memoryview makes floats only of what a window reads
        vals = memoryview(blk).cast("d") if LITTLE else struct.unpack(f"<{len(blk) // 8}d", blk)
        return vals[::stride], lambda c, a, b: vals[a * stride + c : b * stride : stride]
    tiles = msgpack.unpackb(blk, raw=True)
    return [tl[0] for tl in tiles], lambda c, a, b: [_state(tl, spots[c - 1]) for tl in tiles[a:b]]


def _state(tile: list, spot: tuple[int, int, int]):
    """One state of a msgpack tile at a `_spots` entry."""
    i, p, w = spot
    return tile[i][p] if w > 1 else tile[i]


def _spots(lay: TileLayout) -> list[tuple[int, int, int]]:
    """Per matrix column after the start: (position in a msgpack tile, part, the state's width)."""
    return [(1 + a.index, p, a.impl.width) for a in lay.accs for p in range(a.impl.width)]


def _columns(lay: TileLayout):
    """(kind, input, part=0) -> the column of that state in `_tiles`' matrix (0: tile start)."""
    at: dict[tuple, int] = {}
    j = 1
    for a in lay.accs:
        for part in range(a.impl.width):
            at[(a.kind, a.input, part)] = j
            j += 1
    return lambda kind, inp, part=0: at[(kind, None if kind == "cnt" else inp, part)]


def _tiles(lay: TileLayout, blocks: list, n: int, column, spots: list[tuple[int, int, int]]) -> Tiles:
    """A slot's blocks of n rows -> (a float64 matrix, a row per tile: its start, then its
    states as `_columns` places them; a column's states as objects (msgpack tiles, else None);
    tiles per row)."""
    if lay.numeric:  # the blocks are that matrix already
        stride = (lay.width + 1) * 8
        counts = np.fromiter((len(b) // stride if b else 0 for b in blocks), np.int64, n)
        mat = np.frombuffer(b"".join(b for b in blocks if b), "<f8").reshape(-1, lay.width + 1)
        return Tiles(mat, None, column, counts)
    tiles = [msgpack.unpackb(b, raw=True) if b else [] for b in blocks]
    counts = np.fromiter((len(ts) for ts in tiles), np.int64, n)
    rows = [tl for ts in tiles for tl in ts]
    mat = np.full((len(rows), 1 + len(spots)), np.nan)
    for r, tl in enumerate(rows):
        mat[r, 0] = tl[0]
        for j, spot in enumerate(spots, start=1):
            x = _state(tl, spot)
            if isinstance(x, (int, float)):
                mat[r, j] = x
    return Tiles(mat, lambda j: [_state(tl, spots[j - 1]) for tl in rows], column, counts)
