"""Store format 3: an entity's value, all of its slots in one Redis string.

An entity (of one entity type) has one value holding a *section* per slot (`layout.py`: a
windowed view's hop, or a latest-value view), back to back:

    code (5 bytes) | expire_ms (little-endian double) | payload length (little-endian u32) | payload

The payload is the slot's tile block (`TileLayout.pack_block`) or latest row (msgpack
[event_time_us, arrival, values]); `expire_ms` is when nothing in it can be read any more
(tiles: newest start + reach; a row: event time + ttl). The key expires with its longest-lived
section. Writers drop the sections that have expired (`LUA`'s `fl_write`); readers need not
look at the expiry: an expired section holds only tiles outside every window and rows past
their ttl as of any later time, which the read's arithmetic leaves out anyway
(docs/semantics.md). An idle entity keeps its expired sections until it is written again or
its key expires: at most one block per slot.

Why one value: Redis's time per read is per key looked up (~1.2-1.6 us a key here), not per
byte, so one key per entity row is the cheapest read there is (bench/README.md).
"""

from __future__ import annotations

import struct

import numpy as np

HEADER = struct.Struct("<5sdI")  # code, expire_ms, payload length
HEAD = HEADER.size  # 17
_CODE_LEN = struct.Struct("<5s8xI")  # HEADER without the expiry
_HDR_DTYPE = np.dtype([("c", "S5"), ("e", "<f8"), ("l", "<u4")])  # packed: the same 17 bytes


def into(value, cols: dict, r: int) -> None:
    """Put each section of an entity's value whose code is in `cols` ({code: list}) at row r of
    its list: one pass, no copy but the payloads (the read path, `read.ServiceRead.per_slot`)."""
    p, end = 0, len(value)
    unpack, get = _CODE_LEN.unpack_from, cols.get
    while p < end:
        code, ln = unpack(value, p)
        p += HEAD
        col = get(code)
        if col is not None:
            col[r] = value[p : p + ln]
        p += ln


def pack(secs) -> bytes:
    """[(code, expire_ms, payload)] -> a value (tests and tools; the backfill uses `assemble`)."""
    return b"".join(HEADER.pack(c.encode() if isinstance(c, str) else c, e, len(p)) + p for c, e, p in secs)


def assemble(writes):
    """`backend.SlotWrites` of one entity type (each entity at most once per slot) -> per entity
    its value of those sections: (entity keys, expire_ms of the longest section, values), the
    entities in key order when there are several slots (else in the writes' order); None when
    there is nothing to write. Vectorized: no Python per
    entity or section."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ws = [w for w in writes if len(w.ents)]
    if not ws:
        return None
    ents = pa.concat_arrays([_arr(w.ents).cast(pa.large_string()) for w in ws])
    vals = pa.concat_arrays([_arr(w.values).cast(pa.large_binary()) for w in ws])
    exp = np.concatenate([np.asarray(w.expire_ms, np.int64) for w in ws])
    n = len(ents)
    hdr = np.empty(n, _HDR_DTYPE)
    hdr["c"] = np.concatenate([np.full(len(w.ents), w.code.encode(), "S5") for w in ws])
    hdr["e"] = exp
    hdr["l"] = pc.binary_length(vals).to_numpy(zero_copy_only=False)
    heads = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(np.arange(n + 1, dtype=np.int64) * HEAD), pa.py_buffer(hdr.view(np.uint8))]
    )
    secs = pc.binary_join_element_wise(heads, vals, pa.scalar(b"", pa.large_binary()))
    if len(ws) > 1:  # an entity's sections side by side
        order = pc.sort_indices(ents)
        ents, secs, exp = ents.take(order), secs.take(order), exp[order.to_numpy()]
    if n > 1:
        neq = pc.not_equal(ents.slice(1), ents.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        first = np.concatenate([[0], np.flatnonzero(neq) + 1]).astype(np.int64)
    else:
        first = np.zeros(1, np.int64)
    offs = np.frombuffer(secs.buffers()[1], np.int64, n + 1, secs.offset * 8)
    bounds = np.concatenate([offs[first], offs[-1:]])
    values = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(first), [None, pa.py_buffer(bounds), secs.buffers()[2]])
    return ents.take(pa.array(first)), np.maximum.reduceat(exp, first), values


def _arr(x):
    import pyarrow as pa

    if isinstance(x, pa.ChunkedArray):
        return x.combine_chunks()
    return x if isinstance(x, pa.Array) else pa.array(x)


# Lua helpers for the scripts that write values (merge.py, store.py): parse a value into an
# array of sections {code, expire_ms, payload}, find one, and store the live ones (expire_ms >
# now_ms) with the key expiring with the longest, or delete the key when none is left.
LUA = """
local function fl_parse(v)
  local out = {}
  if not v then return out end
  local p, n = 1, #v
  while p <= n do
    local code, exp, len = struct.unpack('<c5dI4', v, p)
    out[#out + 1] = {code, exp, string.sub(v, p + 17, p + 16 + len)}
    p = p + 17 + len
  end
  return out
end
local function fl_find(secs, code)
  for k = 1, #secs do if secs[k][1] == code then return k end end
  return nil
end
local function fl_write(key, secs, now_ms)
  local parts, top = {}, 0
  for _, s in ipairs(secs) do
    if s[3] and s[2] > now_ms then
      parts[#parts + 1] = struct.pack('<c5dI4', s[1], s[2], #s[3])
      parts[#parts + 1] = s[3]
      if s[2] > top then top = s[2] end
    end
  end
  if top == 0 then redis.call('DEL', key)
  else redis.call('SET', key, table.concat(parts), 'PXAT', string.format('%d', top)) end
end
"""

# The absolute writes that keep the rest of a value (a backfill of some of an entity type's
# views, a reset of some views). KEYS: entity value keys; ARGV: now_ms, the codes replaced
# (concatenated, 5 characters each), then per key its new sections (possibly none). Every
# section of a replaced code goes, then the new ones are added. Returns how many keys held a
# replaced section or got a new one.
PUT = (
    LUA
    + """
local now, drop = tonumber(ARGV[1]), {}
for p = 1, #ARGV[2], 5 do drop[string.sub(ARGV[2], p, p + 4)] = true end
local touched = 0
for k = 1, #KEYS do
  local secs, keep, hit = fl_parse(redis.call('GET', KEYS[k])), {}, false
  for _, s in ipairs(secs) do
    if drop[s[1]] then hit = true else keep[#keep + 1] = s end
  end
  local new = fl_parse(ARGV[k + 2])
  for _, s in ipairs(new) do keep[#keep + 1] = s end
  if hit or #new > 0 then
    fl_write(KEYS[k], keep, now)
    touched = touched + 1
  end
end
return touched
"""
)
