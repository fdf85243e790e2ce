"""The aggregation interface: one class per accumulator, one object per function.

An *accumulator* is one partial state of one input within a tile (Chronon's IR): how DuckDB
computes it from a tile's events (`sql`, shared by the backfill and the stream's
micro-batches), how one record updates it (`add`, the plain-Python reference), how two tiles'
states merge (`lua_merge`, run inside Redis by the stream's writes) and how it is laid out
in a tile. A *function* is what a feature asks for: the accumulators it needs, the input
types it takes, its output type, its value straight from events (`sql`, the batch engine's
point-in-time join) and its value from the tiles a window covers (`reduce`, the online read,
run in the client).
Registered in `aggregations/__init__.py`; the compiler, the batch engine, the backfill, the
stream and the online store consult the registry, never a list of names of their own.
"""

from __future__ import annotations

import copy

import msgspec
import numpy as np

from ..plan import NUMERIC, ORDERED
from .window import Row, Window

_enc = msgspec.msgpack.Encoder()
NUMERIC_INPUTS = ("integer", "number", "boolean", "timestamp", "date")  # min/max of these pack as doubles
__all__ = ["NUMERIC", "NUMERIC_INPUTS", "ORDERED", "Accumulator", "Additive", "Function", "NumericFunction", "ObjectState", "Row", "Window", "stored", "value_bytes", "with_nulls"]


class Accumulator:
    kind: str
    phase = 2  # merge order: 0 reads both sides' counts before they change, 1 compares, 2 adds
    width = 1  # doubles in a packed (numeric) tile
    size: int | None = None  # a sized accumulator's size (`bound`), e.g. last_k's k

    def bound(self, size: int | None) -> Accumulator:
        """This accumulator sized `size` (a layout's largest k of its features), or itself."""
        if size is None or size == self.size:
            return self
        out = copy.copy(self)
        out.size = size
        return out

    def numeric(self, input_type: str | None) -> bool:
        """Whether the state packs into `width` doubles for this input type."""
        return True

    def sql(self, col: str | None, input_type: str | None) -> str:
        """A DuckDB aggregate over one tile's events (`__t`, `__arrival`, `__ord`, the inputs)."""
        raise NotImplementedError

    def state(self, v):
        """DuckDB's value of `sql` -> the state as a tile stores it (msgpack layouts)."""
        return v

    def doubles(self, s) -> list[float]:
        """The state as `width` doubles (packed layouts)."""
        return [float(s or 0)]

    def columns(self, column) -> list:
        """DuckDB's result column of `sql` -> `width` columns of a packed tile matrix."""
        return [column]

    def empty(self):
        return 0

    def add(self, s, v, t: int, arrival: int, n0: int):
        """One non-null value `v` at (t, arrival) into state `s`; `n0` the input's non-null count before it."""
        raise NotImplementedError

    def lua_merge(self, cur: str, new: str, i: int, nn: int, numeric: bool) -> list[str]:
        """Lua merging tile `new`'s state into `cur`'s (1-based positions: this state at `i`,
        its input's non-null count at `nn`)."""
        raise NotImplementedError


class ObjectState(Accumulator):
    """An accumulator whose state is not a number (a list, a sketch): msgpack tiles only."""

    phase = 1

    def numeric(self, input_type):
        return False


def stored(col: str, input_type: str | None) -> str:
    """SQL of an input's values as tiles keep them: timestamps as epoch microseconds."""
    return f"epoch_us({col})" if input_type == "timestamp" else col


class Function:
    """A feature's aggregation function."""

    name: str
    inputs: tuple[str, ...] | None = None  # accepted input types; None: any
    input_kind = ""  # how an error names `inputs`
    hint: str | None = None  # added to an input-type error
    needs: tuple[str, ...] = ()  # accumulators besides the input's non-null count (`nn`)
    bool_as_int = False  # a boolean input aggregates as 0/1
    msgpack_value = False  # the read returns the value as the msgpack bytes it was written as
    list_value = False  # the value is a list (of msgpack bytes, read; a DuckDB LIST, batch)
    param: str | None = None  # the YAML setting a feature of it needs (`k`), or None
    sized: tuple[str, ...] = ()  # its accumulators sized by the feature's param (the largest of a layout's)
    value: int | float | None = None  # the feature's param (`bound`)
    input_type: str | None = None  # the feature's input type (`bound`), for those that need it
    finalize = None  # set: finalize(pyarrow array of `sql`'s values) -> the feature's values (batch)

    def bound(self, value=None, input_type: str | None = None) -> Function:
        """This function for a feature whose param is `value` (its k) and input `input_type`."""
        if (value is None or value == self.value) and (input_type is None or input_type == self.input_type):
            return self
        out = copy.copy(self)
        out.value = self.value if value is None else value
        out.input_type = self.input_type if input_type is None else input_type
        return out

    def feature_part(self, value) -> str:
        """The function's part of a feature's name (`<column>_<part>_<window>`)."""
        return self.name

    def output_type(self, input_type: str | None) -> str:
        return input_type or "string"

    def sql(self, inp: str, win: str, dtype: str, counts_events: bool) -> str:
        """The value over the events `e` in the window (`win`, a condition); `inp` the input
        column, `dtype` the feature's type; `counts_events`: no input (a bare count)."""
        raise NotImplementedError

    def reduce(self, w: Window, inp: str | None) -> list:
        """The values of the window's rows (the online read, in the client), from the tiles it
        keeps (`window.py`); `inp` the input (None: a bare count). A value is a number, the
        msgpack bytes of one (`msgpack_value`), or None (null)."""
        raise NotImplementedError

    def reduce_row(self, r: Row, inp: str | None):
        """`reduce` of one row (`window.Row`): the same value, computed in pure Python."""
        raise NotImplementedError


class Additive(Accumulator):
    """A state that merges by addition (counts, sums)."""

    def lua_merge(self, cur, new, i, nn, numeric):
        return [f"{cur}[{i}] = {cur}[{i}] + {new}[{i}]"]


class NumericFunction(Function):
    """A function of a numeric input, booleans counting as 0/1."""

    inputs = NUMERIC + ("boolean",)
    input_kind = "numeric (integer, number or boolean)"
    hint = "count, count_distinct, approx_count_distinct, last, first, last_k, first_k and top_k work on any type"
    bool_as_int = True


def value_bytes(v) -> bytes:
    """A value as the bytes its distinct-value states compare and hash (msgpack; a float's
    -0.0 as 0.0, a boolean as 0/1 as a tile of a numeric function has it; timestamps arrive as
    epoch microseconds)."""
    if isinstance(v, bool):
        v = int(v)
    elif isinstance(v, float):
        v = v + 0.0
    return _enc.encode(v)


def with_nulls(values: np.ndarray, present: np.ndarray) -> list:
    """An array of values -> a list, None where `present` is false."""
    return [x if p else None for x, p in zip(values.tolist(), present.tolist(), strict=True)]
