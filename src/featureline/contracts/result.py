"""What a validation returns: the valid rows as Arrow, and every invalid row with all its reasons.

Reasons are bounded where they are made: a value above VALUE_CHARS characters (or its
JSON text, for lists and objects) is cut and says its full size, a message above
MESSAGE_CHARS likewise, so one 600 KiB field cannot become 600 KiB of dead-letter
headers. A classified field's value is replaced by a placeholder (`redacted`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VALUE_CHARS = 256  # a Reason's value at most: strings and the JSON text of lists and objects
MESSAGE_CHARS = 1024  # a Reason's message at most
# not the record's fault: these propagate out of every check instead of becoming an `internal` reason
FATAL = (KeyboardInterrupt, SystemExit, MemoryError)
_INT_BITS = 850  # about VALUE_CHARS decimal digits


@dataclass(frozen=True)
class Reason:
    field: str | None  # None for record-level rules (json, object, internal)
    rule: str
    value: Any
    message: str

    def __post_init__(self) -> None:
        # the bound holds for every Reason, whoever builds it
        v = clip(self.value)
        if v is not self.value:
            object.__setattr__(self, "value", v)
        if len(self.message) > MESSAGE_CHARS:
            object.__setattr__(self, "message", _cut(self.message, MESSAGE_CHARS))

    def as_dict(self) -> dict:
        return {"field": self.field, "rule": self.rule, "value": _jsonable(self.value), "message": self.message}


def _cut(text: str, limit: int, size: int | None = None, unit: str = "chars") -> str:
    """`text`'s start and its full size, `limit` characters in all (so cutting again changes nothing)."""
    tail = f"... ({len(text) if size is None else size:,} {unit})"
    return text[: max(0, limit - len(tail))] + tail


def clip(v: Any) -> Any:
    """`v` as a Reason shows it: unchanged when small, else a cut string saying the full size."""
    if isinstance(v, str):
        return v if len(v) <= VALUE_CHARS else _cut(v, VALUE_CHARS)
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return (
            b.decode("utf-8", "replace")
            if len(b) <= VALUE_CHARS
            else _cut(b[:VALUE_CHARS].decode("utf-8", "replace"), VALUE_CHARS, len(b), "bytes")
        )
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > _INT_BITS:
        try:
            digits = str(v)
        except ValueError:  # beyond Python's int -> str limit (4,300 digits)
            return f"<an integer of {v.bit_length():,} bits>"
        return _cut(digits, VALUE_CHARS, len(digits.lstrip("-")), "digits")
    if isinstance(v, (list, tuple, dict)):
        import msgspec

        try:
            text = msgspec.json.encode(v).decode()
        except Exception:  # beyond JSON (huge ints) or too deep: a repr bounded in depth and size
            import reprlib

            return reprlib.repr(v)
        return v if len(text) <= VALUE_CHARS else _cut(text, VALUE_CHARS)
    return v


def show(v: Any) -> str:
    """`v` as messages quote it: its repr, cut at VALUE_CHARS characters (saying the full size)."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        v = bytes(v).decode("utf-8", "replace")
    if isinstance(v, str):
        return repr(v) if len(v) <= VALUE_CHARS else f"{v[:VALUE_CHARS]!r}... ({len(v):,} chars)"
    c = clip(v)
    return repr(v) if c is v else c


def redacted(label: str, v: Any) -> str:
    """The placeholder a classified field's value is reported as."""
    if isinstance(v, str):
        return f"<redacted: {label}, {len(v):,} chars>"
    kind = {bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}.get(type(v), type(v).__name__)
    return f"<redacted: {label}, {kind}>"


def withheld(raw: bytes | None) -> str:
    """What a record-level reason shows of a record whose contract classifies fields."""
    return f"<withheld: contract classifies fields, {len(raw or b''):,} bytes>"


def make_reason(field: str | None, rule: str, value: Any, message: Callable[[str], str], label: str | None = None) -> Reason:
    """A Reason whose message quotes the value as reasons show it (cut, or `label`-redacted)."""
    if label is not None and value is not None:
        shown = redacted(label, value)
        return Reason(field, rule, shown, message(shown))
    return Reason(field, rule, value, message(show(value)))


def failure(
    e: BaseException, field: str | None = None, *, withhold: bool = False, rule: str = "internal", what: str = "check failed"
) -> Reason:
    """The `internal` reason of a record whose check raised: the record is refused, the stream goes on.
    With `withhold` (a contract classifying fields) the exception's text, which may quote values, is left out."""
    try:
        text = "(text withheld: contract classifies fields)" if withhold else str(e)
    except Exception:
        text = "(no text)"
    return Reason(field, rule, None, f"{what}: {type(e).__name__}: {text}")


@dataclass(frozen=True)
class InvalidRow:
    index: int  # position in the input batch
    raw: bytes | None  # the original bytes, when the input was bytes
    reasons: tuple[Reason, ...]

    @property
    def first(self) -> Reason:
        return self.reasons[0]


class ValidationResult:
    """valid + invalid = input, always: `valid_index` and the invalid rows' indexes partition range(n_input).

    The valid rows become an Arrow table only when `valid` is first read (a caller that
    only needs the verdict, e.g. a producer checking one record, never pays for it).
    """

    __slots__ = ("n_input", "valid_index", "invalid", "_builder", "_payload")

    def __init__(self, n_input: int, valid_index: list[int], invalid: list[InvalidRow], builder: Callable, payload: Any = None):
        self.n_input = n_input
        self.valid_index = valid_index
        self.invalid = invalid
        self._builder = builder
        self._payload = payload

    @property
    def valid(self):
        """The valid rows as a pyarrow Table with the contract's schema, in input order (built once)."""
        if self._builder is not None:
            self._payload = self._builder(self._payload, self.valid_index)
            self._builder = None
        return self._payload

    @property
    def n_valid(self) -> int:
        return len(self.valid_index)

    @property
    def n_invalid(self) -> int:
        return len(self.invalid)

    @property
    def n_internal(self) -> int:
        """Invalid rows refused because a check raised on them (rule `internal`): a bug to look at."""
        return sum(1 for row in self.invalid if any(r.rule == "internal" for r in row.reasons))

    def __repr__(self) -> str:
        return f"ValidationResult(n_input={self.n_input}, n_valid={self.n_valid}, n_invalid={self.n_invalid})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # JSON has no inf or nan (a number like 1e400 decodes to inf)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
