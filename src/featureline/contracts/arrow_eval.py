"""Checks compiled to vectorized Arrow compute: one boolean violation mask per check."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .checks import BOUND_RULES, FORMAT_PATTERNS, Check

TS_TYPE = pa.timestamp("us", tz="UTC")


def _scalar(value: Any, arr: pa.Array) -> pa.Scalar:
    t = arr.type
    if pa.types.is_timestamp(t):
        return pa.scalar(value, type=pa.timestamp("us", tz=t.tz))
    if pa.types.is_date32(t):
        return pa.scalar(value, type=pa.int32()).cast(pa.date32())
    if pa.types.is_time64(t):
        return pa.scalar(value, type=t)
    if pa.types.is_integer(t) and isinstance(value, float) and not value.is_integer():
        return pa.scalar(value, type=pa.float64())
    return pa.scalar(value)


class ArrowChecks:
    """Evaluate checks over a table whose columns carry the contract's (wide) types."""

    def __init__(self, checks: tuple[Check, ...]):
        self.checks = checks
        # check the regexes once, against RE2: a pattern Python accepts may still be refused here
        for c in checks:
            if c.rule in ("pattern", "format"):
                pc.match_substring_regex(pa.array([""], pa.string()), self._regex(c))

    @staticmethod
    def _regex(c: Check) -> str:
        return FORMAT_PATTERNS[c.arg] if c.rule == "format" else c.arg

    def violations(self, table: pa.Table, now_us: int) -> list[tuple[Check, np.ndarray]]:
        """(check, boolean numpy mask of violating rows) for every check that has any."""
        out = []
        for c in self.checks:
            col = table.column(c.field)
            if c.rule == "unique":
                mask = _duplicates(col, buckets(table, c))
            else:
                mask = self._mask(c, col, now_us)
            if mask is None:
                continue
            if isinstance(mask, np.ndarray):
                if mask.any():
                    out.append((c, mask))
                continue
            mask = pc.fill_null(mask, False)
            if pc.any(mask).as_py():
                out.append((c, mask.to_numpy(zero_copy_only=False)))
        return out

    def _mask(self, c: Check, col, now_us: int):
        r = c.rule
        if r == "required":
            return pc.is_null(col) if col.null_count else None
        if r in BOUND_RULES:
            op = {"lt": pc.less, "gt": pc.greater, "le": pc.less_equal, "ge": pc.greater_equal}[BOUND_RULES[r][0]]
            return op(col, _scalar(c.arg, col.chunk(0) if isinstance(col, pa.ChunkedArray) and col.num_chunks else col))
        if r == "multipleOf":
            if pa.types.is_integer(col.type) and float(c.arg).is_integer():
                x = col.to_numpy(zero_copy_only=False)
                if col.null_count:
                    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
                    x = np.where(valid, pc.fill_null(col, 0).to_numpy(zero_copy_only=False), 0)
                return (x % int(c.arg)) != 0  # exact for 64-bit integers
            x = pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                q = x / float(c.arg)
                bad = np.abs(q - np.round(q)) > 1e-9 * np.maximum(1.0, np.abs(q))
            return np.where(np.isnan(x), False, bad)
        if r == "minLength":
            return pc.less(pc.utf8_length(col), c.arg)
        if r == "maxLength":
            return pc.greater(pc.utf8_length(col), c.arg)
        if r == "format" and c.arg == "uuid":
            return _not_uuid(col)
        if r in ("pattern", "format"):
            return _regex_violations(col, self._regex(c))
        if r == "enum":
            return pc.and_(pc.invert(pc.is_in(col, value_set=pa.array(list(c.arg), type=col.type))), pc.is_valid(col))
        if r == "unique":
            return _duplicates(col)  # (violations() gives it the uniqueWithin buckets)
        if r == "event_time_future":
            return pc.greater(col, pa.scalar(now_us + c.arg, type=col.type))
        raise ValueError(f"unknown rule {r}")


def buckets(table: pa.Table, c: Check) -> np.ndarray | None:
    """Per row, the start of its uniqueWithin bucket of event time (None: unique within the whole
    input). A row without a (valid) event time is in a bucket of its own kind (int64 min)."""
    if c.arg is None:
        return None
    et, window = c.arg
    t = table.column(et).cast(pa.int64())
    x = pc.fill_null(t, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    b = x - np.mod(x, window)
    if t.null_count:
        b[np.asarray(pc.is_null(t).to_numpy(zero_copy_only=False), dtype=bool)] = np.iinfo(np.int64).min
    return b


def _duplicates(col, buckets: np.ndarray | None = None) -> np.ndarray | None:
    """True for the second and later occurrences of a non-null value (in the same bucket, when
    `buckets` is given: see `buckets`); the first one is valid."""
    n = len(col)
    if n < 2:
        return None
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    idx = enc.indices.to_numpy(zero_copy_only=False)
    if len(enc.dictionary) == n - col.null_count:
        return None  # all distinct
    valid = ~np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
    idx = np.where(valid, idx, -1).astype(np.int64)
    if buckets is None:
        _, first = np.unique(idx, return_index=True)
    else:
        _, first = np.unique(np.stack([idx, buckets], axis=1), axis=0, return_index=True)
    dup = valid.copy()
    dup[first] = False
    return dup


_DASH_POS = np.array([8, 13, 18, 23])
_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _not_uuid(col):
    """The uuid format (8-4-4-4-12 hex digits), vectorized over the string bytes.

    Arrow runs regexes through RE2 at ~200 ns per value; UUIDs are fixed width, so when
    every value has 36 bytes the data buffer is an (n, 36) byte matrix checked in numpy.
    Values of another length are not UUIDs (a test holds this to the regex's answers).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if n == 0 or not pa.types.is_string(col.type):
        return pc.invert(pc.match_substring_regex(col, FORMAT_PATTERNS["uuid"]))
    # (values of other lengths are simply not uuids)
    lens = pc.binary_length(col).to_numpy(zero_copy_only=False)
    null = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    fixed = (lens == 36) & ~null
    bad = ~fixed & ~null  # wrong length: not a uuid
    if not fixed.any():
        return bad
    sub = col if fixed.all() else pc.filter(col, pa.array(fixed))  # contiguous 36-byte values
    offsets = np.frombuffer(sub.buffers()[1], dtype=np.int32)[sub.offset : sub.offset + len(sub) + 1]
    mat = np.frombuffer(sub.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 36)
    dashes = (mat[:, _DASH_POS] == 45).all(axis=1)
    h = mat[:, _HEX_POS] | 32  # lower-case letters; digits keep their codes
    hexes = (((h >= 48) & (h <= 57)) | ((h >= 97) & (h <= 102))).all(axis=1)
    bad[fixed] = ~(dashes & hexes)
    return bad


def _regex_violations(col, pattern: str):
    """NOT matches(pattern), run once per distinct value: string columns under contracts
    (countries, e-mails of returning users, channels) repeat a lot, and Arrow's regex costs
    ~150 ns a value while dictionary-encoding costs a fraction of that."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if len(col) < 256:
        return pc.invert(pc.match_substring_regex(col, pattern))
    enc = pc.dictionary_encode(col)
    if len(enc.dictionary) * 2 > len(col):  # mostly distinct: no gain
        return pc.invert(pc.match_substring_regex(col, pattern))
    bad_values = pc.invert(pc.match_substring_regex(enc.dictionary, pattern))
    return pc.take(bad_values, enc.indices)
