"""The engine-neutral check list a contract compiles to.

A `Check` says what must hold of one field (or of a record); engines compile
checks to their own form: `arrow_eval` to vectorized Arrow compute over record
batches, `record_eval` to plain Python over single records (small batches).
Rule names are stable: they appear in dead-letter headers and CI reports.

Rules raised while decoding (before any check runs): `json` (not valid JSON),
`object` (not a JSON object), `type` (wrong JSON type / unparsable time),
`required` (missing), `unknown_field`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..plan import ContractPlan, FieldPlan
from ..timeutil import to_us
from .result import Reason, redacted, show

# Formats featureline checks; each is a regular expression every engine runs on RE2 (`regex.py`).
FORMAT_PATTERNS = {
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$",
    "hostname": r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
    "ipv4": r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$",
    "ipv6": r"^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$",
    "date": r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$",
    "date-time": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?$",
}
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**63 - 1),  # held in int64
}

# rule -> (comparison that is a *violation*, words for the message)
BOUND_RULES = {
    "minimum": ("lt", "below the minimum"),
    "maximum": ("gt", "above the maximum"),
    "exclusiveMinimum": ("le", "not above the exclusive minimum"),
    "exclusiveMaximum": ("ge", "not below the exclusive maximum"),
}


@dataclass(frozen=True)
class Check:
    rule: str
    field: str | None
    arg: Any = None
    logical_type: str | None = None
    redact: str | None = None  # the field's classification when its values are redacted

    def reason(self, value: Any) -> Reason:
        """The Reason for `value` violating this check: value cut or redacted, message built from that."""
        if self.redact is not None and value is not None:
            shown = redacted(self.redact, value)
            return Reason(self.field, self.rule, shown, self._message(value, shown))
        return Reason(self.field, self.rule, value, self._message(value, show(value)))

    def message(self, value: Any) -> str:
        return self.reason(value).message

    def _message(self, value: Any, shown: str) -> str:
        """`shown`: how the value may be quoted (cut, or a placeholder); `value` only for its length."""
        r, a = self.rule, self.arg
        if r == "required":
            return f"`{self.field}` is required but is null"
        if r in BOUND_RULES:
            return f"{shown} is {BOUND_RULES[r][1]} {_show(a, self.logical_type)}"
        if r == "multipleOf":
            return f"{shown} is not a multiple of {a}"
        if r == "minLength":
            return f"length {len(value)} is below minLength {a}"
        if r == "maxLength":
            return f"length {len(value)} is above maxLength {a}"
        if r == "pattern":
            return f"{shown} does not match pattern {a!r}"
        if r == "format":
            return f"{shown} is not a valid {a}"
        if r == "enum":
            return f"{shown} is not one of {', '.join(map(str, a))}"
        if r == "unique":
            if a is None:
                return f"{shown} appears more than once in the batch"
            from ..timeutil import format_duration

            return f"{shown} appeared before within the same {format_duration(a[1])} of event time (uniqueWithin)"
        if r == "event_time_future":
            from ..timeutil import format_duration

            plain = shown if self.redact is not None or not isinstance(value, str) else value
            return f"event time {plain} is more than {format_duration(a)} in the future"
        return f"{shown} violates {r}"


def _show(a: Any, logical_type: str | None) -> str:
    """A bound as messages show it: times and dates in ISO 8601 (checks hold them as numbers)."""
    import datetime as dt

    if logical_type == "timestamp" and isinstance(a, int):
        from ..timeutil import from_us

        return from_us(a).isoformat()
    if logical_type == "date" and isinstance(a, int):
        return (dt.date(1970, 1, 1) + dt.timedelta(days=a)).isoformat()
    if isinstance(a, dt.time):
        return a.isoformat()
    return repr(a)


def compile_checks(contract: ContractPlan) -> tuple[Check, ...]:
    """The checks of a contract, in a stable order (field order, then rule order)."""
    from dataclasses import replace

    out: list[Check] = []
    for f in contract.fields:
        out.extend(field_checks(f))
    if contract.unique_within_us:  # unique per bucket of event time: arg = (event-time field, bucket size)
        window = (contract.event_time_field, contract.unique_within_us)
        out = [replace(c, arg=window) if c.rule == "unique" else c for c in out]
    if contract.event_time_field:
        label = contract.redactions.get(contract.event_time_field)
        out.append(Check("event_time_future", contract.event_time_field, contract.max_future_skew_us, "timestamp", label))
    return tuple(out)


def field_checks(f: FieldPlan) -> list[Check]:
    out = _field_checks(f)
    if f.redacted:
        from dataclasses import replace

        out = [replace(c, redact=(f.classification or "").strip()) for c in out]
    return out


def _field_checks(f: FieldPlan) -> list[Check]:
    t = f.logical_type
    out: list[Check] = []
    if f.required:
        out.append(Check("required", f.name, None, t))
    for rule, attr in (
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("exclusiveMinimum", "exclusive_minimum"),
        ("exclusiveMaximum", "exclusive_maximum"),
    ):
        v = getattr(f, attr)
        if v is not None:
            out.append(Check(rule, f.name, _bound(v, t), t))
    if t == "integer" and f.arrow_type in INT_RANGES and f.arrow_type != "int64":
        lo, hi = INT_RANGES[f.arrow_type]
        if f.minimum is None or f.minimum < lo:
            out.append(Check("minimum", f.name, lo, t))
        if f.maximum is None or f.maximum > hi:
            out.append(Check("maximum", f.name, hi, t))
    if f.multiple_of is not None:
        out.append(Check("multipleOf", f.name, f.multiple_of, t))
    if f.min_length is not None:
        out.append(Check("minLength", f.name, int(f.min_length), t))
    if f.max_length is not None:
        out.append(Check("maxLength", f.name, int(f.max_length), t))
    if f.pattern is not None:
        out.append(Check("pattern", f.name, f.pattern, t))
    if t == "string" and f.format in FORMAT_PATTERNS:
        out.append(Check("format", f.name, f.format, t))
    if f.enum is not None:
        out.append(Check("enum", f.name, tuple(f.enum), t))
    if f.unique:
        out.append(Check("unique", f.name, None, t))
    return out


def _bound(v: Any, t: str) -> Any:
    if t == "timestamp":
        return to_us(str(v))
    if t == "date":
        from datetime import date

        return (date.fromisoformat(str(v)) - date(1970, 1, 1)).days
    if t == "time":
        from datetime import time

        return v if isinstance(v, time) else time.fromisoformat(str(v))
    return v


def bucket_start(t_us: int, window_us: int) -> int:
    """The start of the uniqueWithin bucket an event time falls in (a multiple of the window since the epoch)."""
    return t_us - t_us % window_us
