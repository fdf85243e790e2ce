"""JSON bytes -> typed rows, one record per message (or jsonl line), with per-record reasons.

Decoding uses msgspec with a struct generated from the contract: every field
optional (presence and nulls are the `required` check's job), types strict
(`"12.3"` is not a number, `1.0` is not an integer), unknown fields rejected
when the contract says so. A record msgspec refuses is decoded a second time,
slowly, to name *every* problem in it; its well-typed fields are kept so the
constraint checks can report on them too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from ..plan import ContractPlan
from .result import Reason

_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)],  # what Arrow's int64 holds
    "number": float,
    "boolean": bool,
    "timestamp": str,  # parsed column-wise afterwards (Arrow's ISO 8601 cast, then Python for the rest)
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
        spec = [(f.name, _PY_TYPES[f.logical_type] | None, None) for f in contract.fields]
        self.struct = msgspec.defstruct(
            f"Record_{_ident(contract.id)}",
            spec,
            forbid_unknown_fields=contract.unknown_fields == "reject",
            gc=False,  # no reference cycles possible; cheaper to allocate by the thousand
        )
        self.empty = self.struct()
        self._dec = msgspec.json.Decoder(self.struct)
        self.struct_decode = self._dec.decode
        self.errors = (msgspec.ValidationError, msgspec.DecodeError)
        self._value_dec = {t: msgspec.json.Decoder(pt) for t, pt in _PY_TYPES.items()}

    def decode(self, raws) -> Decoded:
        dec = self._dec.decode
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

    def slow(self, raw: bytes, error: Exception | None = None) -> tuple[Any, list[Reason]]:
        """Every decode-level reason for one record, and its well-typed fields.

        Never returns an empty list: if this slow look finds nothing msgspec objected
        to, msgspec's own message is the reason (a refused record is never let through).
        """
        row, why = self._slow(raw)
        if not why:
            why = [Reason(None, "type", _snippet(raw), f"record refused by the decoder: {error}")]
        return row, why

    def _slow(self, raw: bytes) -> tuple[Any, list[Reason]]:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return self.empty, [Reason(None, "json", _snippet(raw), f"malformed JSON: {e}")]
        if not isinstance(obj, dict):
            kind = _JSON_KIND.get(type(obj), type(obj).__name__)
            return self.empty, [Reason(None, "object", _snippet(raw), f"expected a JSON object, got {kind}")]
        reasons: list[Reason] = []
        good: dict[str, Any] = {}
        for key, value in obj.items():
            t = self.types.get(key)
            if t is None:
                if self.contract.unknown_fields == "reject":
                    reasons.append(Reason(key, "unknown_field", value, f"`{key}` is not a field of contract `{self.contract.id}`"))
                continue
            if value is None:
                continue
            ok, converted = self._convert(t, value)
            if ok:
                good[key] = converted
            else:
                kind = _JSON_KIND.get(type(value), type(value).__name__)
                what = f"a {t}" if t not in ("timestamp", "date", "time") else f"an ISO 8601 {t}"
                if t == "integer" and isinstance(value, float):
                    what = "an integer (no fraction, no exponent)"
                if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
                    reasons.append(Reason(key, "type", value, f"{value} does not fit a 64-bit integer"))
                    continue
                got = f"{kind} {value!r}" if kind == "string" else kind
                reasons.append(Reason(key, "type", value, f"expected {what}, got {got}"))
        return self.struct(**good), reasons

    def _convert(self, t: str, value: Any) -> tuple[bool, Any]:
        if t == "timestamp":
            from ..timeutil import to_us

            if not isinstance(value, str):
                return False, None
            try:
                to_us(value)
            except ValueError:
                return False, None
            return True, value
        try:
            return True, self._value_dec[t].decode(msgspec.json.encode(value))
        except msgspec.ValidationError:
            return False, None


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return text if len(text) <= limit else text[:limit] + "..."


def _ident(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)
