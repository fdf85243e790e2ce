"""`approx_percentile` (with `percentiles: [0.5, 0.9, ...]`): the window's percentiles of a
numeric input, estimated by DDSketch; one feature per percentile, `<column>_p50_<window>`.

A value x is counted in the bucket of key ceil(ln|x| / ln(gamma)) (gamma = (1 + a) / (1 - a),
a = 1%), offset by 10^6 and negated for negative values, key 0 for |x| < 1e-9; a bucket's value
is 2 gamma^i / (gamma + 1), within a of every value in it. Accumulator `dds`: a tile's buckets
as sorted 8-byte records (key big-endian i32, count u32), at most MAX_BUCKETS: past that the
lowest buckets are folded into the lowest kept one (DDSketch's collapsing store; folding
commutes with merging, so any split of the values gives the same buckets). Tiles merge by
adding counts (Lua). The percentile q of a window: the value of the bucket holding the
element of rank floor(q (n - 1)) of its values, sorted: within 1% of that element while no
bucket was folded (values spanning under 1,000 buckets: a ratio of about 10^8 between the
smallest and largest magnitude). Keys are computed by the same code in every engine (batch,
backfill, stream micro-batches: `key`) and the estimate too, so online and batch agree exactly.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .base import NumericFunction, ObjectState

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LN = math.log(GAMMA)
MIN_ABS = 1e-9
OFFSET = 1_000_000
MAX_BUCKETS = 1024
_REC = np.dtype([("k", ">i4"), ("c", ">u4")])
_PAIR = struct.Struct(">iI")  # one record of _REC


def key(x: float) -> int:
    """A value's bucket key. Plain `math.log` (the C library's), never numpy's: numpy picks SIMD
    code by CPU, and a batch engine and a stream on different machines must give a value at a
    bucket's edge the same key."""
    a = abs(x)
    if a < MIN_ABS:
        return 0
    k = math.ceil(math.log(a) / _LN) + OFFSET
    return -k if x < 0 else k


def buckets(sketches) -> tuple[np.ndarray, np.ndarray]:
    """Several sketches (records) -> the keys and counts of their union, folded."""
    recs = [np.frombuffer(s, _REC) for s in sketches if s]
    if not recs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    allk = np.concatenate([r["k"] for r in recs]).astype(np.int64)
    allc = np.concatenate([r["c"] for r in recs]).astype(np.int64)
    k, inv = np.unique(allk, return_inverse=True)
    c = np.bincount(inv, weights=allc, minlength=len(k)).astype(np.int64)
    return _fold(k, c)


def sketch(values) -> bytes:
    """Values -> a tile's records."""
    if not values:
        return b""
    counts: dict[int, int] = {}
    for x in values:
        k = key(x)
        counts[k] = counts.get(k, 0) + 1
    ks = sorted(counts)
    if len(ks) <= MAX_BUCKETS:
        return b"".join(_PAIR.pack(k, counts[k]) for k in ks)
    return records(*_fold(np.array(ks, np.int64), np.array([counts[k] for k in ks], np.int64)))


def records(k: np.ndarray, c: np.ndarray) -> bytes:
    """Sorted keys and counts -> records."""
    out = np.empty(len(k), _REC)
    out["k"], out["c"] = k, c
    return out.tobytes()


def _fold(k: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the MAX_BUCKETS highest keys, the lower ones' counts added to the lowest kept."""
    if len(k) <= MAX_BUCKETS:
        return k, c
    cut = len(k) - MAX_BUCKETS
    kept = c[cut:].copy()
    kept[0] += int(c[:cut].sum())
    return k[cut:], kept


def value_of(key: int) -> float:
    """A bucket's value (0 for the zero bucket)."""
    if key == 0:
        return 0.0
    v = 2 * GAMMA ** (abs(key) - OFFSET) / (GAMMA + 1)
    return -v if key < 0 else v


def quantile(k: np.ndarray, c: np.ndarray, q: float) -> float | None:
    """The value of the bucket holding rank floor(q (n - 1)) (None: no values)."""
    n = int(c.sum())
    if n == 0:
        return None
    rank = math.floor(q * (n - 1))
    j = int(np.searchsorted(np.cumsum(c), rank, side="right"))
    return value_of(int(k[j]))


class Buckets(ObjectState):
    kind = "dds"

    def sql(self, col, input_type):
        return f"list({col}::DOUBLE) FILTER (WHERE {col} IS NOT NULL)"

    def state(self, v):
        return sketch(v) if v else b""

    def empty(self):
        return b""

    def add(self, s, v, t, arrival, n0):
        return records(*buckets([s, sketch([float(v)])]))

    def lua_merge(self, cur, new, i, nn, numeric):
        a, b = f"{cur}[{i}]", f"{new}[{i}]"
        return [  # sorted 8-byte records: merged adding counts, then folded to MAX_BUCKETS
            f"do local a, b, ks, cs, x, y = {a}, {b}, {{}}, {{}}, 1, 1",
            "  local na, nb = #a, #b",
            "  while x <= na or y <= nb do",
            "    local ka = x <= na and struct.unpack('>i4', a, x) or 2147483647",
            "    local kb = y <= nb and struct.unpack('>i4', b, y) or 2147483647",
            "    if ka < kb then ks[#ks + 1] = ka; cs[#cs + 1] = struct.unpack('>I4', a, x + 4); x = x + 8",
            "    elseif kb < ka then ks[#ks + 1] = kb; cs[#cs + 1] = struct.unpack('>I4', b, y + 4); y = y + 8",
            "    else ks[#ks + 1] = ka; cs[#cs + 1] = struct.unpack('>I4', a, x + 4) + struct.unpack('>I4', b, y + 4); x = x + 8; y = y + 8 end",
            "  end",
            "  local first, out = 1, {}",
            f"  if #ks > {MAX_BUCKETS} then",
            f"    first = #ks - {MAX_BUCKETS} + 1",
            "    for j = 1, first - 1 do cs[first] = cs[first] + cs[j] end",
            "  end",
            "  for j = first, #ks do out[#out + 1] = struct.pack('>i4I4', ks[j], cs[j]) end",
            f"  {a} = table.concat(out)",
            "end",
        ]


class ApproxPercentileFn(NumericFunction):
    name = "approx_percentile"
    needs = ("dds",)
    param = "percentiles"

    def output_type(self, input_type):
        return "number"

    def feature_part(self, value):
        return "p" + f"{value * 100:.10g}".replace(".", "_")

    def sql(self, inp, win, dtype, counts_events):
        return f"list({inp}::DOUBLE) FILTER (WHERE {win} AND {inp} IS NOT NULL)"

    def finalize(self, column):
        import pyarrow as pa

        out = []
        for vs in column.to_pylist():
            out.append(None if not vs else quantile(*buckets([sketch(vs)]), self.value))
        return pa.array(out, pa.float64())

    def reduce(self, w, inp):
        return [quantile(*buckets(s), self.value) if s else None for s in w.states("dds", inp)]

    def reduce_row(self, r, inp):
        s = r.nonempty("dds", inp)
        return quantile(*buckets(s), self.value) if s else None


ACCUMULATORS = (Buckets(),)
FUNCTIONS = (ApproxPercentileFn(),)
