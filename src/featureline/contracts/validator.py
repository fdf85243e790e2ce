"""Validate records against a contract: JSON bytes or Arrow tables in, valid rows + reasons out.

One validator serves ingestion (stream micro-batches), the batch engine and CI.
Large batches are checked column-wise with Arrow compute; small ones (where
per-batch setup would dominate) record by record in Python. Both paths give the
same answers (a property test holds them to it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from ..plan import ContractPlan
from ..timeutil import to_us
from .arrow_eval import ArrowChecks
from .checks import Check, compile_checks
from .decode import JsonDecoder
from .record_eval import build_row_checker, show_value
from .result import InvalidRow, Reason, ValidationResult

# logical type -> Arrow type used while checking (wide: range checks run before narrowing)
WIDE = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "object": pa.string(),
    "array": pa.string(),
}
SMALL_BATCH = 2048  # measured crossover (bench/contracts_bench.py): below it the record path is faster


def arrow_schema(contract: ContractPlan) -> pa.Schema:
    """The Arrow schema of a contract's valid rows."""
    return pa.schema([pa.field(f.name, _final_type(f.arrow_type), nullable=not f.required) for f in contract.fields])


def _final_type(name: str) -> pa.DataType:
    if name.startswith("timestamp"):
        return pa.timestamp("us", tz="UTC")
    return {"time64[us]": pa.time64("us"), "bool": pa.bool_()}.get(name) or pa.type_for_alias(name)


def now_us() -> int:
    return time.time_ns() // 1000


class ContractValidator:
    def __init__(self, contract: ContractPlan, *, small_batch: int = SMALL_BATCH):
        self.contract = contract
        self.checks: tuple[Check, ...] = compile_checks(contract)
        self.small_batch = small_batch
        self.schema = arrow_schema(contract)
        self.wide_schema = pa.schema([pa.field(f.name, WIDE[f.logical_type]) for f in contract.fields])
        self.types = {f.name: f.logical_type for f in contract.fields}
        self._decoder: JsonDecoder | None = None
        self._arrow = ArrowChecks(self.checks)
        self._getters = [(f.name, attrgetter(f.name), f.logical_type) for f in contract.fields]
        self._rank = {(c.field, c.rule): k for k, c in enumerate(self.checks)}
        self._unique_fields = [c.field for c in self.checks if c.rule == "unique"]
        self._row_checker_one = build_row_checker(
            [(f.name, f.logical_type) for f in contract.fields], tuple(c for c in self.checks if c.rule != "unique")
        )
        self._row_checker = build_row_checker([(f.name, f.logical_type) for f in contract.fields], self.checks)

    @property
    def decoder(self) -> JsonDecoder:
        if self._decoder is None:
            self._decoder = JsonDecoder(self.contract)
        return self._decoder

    # -- JSON bytes -----------------------------------------------------------------
    def validate_json(self, raws: Sequence[bytes], *, now: int | None = None, path: str | None = None) -> ValidationResult:
        """One JSON record per element (a Kafka message value, a jsonl line)."""
        if now is None:
            now = time.time_ns() // 1000
        if path is None and len(raws) <= self.small_batch or path == "record":
            return self._json_rows(raws, now)
        decoded = self.decoder.decode(raws)
        table, extra = self._rows_to_table(decoded.rows)
        for i, why in extra.items():
            decoded.reasons.setdefault(i, []).extend(why)
        return self._check_table(table, decoded.reasons, now, raws)

    # -- Arrow tables -----------------------------------------------------------------
    def validate_table(self, table: pa.Table, *, now: int | None = None) -> ValidationResult:
        """Rows already decoded (parquet, csv, DuckDB). Columns are cast to the contract's types;
        a value that does not cast is a `type` reason for its row; missing columns are null."""
        now = now_us() if now is None else now
        reasons: dict[int, list[Reason]] = {}
        cols = []
        for f in self.contract.fields:
            want = WIDE[f.logical_type]
            if f.name not in table.column_names:
                cols.append(pa.nulls(table.num_rows, want))
                continue
            cols.append(_cast_column(table.column(f.name), want, f.name, f.logical_type, reasons))
        if self.contract.unknown_fields == "reject":
            for name in table.column_names:
                if name not in self.types:
                    col = table.column(name)
                    for i in np.flatnonzero(~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)):
                        reasons.setdefault(int(i), []).append(
                            Reason(name, "unknown_field", col[int(i)].as_py(), f"`{name}` is not a field of contract `{self.contract.id}`")
                        )
        wide = pa.Table.from_arrays(cols, schema=self.wide_schema)
        return self._check_table(wide, reasons, now, None)

    # -- columnar path ----------------------------------------------------------------
    def _rows_to_table(self, rows: list, *, final: bool = False) -> tuple[pa.Table, dict[int, list[Reason]]]:
        """Columns from decoded rows: wide types for checking, or (`final`, rows already
        checked) the contract's own types, so no cast pass is needed afterwards."""
        extra: dict[int, list[Reason]] = {}
        arrays = []
        schema = self.schema if final else self.wide_schema
        for (name, get, t), fld in zip(self._getters, schema, strict=True):
            values = list(map(get, rows))
            if t in ("object", "array"):
                enc = msgspec.json.encode
                values = [None if v is None else enc(v).decode() for v in values]
            elif t == "timestamp":
                arrays.append(_strings_to_ts(pa.array(values, pa.string()), name, extra))
                continue
            try:
                arrays.append(pa.array(values, type=fld.type))
            except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(_array_or_reasons(values, WIDE[t], name, t, extra))
        return pa.Table.from_arrays(arrays, schema=schema), extra

    def _check_table(self, table: pa.Table, reasons: dict[int, list[Reason]], now: int, raws) -> ValidationResult:
        n = table.num_rows
        bad = np.zeros(n, dtype=bool)
        if reasons:
            bad[list(reasons)] = True
        hits = self._arrow.violations(table, now)
        for _, mask in hits:
            bad |= mask
        invalid_idx = np.flatnonzero(bad)
        invalid: list[InvalidRow] = []
        if len(invalid_idx):
            per_row: dict[int, list[Reason]] = {int(i): list(reasons.get(int(i), ())) for i in invalid_idx}
            for c, mask in hits:
                idx = np.flatnonzero(mask)
                values = table.column(c.field).take(pa.array(idx)).to_pylist()
                for i, value in zip(idx.tolist(), values, strict=True):
                    why = per_row[i]
                    if c.rule == "required" and any(r.field == c.field or r.field is None for r in why):
                        continue  # already explained (wrong type, or not a JSON object at all)
                    value = _show(value)
                    why.append(Reason(c.field, c.rule, value, c.message(value)))
            invalid = [InvalidRow(i, raws[i] if raws is not None else None, _ordered(why, self._rank)) for i, why in per_row.items()]
        valid_mask = ~bad
        valid_index = np.flatnonzero(valid_mask).tolist()

        return ValidationResult(n, valid_index, invalid, self._build_table, (table, valid_mask if len(invalid_idx) else None))

    def _build_table(self, payload, valid_index) -> pa.Table:
        table, mask = payload
        t = table.filter(pa.array(mask)) if mask is not None else table
        return t.cast(self.schema)

    # -- record path --------------------------------------------------------------------
    def _json_rows(self, raws: Sequence[bytes], now: int) -> ValidationResult:
        """Decode and check record by record in one pass: the small-batch path."""
        decoder = self.decoder
        if len(raws) == 1:  # a producer checking one record: the least work possible
            raw = raws[0]
            try:
                row = decoder.struct_decode(raw)
                prior, out = None, []
            except decoder.errors as e:
                row, prior = decoder.slow(raw, e)
                out = list(prior)
            self._row_checker_one(row, now, prior, None, out)  # a batch of one is unique by itself
            if out:
                return ValidationResult(1, [], [InvalidRow(0, raw, _ordered(out, self._rank))], self._build_rows, [row])
            return ValidationResult(1, [0], [], self._build_rows, [row])
        dec = decoder.struct_decode
        errors = decoder.errors
        check = self._row_checker
        rank = self._rank
        seen = self._fresh_seen()
        rows: list = []
        valid_index: list[int] = []
        invalid: list[InvalidRow] = []
        out: list[Reason] = []
        for i, raw in enumerate(raws):
            try:
                row = dec(raw)
                prior = None
            except errors as e:
                row, prior = decoder.slow(raw, e)
                out.extend(prior)
            rows.append(row)
            check(row, now, prior, seen, out)
            if out:
                invalid.append(InvalidRow(i, raw, _ordered(out, rank)))
                out = []
            else:
                valid_index.append(i)
        return ValidationResult(len(raws), valid_index, invalid, self._build_rows, rows)

    def _fresh_seen(self) -> dict[str, set] | None:
        return {name: set() for name in self._unique_fields} if self._unique_fields else None

    def _build_rows(self, rows: list, valid_index: list[int]) -> pa.Table:
        table, _ = self._rows_to_table([rows[i] for i in valid_index] if len(valid_index) < len(rows) else rows, final=True)
        return table


def _ordered(why: list[Reason], rank: dict) -> tuple[Reason, ...]:
    """Reasons in one canonical order (decode reasons first, then checks in contract order)."""
    return tuple(sorted(why, key=lambda r: rank.get((r.field, r.rule), -1)))


_ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$")


_show = show_value


def _py(scalar: pa.Scalar) -> Any:
    return _show(scalar.as_py())


def _array_or_reasons(values: list, typ: pa.DataType, name: str, t: str, reasons: dict[int, list[Reason]]) -> pa.Array:
    out = []
    for i, v in enumerate(values):
        try:
            pa.array([v], type=typ)
            out.append(v)
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            out.append(None)
            reasons.setdefault(i, []).append(Reason(name, "type", _show(v), f"{_show(v)} does not fit a 64-bit {t}"))
    return pa.array(out, type=typ)


def _cast_column(col, want: pa.DataType, name: str, t: str, reasons: dict[int, list[Reason]]):
    if col.type == want:
        return col
    import pyarrow.compute as pc

    try:
        if pa.types.is_timestamp(want) and pa.types.is_timestamp(col.type) and col.type.tz is None:
            return pc.assume_timezone(col.cast(pa.timestamp("us")), "UTC")  # naive = UTC
        if pa.types.is_timestamp(want) and pa.types.is_string(col.type):
            return _strings_to_ts(col, name, reasons)
        return col.cast(want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values = col.to_pylist()
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(pa.array([v]).cast(want)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            out.append(None)
            reasons.setdefault(i, []).append(Reason(name, "type", v, f"expected a {t}, got {v!r}"))
    return pa.array(out, type=want)


TS = pa.timestamp("us", tz="UTC")


def _strings_to_ts(col, name: str, reasons: dict[int, list[Reason]]):
    """ISO 8601 strings -> timestamp[us, UTC]. Arrow's cast takes the common forms (with an
    offset or Z) at C speed; the rest (naive = UTC, other ISO forms) go through `to_us`;
    what neither parses is a `type` reason for its row."""
    import pyarrow.compute as pc


    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    try:
        return pc.cast(col, TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # the forms Arrow parses, at C speed; the others one by one
    ok = pc.fill_null(pc.match_substring_regex(col, _ISO_Z.pattern), False)
    try:
        fast = pc.cast(pc.if_else(ok, col, pa.scalar(None, pa.string())), TS).cast(pa.int64())
        out = fast.to_pylist()
        slow = np.flatnonzero(~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)).tolist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = [None] * len(col)
        slow = range(len(col))
    for i in slow:
        v = col[i].as_py()
        if v is None:
            continue
        try:
            out[i] = to_us(v)
        except ValueError:
            reasons.setdefault(i, []).append(Reason(name, "type", v, f"expected an ISO 8601 timestamp, got string {v!r}"))
    return pa.array(out, type=pa.int64()).cast(TS)
