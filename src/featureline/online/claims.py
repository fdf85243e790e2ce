"""The stream's uniqueness claims in Redis: the first record with a value wins (stream/apply.py).

One hash per unique field and uniqueWithin bucket of event time (contract setting, default 1d):
`<prefix>:_uniq:<contract>:<field>:<bucket start us>`, value -> claim "<topic>:<partition>:<offset>".
KEYS = [that hash]; ARGV = [expire_at_ms, msgpack list of values, msgpack list of offsets,
"<topic>:<partition>"]. Answers [index (0-based), holder, ...] for the values another record
claimed first (a record's own claim, a replay, is not a duplicate). Values are looked up with one
HMGET per chunk and claimed with one HSET: a redis.call per record cost ~5 us of Redis time,
this ~1. The hash expires when no record of its bucket can change a windowed feature any more
(stream/apply.py). The stream's calls are guarded (`state.guard_lua`): KEYS starts with the
store's marker and ARGV with the guard's arguments.
"""

from __future__ import annotations

from .state import GUARD_ARGS, guard_lua

CLAIM = """
local cur, out = KEYS[#KEYS], {}
local vals, offs, tp = cmsgpack.unpack(ARGV[2]), cmsgpack.unpack(ARGV[3]), ARGV[4]
local n, mine = #vals, {}
for s = 1, n, 3000 do
  local e = math.min(n, s + 2999)
  local chunk = {}
  for i = s, e do chunk[#chunk + 1] = vals[i] end
  local hc = redis.call('HMGET', cur, unpack(chunk))
  local sets = {}
  for k = 1, #chunk do
    local i, v = s + k - 1, chunk[k]
    local me = tp .. ':' .. string.format('%d', offs[s + k - 1])
    local holder = hc[k] or mine[v]
    if not holder then
      mine[v] = me
      sets[#sets + 1] = v
      sets[#sets + 1] = me
    elseif holder ~= me then
      out[#out + 1] = i - 1
      out[#out + 1] = holder
    end
  end
  if #sets > 0 then redis.call('HSET', cur, unpack(sets)) end
end
if redis.call('EXISTS', cur) == 1 then redis.call('PEXPIREAT', cur, ARGV[1]) end
return out
"""


def claim_script(guarded: bool) -> str:
    if not guarded:
        return CLAIM
    body = CLAIM
    for i in (4, 3, 2, 1):
        body = body.replace(f"ARGV[{i}]", f"ARGV[{i + GUARD_ARGS}]")
    return "\n".join(guard_lua()) + body


def claim_key(prefix: str, contract: str, field: str, bucket: int) -> str:
    return f"{prefix}:_uniq:{contract}:{field}:{bucket}"
