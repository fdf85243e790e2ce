"""`approx_count_distinct`: distinct non-null values, estimated by HyperLogLog.

A value's 64-bit hash (BLAKE2b of its bytes, `value_bytes`) picks one of M = 2^14 registers
(its top 14 bits) and a rank (the leading zeros of the other 50, plus one); a register keeps
the largest rank it saw. Accumulator `hll`: a tile's non-zero registers, sparse, as sorted
3-byte records (register big-endian u16, rank u8). Tiles merge by register maximum (the
registers of a union of sets are the maxima of theirs), so the window's registers are those of
its distinct values whatever the tiles, and every engine estimates from the same registers with
the same arithmetic (`estimate`): the batch engine hashes the window's distinct values itself
and gives the very number the online store gives.

Error: standard error 1.04 / sqrt(M) = 0.81%; below 2.5 M (40,960) distinct values the
estimate is linear counting (M ln(M / empty registers)), within about 1% (tested at 10,000:
<= 2%). State: 3 bytes a distinct register, at most 48 KiB a tile.
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np

from .base import Function, ObjectState, stored, value_bytes
from .distinct import distinct_sql

P = 14
M = 1 << P
_REC = np.dtype([("i", ">u2"), ("r", "u1")])
_PAIR = struct.Struct(">HB")  # one record of _REC
_ALPHA = 0.7213 / (1 + 1.079 / M)


def registers(values) -> bytes:
    """Values -> their sparse registers (sorted records)."""
    regs: dict[int, int] = {}
    for v in values:
        h = int.from_bytes(hashlib.blake2b(value_bytes(v), digest_size=8).digest(), "big")
        i, w = h >> (64 - P), h & ((1 << (64 - P)) - 1)
        r = 64 - P - w.bit_length() + 1
        if regs.get(i, 0) < r:
            regs[i] = r
    return b"".join(_PAIR.pack(i, regs[i]) for i in sorted(regs))


def dense(sparse: list) -> np.ndarray:
    """Sparse registers of several sketches -> the M registers of their union."""
    regs = np.zeros(M, np.uint8)
    for s in sparse:
        if s:
            rec = np.frombuffer(s, _REC)
            np.maximum.at(regs, rec["i"], rec["r"])
    return regs


def estimate(regs: np.ndarray) -> int:
    """HyperLogLog's estimate from M registers (linear counting below 2.5 M)."""
    zeros = int(np.count_nonzero(regs == 0))
    if zeros == M:
        return 0
    e = _ALPHA * M * M / float(np.sum(np.ldexp(1.0, -regs.astype(np.int64))))
    if e <= 2.5 * M and zeros:
        e = M * math.log(M / zeros)
    return int(round(e))


def merge(a: bytes, b: bytes) -> bytes:
    """Two sparse registers -> those of the union (the Lua merge's arithmetic, in Python)."""
    regs = dense([a, b])
    keys = np.flatnonzero(regs)
    out = np.empty(len(keys), _REC)
    out["i"], out["r"] = keys, regs[keys]
    return out.tobytes()


class Sketch(ObjectState):
    kind = "hll"

    def sql(self, col, input_type):
        return distinct_sql(col, input_type)  # registers are made from the values in Python

    def state(self, v):
        return registers(v) if v else b""

    def empty(self):
        return b""

    def add(self, s, v, t, arrival, n0):
        return merge(s, registers([v]))

    def lua_merge(self, cur, new, i, nn, numeric):
        a, b = f"{cur}[{i}]", f"{new}[{i}]"
        return [  # sorted 3-byte records: a merge of two sorted lists, the larger rank on a tie
            f"do local a, b, out, x, y = {a}, {b}, {{}}, 1, 1",
            "  local na, nb = #a, #b",
            "  while x <= na or y <= nb do",
            "    local ia = x <= na and (string.byte(a, x) * 256 + string.byte(a, x + 1)) or 65536",
            "    local ib = y <= nb and (string.byte(b, y) * 256 + string.byte(b, y + 1)) or 65536",
            "    if ia < ib then out[#out + 1] = string.sub(a, x, x + 2); x = x + 3",
            "    elseif ib < ia then out[#out + 1] = string.sub(b, y, y + 2); y = y + 3",
            "    else",
            "      if string.byte(a, x + 2) >= string.byte(b, y + 2) then out[#out + 1] = string.sub(a, x, x + 2) else out[#out + 1] = string.sub(b, y, y + 2) end",
            "      x = x + 3; y = y + 3",
            "    end",
            "  end",
            f"  {a} = table.concat(out)",
            "end",
        ]


class ApproxCountDistinctFn(Function):
    name = "approx_count_distinct"
    needs = ("hll",)

    def output_type(self, input_type):
        return "integer"

    def sql(self, inp, win, dtype, counts_events):
        return f"list(DISTINCT {stored(inp, self.input_type)}) FILTER (WHERE {win} AND {inp} IS NOT NULL)"

    def finalize(self, column):
        import pyarrow as pa

        return pa.array([0 if vs is None else estimate(dense([registers(vs)])) for vs in column.to_pylist()], pa.int64())

    def reduce(self, w, inp):
        return [estimate(dense(s)) if s else 0 for s in w.states("hll", inp)]

    def reduce_row(self, r, inp):
        s = r.nonempty("hll", inp)
        return estimate(dense(s)) if s else 0


ACCUMULATORS = (Sketch(),)
FUNCTIONS = (ApproxCountDistinctFn(),)
