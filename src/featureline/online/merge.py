"""The stream's write path: merge partial aggregates into Redis tiles, atomically and idempotently.

`OnlineStore.merge_tiles` sends, for one or more slots of an entity type, the partial tiles that
a micro-batch of records of one Kafka (topic, partition) with offsets [lo, hi] adds to many
entities. One Lua script (generated per set of tile layouts) does, atomically for each entity:

- if the slot's last applied offset for that partition (field `<slot>:<tp>` of the entity's
  offsets hash, `layout.offsets_key`) is >= lo, nothing, and it answers with that offset: if
  it is >= hi the records were applied before (a re-delivery after a crash); if it falls
  inside [lo, hi) the caller re-sends only this entity's records after it (a replay cut at
  other batch boundaries);
- else it merges each tile into the slot's block (each state by its accumulator's
  `lua_merge`), drops tiles no window can read any more, stores the block as its section of
  the entity's value (expiring when its newest tile stops being readable: `value.py`) and
  the new offset together.

So a record delivered twice is counted once, whatever the batch boundaries; records of
one partition must be applied in offset order (Kafka's order), partitions independently.
Every key a script touches is passed in KEYS, and both of one entity's keys (its value and its
offsets) share its hash tag.
"""

from __future__ import annotations

from collections import defaultdict

from .layout import TileLayout, input_name
from .state import GUARD_ARGS, guard_lua
from .value import LUA as VALUE_LUA


def merge_script(lays: list[TileLayout], guarded: bool = False) -> str:
    """Lua merging many entities' partial tiles of one or more slots (layouts of one entity),
    records of one partition.

    KEYS = [the store's marker when `guarded`, then per entity: its offsets hash, its value
    (`value.py`)]; ARGV = [the guard's arguments when `guarded`, tp, lo, hi, now_us, then per
    entity: expire_at_ms of its offsets hash, one incoming block per slot (empty when the batch
    adds nothing to that slot)]; an incoming block is `TileLayout.pack_block` of the entity's
    partial tiles, oldest first. Returns a flat list [entity, slot, stored, ...] (0-based) of
    the slots left alone because their stored offset is >= lo (already applied up to
    `stored`); all others were merged.

    Numeric blocks are sorted fixed-width records, so each incoming tile is placed by a
    binary search and only that tile is unpacked: a merge costs O(incoming tiles), not
    O(stored tiles). Tiles no window can read any more (start + reach <= now) are dropped
    from the head of the block, and incoming ones that old are ignored (the caller counts
    them as late). The entity's value is read once and written once, its other sections
    kept (expired ones dropped).
    """
    k = len(lays)
    g = GUARD_ARGS if guarded else 0
    gk = 1 if guarded else 0
    L = guard_lua() if guarded else []
    L += VALUE_LUA.strip().splitlines()
    L += [
        f"local lo, hi, now = tonumber(ARGV[{g + 2}]), tonumber(ARGV[{g + 3}]), tonumber(ARGV[{g + 4}])",
        "local now_ms = math.floor(now / 1000)",
        "local fields = {",
    ]
    L += [f"  '{lay.code}:' .. ARGV[{g + 1}]," for lay in lays]
    L += ["}", f"local codes = {{{', '.join(repr(lay.code) for lay in lays)}}}"]
    L += [f"local reach = {{{', '.join(str(lay.reach_us) for lay in lays)}}}"]
    for j, lay in enumerate(lays):
        L += [f"local function merge{j}(blk, inc)", *("  " + x for x in _slot_merge(lay)), "end"]
    L += [
        "local left = {}",
        f"local kb = {gk}",
        f"for i = {g + 5}, #ARGV, {k + 1} do",
        "  local okey, vkey = KEYS[kb + 1], KEYS[kb + 2]",
        "  local got = redis.call('HMGET', okey, unpack(fields))",
        "  local sets, secs = {}, nil",
    ]
    for j in range(k):
        L += [
            f"  local inc = ARGV[i + {j + 1}]",
            "  if #inc > 0 then",
            f"    local stored = tonumber(got[{j + 1}] or '-1')",
            "    if stored >= lo then",
            f"      left[#left + 1] = (i - {g + 5}) / {k + 1}; left[#left + 1] = {j}; left[#left + 1] = stored",
            "    else",
            "      secs = secs or fl_parse(redis.call('GET', vkey))",
            f"      local at = fl_find(secs, codes[{j + 1}])",
            f"      local blk, newest = merge{j}(at and secs[at][3] or nil, inc)",
            f"      local exp = newest and (math.floor((newest + reach[{j + 1}]) / 1000) + 1) or 0",
            f"      if at then secs[at][2] = exp; secs[at][3] = blk else secs[#secs + 1] = {{codes[{j + 1}], exp, blk}} end",
            f"      sets[#sets + 1] = fields[{j + 1}]; sets[#sets + 1] = ARGV[{g + 3}]",
            "    end",
            "  end",
        ]
    L += [
        "  if #sets > 0 then",
        "    fl_write(vkey, secs, now_ms)",
        "    redis.call('HSET', okey, unpack(sets))",
        "    local at = ARGV[i]",
        "    if redis.call('PEXPIREAT', okey, at, 'GT') == 0 and redis.call('PTTL', okey) == -1 then redis.call('PEXPIREAT', okey, at) end",
        "  end",
        "  kb = kb + 2",
        "end",
        "return left",
    ]
    return "\n".join(L)


def _slot_merge(lay: TileLayout) -> list[str]:
    """Body of a Lua function (blk: the stored block or nil, inc: the incoming one) returning the
    merged block and its newest tile's start (nil: no tile left)."""
    reach = lay.reach_us
    if lay.numeric:
        w = lay.width
        fmt = "<" + "d" * (w + 1)
        stride = (w + 1) * 8
        return [
            "blk = blk or ''",
            f"local n = #blk / {stride}",
            "local cur = 0",
            f"while cur < n and struct.unpack('<d', blk, cur * {stride} + 1) + {reach} <= now do cur = cur + 1 end",
            "local parts = {}",
            f"for p = 1, #inc, {stride} do",
            f"  local new = {{struct.unpack('{fmt}', inc, p)}}",
            "  new[#new] = nil",
            "  local st = table.remove(new, 1)",
            f"  if st + {reach} > now then",
            "    local a, b = cur, n",
            "    while a < b do",
            "      local m = math.floor((a + b) / 2)",
            f"      if struct.unpack('<d', blk, m * {stride} + 1) < st then a = m + 1 else b = m end",
            "    end",
            f"    if a > cur then parts[#parts + 1] = string.sub(blk, cur * {stride} + 1, a * {stride}) end",
            f"    if a < n and struct.unpack('<d', blk, a * {stride} + 1) == st then",
            f"      local c = {{struct.unpack('{fmt}', blk, a * {stride} + 1)}}",
            "      c[#c] = nil; table.remove(c, 1)",
            *("      " + x for x in _merge_lines(lay, "c", "new")),
            f"      parts[#parts + 1] = struct.pack('{fmt}', st, unpack(c))",
            "      cur = a + 1",
            "    else",
            f"      parts[#parts + 1] = struct.pack('{fmt}', st, unpack(new))",
            "      cur = a",
            "    end",
            "  end",
            "end",
            f"if cur < n then parts[#parts + 1] = string.sub(blk, cur * {stride} + 1) end",
            "local out = table.concat(parts)",
            "if #out == 0 then return out, nil end",
            f"return out, struct.unpack('<d', out, #out - {stride} + 1)",
        ]
    return [
        "local tiles, order = {}, {}",
        "if blk then",
        "  for _, t in ipairs(cmsgpack.unpack(blk)) do",
        "    local st = table.remove(t, 1)",
        f"    if st + {reach} > now then tiles[st] = t; order[#order + 1] = st end",
        "  end",
        "end",
        "for _, new in ipairs(cmsgpack.unpack(inc)) do",
        "  local st = table.remove(new, 1)",
        f"  if st + {reach} > now then",
        "    local c = tiles[st]",
        "    if c == nil then tiles[st] = new; order[#order + 1] = st",
        "    else",
        *("      " + x for x in _merge_lines(lay, "c", "new")),
        "    end",
        "  end",
        "end",
        "table.sort(order)",
        "local out = {}",
        "for _, st in ipairs(order) do",
        "  local t = tiles[st]",
        "  table.insert(t, 1, st)",
        "  out[#out + 1] = t",
        "end",
        "return cmsgpack.pack(out), order[#order]",
    ]


def _merge_lines(lay: TileLayout, cur: str, new: str) -> list[str]:
    """Lua merging tile `new` into `cur` (1-based arrays of the layout's states), each state by
    its accumulator, in phases: those reading both sides' counts first, additive ones last."""
    nn = {a.input: a.index + 1 for a in lay.accs if a.kind == "nn"}
    out = []
    for a in sorted(lay.accs, key=lambda a: a.impl.phase):
        out += a.impl.lua_merge(cur, new, a.index + 1, nn.get(a.input, 0), lay.numeric)
    return out


def partial_tiles(lay: TileLayout, records: list[dict], join_keys: tuple[str, ...]) -> dict[str, dict[int, list]]:
    """Partial aggregates of records (dicts with `__t`, `__arrival`, the join keys and one value per
    input name) per entity and tile: {entity key: {tile_start: states}}. Plain Python: the
    stream engine builds the same states vectorized."""
    from .layout import entity_key

    out: dict[str, dict[int, list]] = defaultdict(dict)
    for r in records:
        ent = entity_key(r[k] for k in join_keys)
        st = r["__t"] - r["__t"] % lay.hop_us
        tile = out[ent].get(st)
        if tile is None:
            tile = out[ent][st] = _empty(lay)
        _add(lay, tile, r)
    return out


def _empty(lay: TileLayout) -> list:
    return [a.impl.empty() for a in lay.accs]


def _add(lay: TileLayout, s: list, r: dict) -> None:
    """One record into a tile's states: `cnt` always, each input's accumulators for a non-null
    value (each seeing the input's count before it), then that count."""
    t, arr = r["__t"], r["__arrival"]
    by_input: dict = {}
    for k, a in enumerate(lay.accs):
        by_input.setdefault(a.input, []).append((k, a))
    for k, _ in by_input.pop(None):
        s[k] += 1  # cnt
    for inp, accs in by_input.items():
        v = r.get(inp)
        if v is None:
            continue
        if isinstance(v, bool):
            v = int(v)
        nn = next(k for k, a in accs if a.kind == "nn")
        n0 = s[nn]
        for k, a in accs:
            if a.kind != "nn":
                s[k] = a.impl.add(s[k], v, t, arr, n0)
        s[nn] = n0 + 1


def inputs_of(view) -> dict[str, object]:
    """input name -> feature plan that defines it (column or expression)."""
    out = {}
    for f in view.features:
        inp = input_name(f)
        if inp is not None:
            out.setdefault(inp, f)
    return out
