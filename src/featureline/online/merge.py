"""The stream's write path: merge partial aggregates into Redis tiles, atomically and idempotently.

For one entity and one slot, `OnlineStore.merge` sends the partial tiles a micro-batch
built from records of one Kafka (topic, partition) with offsets [lo, hi]. One Lua script
(generated per tile layout) does, atomically:

- if the slot's last applied offset for that partition (field `_off:<slot>:<tp>`) is
  >= hi, nothing: the records were applied before (a re-delivery after a crash);
- if it falls inside [lo, hi), nothing either, and it answers with that offset so the
  caller re-sends only the records after it (a replay cut at other batch boundaries);
- else it merges each tile into the slot's block (counts and sums add, min/max and
  last/first compare, variances combine by Chan's formula), drops tiles no window can
  read any more, stores the block and the new offset together, and extends the key's
  expiry.

So a record delivered twice is counted once, whatever the batch boundaries; records of
one partition must be applied in offset order (Kafka's order), partitions independently.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from .layout import TileLayout, input_name

_enc = msgspec.msgpack.Encoder()


def merge_script(lay: TileLayout) -> str:
    """Lua: KEYS[1] = entity hash; ARGV = [tp, lo, hi, now_us, expire_at_ms, start1, states1, start2, states2, ...]
    (states as in `TileLayout.pack_block` of one tile, without the start). Returns -1 when applied,
    else the stored offset (nothing applied)."""
    code = lay.code
    w = lay.width
    L = [
        "local key = KEYS[1]",
        f"local offf = '_off:{code}:' .. ARGV[1]",
        "local lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3])",
        "local stored = tonumber(redis.call('HGET', key, offf) or '-1')",
        "if stored >= lo then return stored end",
        "local now = tonumber(ARGV[4])",
        f"local cutoff = now - {lay.reach_us}",
        f"local blk = redis.call('HGET', key, '{code}')",
        "local tiles, order = {}, {}",
    ]
    if lay.numeric:
        fmt = "<" + "d" * (w + 1)
        one = "<" + "d" * w
        L += [
            "if blk then",
            "  local p, stop = 1, #blk",
            "  while p < stop do",
            f"    local t = {{struct.unpack('{fmt}', blk, p)}}",
            "    p = t[#t]; t[#t] = nil",
            "    local st = table.remove(t, 1)",
            "    if st + " + str(lay.reach_us) + " > now then tiles[st] = t; order[#order + 1] = st end",
            "  end",
            "end",
        ]
        L += _incoming(lay, [f"local new = {{struct.unpack('{one}', ARGV[i + 1])}}", "new[#new] = nil"])
        L += [
            "table.sort(order)",
            "local parts = {}",
            "for _, st in ipairs(order) do",
            "  if st >= cutoff - " + str(lay.hop_us) + " then",
            f"    parts[#parts + 1] = struct.pack('{fmt}', st, unpack(tiles[st]))",
            "  end",
            "end",
            f"redis.call('HSET', key, '{code}', table.concat(parts), offf, ARGV[3])",
        ]
    else:
        L += [
            "if blk then",
            "  for _, t in ipairs(cmsgpack.unpack(blk)) do",
            "    local st = table.remove(t, 1)",
            "    if st + " + str(lay.reach_us) + " > now then tiles[st] = t; order[#order + 1] = st end",
            "  end",
            "end",
        ]
        L += _incoming(lay, ["local new = cmsgpack.unpack(ARGV[i + 1])"])
        L += [
            "table.sort(order)",
            "local out = {}",
            "for _, st in ipairs(order) do",
            "  local t = tiles[st]",
            "  table.insert(t, 1, st)",
            "  out[#out + 1] = t",
            "end",
            f"redis.call('HSET', key, '{code}', cmsgpack.pack(out), offf, ARGV[3])",
        ]
    L += [
        "local at = tonumber(ARGV[5])",
        "local curx = redis.call('PEXPIRETIME', key)",
        "if curx == -1 or curx < at then redis.call('PEXPIREAT', key, at) end",
        "return -1",
    ]
    return "\n".join(L)


def _incoming(lay: TileLayout, decode: list[str]) -> list[str]:
    """Lua folding each incoming tile (ARGV pairs from 6 on, decoded by `decode` into `new`)
    into `tiles`: a new tile is inserted, an existing one merged."""
    return [
        "for i = 6, #ARGV, 2 do",
        "  local st = tonumber(ARGV[i])",
        *("  " + x for x in decode),
        "  local cur = tiles[st]",
        "  if cur == nil then tiles[st] = new; order[#order + 1] = st",
        "  else",
        *("    " + x for x in _merge_lines(lay, "cur", "new")),
        "  end",
        "end",
    ]


def _merge_lines(lay: TileLayout, cur: str, new: str) -> list[str]:
    """Lua merging tile `new` into `cur` (1-based arrays of the layout's states)."""
    out = []
    nn_of = {}
    for a in lay.accs:
        if a.kind == "nn":
            nn_of[a.input] = a
    # variances first: they need both sides' counts before `nn` is added up
    for a in lay.accs:
        i = a.index + 1
        if a.kind == "var":
            n = nn_of[a.input].index + 1
            if lay.numeric:
                m1, q1 = f"{cur}[{i}]", f"{cur}[{i + 1}]"
                m2, q2 = f"{new}[{i}]", f"{new}[{i + 1}]"
            else:
                m1, q1 = f"{cur}[{i}][1]", f"{cur}[{i}][2]"
                m2, q2 = f"{new}[{i}][1]", f"{new}[{i}][2]"
            out += [
                f"do local na, nb = {cur}[{n}], {new}[{n}]",
                "  if nb > 0 then",
                f"    if na == 0 then {m1} = {m2}; {q1} = {q2}",
                f"    else local d = {m2} - {m1}; local nt = na + nb; {m1} = {m1} + d * nb / nt; {q1} = {q1} + {q2} + d * d * na * nb / nt end",
                "  end",
                "end",
            ]
    for a in lay.accs:
        i = a.index + 1
        n = nn_of.get(a.input)
        if a.kind in ("min", "max"):
            cmp = "<" if a.kind == "min" else ">"
            ni = n.index + 1
            out.append(f"if {new}[{ni}] > 0 and ({cur}[{ni}] == 0 or {new}[{i}] {cmp} {cur}[{i}]) then {cur}[{i}] = {new}[{i}] end")
        elif a.kind in ("last", "first"):
            ni = n.index + 1
            x, b = f"{new}[{i}]", f"{cur}[{i}]"
            better = f"{x}[1] > {b}[1] or ({x}[1] == {b}[1] and {x}[2] > {b}[2])" if a.kind == "last" else f"{x}[1] < {b}[1] or ({x}[1] == {b}[1] and {x}[2] < {b}[2])"
            out.append(f"if {new}[{ni}] > 0 and ({cur}[{ni}] == 0 or {better}) then {cur}[{i}] = {x} end")
    for a in lay.accs:  # additive ones last (min/max/last/first/var looked at the old counts)
        i = a.index + 1
        if a.kind in ("cnt", "nn", "sum"):
            out.append(f"{cur}[{i}] = {cur}[{i}] + {new}[{i}]")
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
    states = []
    for a in lay.accs:
        if a.kind == "var":
            states.append([0.0, 0.0])
        elif a.kind in ("last", "first"):
            states.append([0, 0, b""])
        else:
            states.append(0)
    return states


def _add(lay: TileLayout, s: list, r: dict) -> None:
    t, arr = r["__t"], r["__arrival"]
    by_input = {}
    for k, a in enumerate(lay.accs):
        by_input.setdefault(a.input, {})[a.kind] = k
    s[by_input[None]["cnt"]] += 1
    for inp, kinds in by_input.items():
        if inp is None:
            continue
        v = r.get(inp)
        if v is None:
            continue
        if isinstance(v, bool):
            v = int(v)
        nn = kinds["nn"]
        n0 = s[nn]
        if "var" in kinds:
            m, q = s[kinds["var"]]
            d = v - m
            m += d / (n0 + 1)
            q += d * (v - m)
            s[kinds["var"]] = [m, q]
        if "min" in kinds and (n0 == 0 or v < s[kinds["min"]]):
            s[kinds["min"]] = v
        if "max" in kinds and (n0 == 0 or v > s[kinds["max"]]):
            s[kinds["max"]] = v
        if "last" in kinds:
            cur = s[kinds["last"]]
            if n0 == 0 or (t, arr) > (cur[0], cur[1]):
                s[kinds["last"]] = [t, arr, _enc.encode(v)]
        if "first" in kinds:
            cur = s[kinds["first"]]
            if n0 == 0 or (t, arr) < (cur[0], cur[1]):
                s[kinds["first"]] = [t, arr, _enc.encode(v)]
        if "sum" in kinds:
            s[kinds["sum"]] += v
        s[nn] = n0 + 1


def inputs_of(view) -> dict[str, object]:
    """input name -> feature plan that defines it (column or expression)."""
    out = {}
    for f in view.features:
        inp = input_name(f)
        if inp is not None:
            out.setdefault(inp, f)
    return out
