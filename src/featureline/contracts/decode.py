"""JSON bytes -> typed rows, one record per message (or jsonl line), with per-record reasons.

Decoding uses msgspec with a struct generated from the contract: every field
optional (presence and nulls are the `required` check's job), types strict
(`"12.3"` is not a number, `1.0` is not an integer), unknown fields rejected
when the contract says so. A record msgspec refuses is decoded a second time,
slowly, to name *every* problem in it; its well-typed fields are kept so the
constraint checks can report on them too. Both decodings read the same JSON:
strict UTF-8, no NaN/Infinity, no lone surrogates, at most MAX_DEPTH levels of
nesting (deeper records are a `json` reason before any parser recurses into them).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np

from ..plan import ContractPlan
from .result import Reason, clip, make_reason, redacted, withheld

MAX_DEPTH = 128  # levels of arrays and objects in one record (the record itself is level 1)

_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)],  # what Arrow's int64 holds
    "number": float,
    "boolean": bool,
    "timestamp": str,  # parsed by the checks (timestamps.py)
    "date": dt.date,
    "time": dt.time,
    "object": dict,  # kept as JSON text in Arrow
    "array": list,
}
_JSON_KIND = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array", type(None): "null"}


@dataclass
class Decoded:
    rows: list  # one struct per input; failed records hold their well-typed fields
    reasons: dict[int, list[Reason]]  # input index -> decode reasons (json, object, type, unknown_field)


class JsonDecoder:
    def __init__(self, contract: ContractPlan):
        self.contract = contract
        self.fields = [f.name for f in contract.fields]
        self.types = {f.name: f.logical_type for f in contract.fields}
        self.labels = contract.redactions  # redacted field -> classification
        spec = [(f.name, _PY_TYPES[f.logical_type] | None, None) for f in contract.fields]
        self.struct = msgspec.defstruct(
            f"Record_{_ident(contract.id)}",
            spec,
            forbid_unknown_fields=contract.unknown_fields == "reject",
            gc=False,  # no reference cycles possible; cheaper to allocate by the thousand
        )
        self.empty = self.struct()
        self._dec = msgspec.json.Decoder(self.struct)
        # msgspec recurses into object/array fields and skipped unknown fields: bound the depth first
        nests = contract.unknown_fields != "reject" or any(t in ("object", "array") for t in self.types.values())
        self.struct_decode = self._shallow_decode if nests else self._dec.decode
        self.errors = (msgspec.ValidationError, msgspec.DecodeError)
        self._value_dec = {t: msgspec.json.Decoder(pt) for t, pt in _PY_TYPES.items()}

    def _shallow_decode(self, raw):
        if too_deep(raw):
            raise msgspec.DecodeError(f"nesting deeper than {MAX_DEPTH} levels")
        return self._dec.decode(raw)

    def decode(self, raws) -> Decoded:
        dec = self.struct_decode
        rows: list = []
        append = rows.append
        reasons: dict[int, list[Reason]] = {}
        for i, raw in enumerate(raws):
            try:
                append(dec(raw))
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                row, why = self.slow(raw, e)
                append(row)
                reasons[i] = why
        return Decoded(rows, reasons)

    def snippet(self, raw) -> Any:
        """What a record-level reason shows of the record: its start, or nothing when fields are classified."""
        return withheld(raw) if self.labels else clip(raw if isinstance(raw, (bytes, bytearray, memoryview, str)) else repr(raw))

    def slow(self, raw: bytes, error: Exception | None = None) -> tuple[Any, list[Reason]]:
        """Every decode-level reason for one record, and its well-typed fields.

        Never returns an empty list: if this slow look finds nothing msgspec objected
        to, msgspec's own message is the reason (a refused record is never let through).
        """
        row, why = self._slow(raw)
        if not why:
            why = [Reason(None, "type", self.snippet(raw), f"record refused by the decoder: {error}")]
        return row, why

    def _slow(self, raw: bytes) -> tuple[Any, list[Reason]]:
        obj, problem = parse(raw)
        if problem is not None:
            return self.empty, [Reason(None, "json", self.snippet(raw), f"malformed JSON: {problem}")]
        if not isinstance(obj, dict):
            kind = _JSON_KIND.get(type(obj), type(obj).__name__)
            return self.empty, [Reason(None, "object", self.snippet(raw), f"expected a JSON object, got {kind}")]
        reasons: list[Reason] = []
        good: dict[str, Any] = {}
        for key, value in obj.items():
            t = self.types.get(key)
            if t is None:
                if self.contract.unknown_fields == "reject":
                    reasons.append(unknown_field(self.contract, key, value))
                continue
            if value is None:
                continue
            ok, converted = self._convert(t, value)
            if ok:
                good[key] = converted
                continue
            label = self.labels.get(key)
            kind = _JSON_KIND.get(type(value), type(value).__name__)
            if t in ("integer", "number") and isinstance(value, (int, float)) and not isinstance(value, bool):
                if t == "integer" and isinstance(value, int):
                    reasons.append(make_reason(key, "type", value, lambda v: f"{v} does not fit a 64-bit integer", label))
                    continue
                if isinstance(value, float) and not math.isfinite(value):
                    reasons.append(make_reason(key, "type", value, lambda v: "the number does not fit a 64-bit float", label))
                    continue
            what = f"{'an' if t[0] in 'aeiou' else 'a'} {t}" if t not in ("timestamp", "date", "time") else f"an ISO 8601 {t}"
            if t == "integer" and isinstance(value, float):
                what = "an integer (no fraction, no exponent)"
            reasons.append(
                make_reason(
                    key,
                    "type",
                    value,
                    lambda v, w=what, k=kind: f"expected {w}, got {k} {v}" if k == "string" else f"expected {w}, got {k}",
                    label,
                )
            )
        return self.struct(**good), reasons

    def _convert(self, t: str, value: Any) -> tuple[bool, Any]:
        if t == "timestamp":
            from .timestamps import parse_ts

            return (True, value) if isinstance(value, str) and parse_ts(value) is not None else (False, None)
        try:
            return True, self._value_dec[t].decode(msgspec.json.encode(value))
        except (msgspec.ValidationError, msgspec.DecodeError, msgspec.EncodeError, OverflowError):
            return False, None


def unknown_field(contract: ContractPlan, key: str, value: Any) -> Reason:
    """The `unknown_field` reason; in a contract that classifies fields, the value of a field it
    does not know is not known to be safe to show either (a misspelt `customer_email`)."""
    name = clip(key)
    why = f"`{name}` is not a field of contract `{contract.id}`"
    if contract.redactions and value is not None:
        return Reason(name, "unknown_field", redacted("unknown field", value), why)
    return Reason(name, "unknown_field", value, why)


def parse(raw) -> tuple[Any, str | None]:
    """The JSON value of one record read as msgspec reads it, or (None, what is wrong with it)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"not UTF-8 ({e.reason} at byte {e.start})"
    elif isinstance(raw, str):
        text = raw
    else:
        return None, f"expected bytes, got {type(raw).__name__}"
    if too_deep(raw):
        return None, f"nesting deeper than {MAX_DEPTH} levels"
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, integers beyond Python's digit limit
        return None, clip(str(e))
    if "\\u" in text:  # an escaped lone surrogate decodes to a str that is not Unicode
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, "a lone UTF-16 surrogate escape (\\ud800-\\udfff) is not a character"
    return obj, None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def too_deep(raw, limit: int = MAX_DEPTH) -> bool:
    """True when arrays and objects nest more than `limit` levels (brackets inside strings do not count)."""
    b = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if b.count(b"[") + b.count(b"{") <= limit:
        return False  # the common case, at C speed
    a = np.frombuffer(b, dtype=np.uint8)
    at = np.flatnonzero(_SYNTAX[a])  # only quotes, backslashes and brackets matter
    c = a[at]
    bs = c == 92
    quote = c == 34
    if bs.any():
        # backslashes in one unbroken run (adjacent bytes): the run's length up to each of them
        j = np.arange(len(at))
        adjacent = np.diff(at) == 1
        joined = np.zeros(len(at), dtype=bool)
        joined[1:] = bs[1:] & bs[:-1] & adjacent
        run = np.where(bs, j - np.maximum.accumulate(np.where(bs & ~joined, j, 0)) + 1, 0)
        # a quote is escaped when an odd run of backslashes ends right before it
        before = np.zeros(len(at), dtype=np.int64)
        before[1:] = np.where(adjacent, run[:-1], 0)
        quote &= before % 2 == 0
    outside = np.cumsum(quote) % 2 == 0  # outside every string (a closing quote counts as outside, harmlessly)
    step = np.where(outside, ((c == 91) | (c == 123)).astype(np.int64) - ((c == 93) | (c == 125)), 0)
    return bool(np.cumsum(step).max(initial=0) > limit)


_SYNTAX = np.zeros(256, dtype=bool)
_SYNTAX[[34, 92, 91, 93, 123, 125]] = True  # " \\ [ ] { }


def _ident(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)
