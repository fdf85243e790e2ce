"""What a validation returns: the valid rows as Arrow, and every invalid row with all its reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reason:
    field: str | None  # None for record-level rules (json, object)
    rule: str
    value: Any
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "rule": self.rule, "value": _jsonable(self.value), "message": self.message}


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

    def counts_by_rule(self) -> Counter:
        c: Counter = Counter()
        for row in self.invalid:
            for r in row.reasons:
                c[(r.field, r.rule)] += 1
        return c

    def __repr__(self) -> str:
        return f"ValidationResult(n_input={self.n_input}, n_valid={self.n_valid}, n_invalid={self.n_invalid})"


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
