"""How features live in Redis (store format 3): one value per entity, all its slots in it.

    <prefix>:{<entity>:<key values>}          e.g.  fl:{user:42}
        the entity's value (`value.py`): one section per slot, each with its expiry: a
        windowed (view, hop)'s tiles, oldest first (per tile its start and accumulator states:
        a "block"), readable until start + hop + widest window; or a latest-value view's row,
        msgpack [event_time_us, arrival, [values]], until event_time + ttl. The key expires
        with its longest-lived section.
    <prefix>:{<entity>:<key values>}:_off     a hash: per `<slot>:<topic>:<partition>@<epoch>`
        the last stream offset applied to that slot (only the stream's merges read it)

Both keys of one entity share the hash tag `{<entity>:<key values>}`, so on Redis Cluster
they live in one hash slot. A read is one MGET of one key per entity row and entity type: no
script, one key lookup per entity (Redis's cost per read is per key: bench/README.md).

Key values are percent-encoded for `%`, `:`, `|` and `}` (`esc`), composite ones joined by
`|`: no key value can name another entity's key or end the hash tag early.

A slot is one (view, hop) of a windowed view or one latest-value view, named by a
5-character code derived from the view, the hop and the accumulator layout, so a
layout change (a feature added) never mixes old and new tiles: old sections are simply
not read, and are dropped when they expire.

An accumulator is one partial aggregate of one input within a tile: `cnt` (events),
and per input `nn` (non-null count), `sum`, `min`, `max`, `var` (mean, M2 with `nn`
as n), `last`/`first` ([event_time, arrival, msgpack(value)]). Tiles of numeric
layouts (no last/first, no string min/max) are packed little-endian doubles, which
Lua's `struct.unpack` reads fastest (a block is (start, states...) per tile, starts
exact as doubles up to 2^53 microseconds); others are msgpack arrays. Values in numeric
tiles are exact up to 2^53 (Lua numbers are doubles).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cached_property

import msgspec

from ..aggregations import ACC_ORDER, ACCUMULATORS, FUNCTIONS
from ..plan import FeaturePlan, ViewPlan

_enc = msgspec.msgpack.Encoder()


def pack_lua(obj) -> bytes:
    """msgpack that Redis's Lua cmsgpack reads: bytes as the old raw/str type (it knows no bin)."""
    import msgpack

    return msgpack.packb(obj, use_bin_type=False)


def input_name(f: FeaturePlan) -> str | None:
    """The input a feature aggregates: a column, an expression (by feature), or None (counts events)."""
    if f.expr is not None:
        return f"expr:{f.name}"
    return f.column


@dataclass(frozen=True)
class Acc:
    kind: str  # cnt | nn | sum | min | max | var | last | first | dist | lastk | firstk
    input: str | None  # input name (None for cnt)
    index: int  # position in the tile (numeric layouts: in doubles; var takes two)
    param: int | None = None  # a sized accumulator's size (lastk/firstk: the largest k of its features)

    @cached_property
    def impl(self):
        """The accumulator's module object, sized by `param` (`Accumulator.bound`)."""
        return ACCUMULATORS[self.kind].bound(self.param)


@dataclass(frozen=True)
class TileLayout:
    view: str
    entity: str
    hop_us: int
    accs: tuple[Acc, ...]
    numeric: bool  # packed doubles (else msgpack)
    width: int  # doubles per tile (numeric layouts)
    reach_us: int  # a tile [s, s + hop) stays readable until s + hop + the widest window of this hop
    features: tuple[FeaturePlan, ...]
    code: str

    def acc(self, kind: str, inp: str | None) -> Acc:
        for a in self.accs:
            if a.kind == kind and a.input == inp:
                return a
        raise KeyError((kind, inp))

    def pack_block(self, tiles: list[tuple[int, list]]) -> bytes:
        """[(tile_start_us, accumulator states in `accs` order; var as [mean, M2])], oldest
        first -> the slot's block: packed doubles (start, states...) per tile for numeric
        layouts, else msgpack [[start, state, ...], ...]."""
        if not self.numeric:
            return pack_lua([[start, *states] for start, states in tiles])
        flat: list[float] = []
        for start, states in tiles:
            flat.append(float(start))
            for a, s in zip(self.accs, states, strict=True):
                flat.extend(a.impl.doubles(s))
        return struct.pack(f"<{len(flat)}d", *flat)


def slot_code(*parts) -> str:
    """A stable 5-character name for a slot (its section's code in the entity's value)."""
    return _b36(zlib.crc32("|".join(map(str, parts)).encode()))


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(5):
        n, r = divmod(n, 36)
        out += digits[r]
    return out


def tile_layouts(view: ViewPlan) -> list[TileLayout]:
    """One layout per hop of a windowed view."""
    out = []
    for hop in view.hops:
        feats = tuple(f for f in view.features if f.hop_us == hop)
        wanted: list[tuple[str, str | None]] = [("cnt", None)]
        types: dict[str | None, str | None] = {}
        params: dict[tuple[str, str | None], int] = {}  # a sized accumulator's largest size
        for f in feats:
            inp = input_name(f)
            if inp is None:
                continue
            types[inp] = f.input_type
            fn = FUNCTIONS[f.function]
            for k in ("nn", *fn.needs):
                if (k, inp) not in wanted:
                    wanted.append((k, inp))
            for k in fn.sized:
                params[(k, inp)] = max(params.get((k, inp), 0), f.param)
        head, rest = wanted[:1], sorted(wanted[1:], key=lambda ki: (ki[1] or "", ACC_ORDER.index(ki[0])))
        wanted = head + rest
        numeric = all(ACCUMULATORS[k].numeric(types.get(i)) for k, i in wanted)
        accs, pos = [], 0
        for k, i in wanted:
            accs.append(Acc(k, i, pos if numeric else len(accs), params.get((k, i))))
            pos += ACCUMULATORS[k].width if numeric else 1
        reach = max(f.window_us for f in feats) + hop
        code = slot_code(view.name, hop, tuple((a.kind, a.input) if a.param is None else (a.kind, a.input, a.param) for a in accs), numeric)
        out.append(TileLayout(view.name, view.entity, hop, tuple(accs), numeric, pos, reach, feats, code))
    return out


def latest_code(view: ViewPlan) -> str:
    return slot_code(view.name, "latest", tuple(f.name for f in view.features))


ESCAPES = (("%", "%25"), (":", "%3A"), ("|", "%7C"), ("}", "%7D"))  # `%` first; also in batch/online_backfill
FORMAT = "3"  # the store format these keys are; recorded in the store's marker (`state.py`)
OFFSETS = "_off"


def entity_key(values) -> str:
    """Join-key values as one string: `42`, or `a|b` for composite keys. The one key encoding
    of every path (backfill, stream, reads, reset): see `esc`."""
    return "|".join(esc(v) for v in values)


def esc(v) -> str:
    """One key value as it appears in a key name: `%`, `:`, `|` and `}` percent-encoded, so a
    value holds neither the composite separator `|`, nor the `}:` before a slot code, nor a
    `}` closing the hash tag, and no value can name another entity's key (the encoding is
    one-to-one). A null key value is `%00`, which no string encodes to (rows with null keys
    are never written: see `BatchEngine.events_sql`), so a read of a null key finds nothing,
    as a join would."""
    if v is None:
        return "%00"
    s = str(v)
    if "%" in s or ":" in s or "|" in s or "}" in s:
        for a, b in ESCAPES:
            s = s.replace(a, b)
    return s


def key_head(prefix: str, entity: str) -> str:
    """What every key of an entity type starts with; `key_head + ent + "}"` is a value key."""
    return f"{prefix}:{{{entity}:"


def value_key(prefix: str, entity: str, ent: str) -> str:
    """The key of one entity's value (all its slots: `value.py`)."""
    return f"{prefix}:{{{entity}:{ent}}}"


def offsets_key(prefix: str, entity: str, ent: str) -> str:
    """The hash of one entity's applied stream offsets, per slot and partition."""
    return f"{prefix}:{{{entity}:{ent}}}:{OFFSETS}"


def view_codes(view: ViewPlan) -> list[str]:
    """The codes of a view's slots."""
    return [latest_code(view)] if view.kind == "latest" else [lay.code for lay in tile_layouts(view)]


def covers_entity(plan, entity: str, codes) -> bool:
    """Whether `codes` include every slot of the entity type's online views (then a write of
    them replaces an entity's whole value)."""
    mine = {c for v in plan.views.values() if v.online and v.entity == entity for c in view_codes(v)}
    return mine <= set(codes)
