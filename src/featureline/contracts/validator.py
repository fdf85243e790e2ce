"""Validate records against a contract: JSON bytes or Arrow tables in, valid rows + reasons out.

One validator serves ingestion (stream micro-batches), the batch engine and CI.
Large batches are checked column-wise with Arrow compute; small ones (where
per-batch setup would dominate) record by record in Python. Both paths give the
same answers (a property test holds them to it).

The record boundary: nothing in a record's content escapes as an exception. The
record path checks each record inside its own try; if the column path raises, the
batch is checked again record by record, so one poison record cannot take the
batch's good records with it. A record whose check raised is refused with rule
`internal` (only FATAL exceptions, which are not the record's fault, propagate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from ..plan import ContractPlan
from .arrow_eval import ArrowChecks
from .checks import Check, compile_checks
from .decode import JsonDecoder, unknown_field
from .record_eval import build_row_checker, show_value, ts_type_reason
from .result import FATAL, InvalidRow, Reason, ValidationResult, failure, make_reason
from .timestamps import MAX_US, MIN_US, parse_ts

log = logging.getLogger(__name__)

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
        self.labels = contract.redactions  # redacted field -> classification
        self.fallbacks = 0  # batches the column path raised on, checked again record by record
        self._decoder: JsonDecoder | None = None
        self._arrow = ArrowChecks(self.checks)
        self._getters = [(f.name, attrgetter(f.name), f.logical_type) for f in contract.fields]
        self._rank = {(c.field, c.rule): k for k, c in enumerate(self.checks)}
        self._unique_fields = [c.field for c in self.checks if c.rule == "unique"]
        fields = [(f.name, f.logical_type) for f in contract.fields]
        self._row_checker_one = build_row_checker(fields, tuple(c for c in self.checks if c.rule != "unique"), self.labels)
        self._row_checker = build_row_checker(fields, self.checks, self.labels)

    @property
    def decoder(self) -> JsonDecoder:
        if self._decoder is None:
            self._decoder = JsonDecoder(self.contract)
        return self._decoder

    # -- JSON bytes -----------------------------------------------------------------
    def validate_json(self, raws: Sequence[bytes], *, now: int | None = None, path: str | None = None) -> ValidationResult:
        """One JSON record per element (a Kafka message value, a jsonl line).

        `path`: None picks by batch size; "record" or "columnar" force one; "isolate" is the
        record path that also builds each valid row alone, so building `valid` cannot fail
        (the stream's last resort when it did)."""
        if now is None:
            now = time.time_ns() // 1000
        if path is None and len(raws) <= self.small_batch or path == "record":
            return self._json_one(raws[0], now) if len(raws) == 1 else self._json_rows(raws, now)
        if path == "isolate":
            return self._json_rows(raws, now, isolate=True)
        try:
            return self._json_columns(raws, now)
        except FATAL:
            raise
        except BaseException as e:
            self._fell_back(e)
            return self._json_rows(raws, now)

    def _fell_back(self, e: BaseException) -> None:
        self.fallbacks += 1
        log.warning("contract %s: the column check raised %s; batch checked record by record", self.contract.id, type(e).__name__)

    def _failure(self, e: BaseException, field: str | None = None) -> Reason:
        return failure(e, field, withhold=bool(self.labels))

    def _json_columns(self, raws: Sequence[bytes], now: int) -> ValidationResult:
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
        try:
            res = self._table(table, now)
            res.valid  # noqa: B018 - built here, inside the boundary (a cast may still refuse a value)
            return res
        except FATAL:
            raise
        except BaseException as e:
            self._fell_back(e)
            return self._table_rows(table, now)

    def _table_rows(self, table: pa.Table, now: int) -> ValidationResult:
        """validate_table one row at a time, each inside its own try; `unique` across the rows."""
        valid_index: list[int] = []
        invalid: list[InvalidRow] = []
        parts: list[pa.Table] = []
        for i in range(table.num_rows):
            try:
                one = self._table(table.slice(i, 1), now)
                if one.invalid:
                    invalid.append(InvalidRow(i, None, one.invalid[0].reasons))
                    continue
                parts.append(one.valid)
                valid_index.append(i)
            except FATAL:
                raise
            except BaseException as e:
                invalid.append(InvalidRow(i, None, (self._failure(e),)))
        dups = self._duplicates_by_row(table)
        if dups:
            keep = [k for k, i in enumerate(valid_index) if i not in dups]
            parts = [parts[k] for k in keep]
            invalid += [InvalidRow(i, None, (dups[i],)) for i in valid_index if i in dups]
            valid_index = [valid_index[k] for k in keep]
            invalid.sort(key=lambda r: r.index)
        valid = pa.concat_tables(parts) if parts else self.schema.empty_table()
        return ValidationResult(table.num_rows, valid_index, invalid, lambda t, _: t, valid)

    def _duplicates_by_row(self, table: pa.Table) -> dict[int, Reason]:
        """Row -> its `unique` reason, for values seen in an earlier row (the fallback's unique check,
        on the source column: compared by Arrow, so no value needs to become a Python object)."""
        from .arrow_eval import _duplicates, buckets

        out: dict[int, Reason] = {}
        for c in self.checks:
            if c.rule != "unique" or c.field not in table.column_names:
                continue
            col = table.column(c.field)
            b = buckets(_event_times(table, c.arg[0]), c) if c.arg else None
            dup = _duplicates(col, b)
            for i in np.flatnonzero(dup).tolist() if dup is not None else ():
                try:
                    value = _show(col[i].as_py())
                except Exception:  # a value Python cannot hold: the reason says so
                    value = f"<a {col.type} value Python cannot show>"
                out.setdefault(i, c.reason(value))
        return out

    def _table(self, table: pa.Table, now: int) -> ValidationResult:
        reasons: dict[int, list[Reason]] = {}
        cols = []
        for f in self.contract.fields:
            want = WIDE[f.logical_type]
            if f.name not in table.column_names:
                cols.append(pa.nulls(table.num_rows, want))
                continue
            col = _cast_column(table.column(f.name), want, f.name, f.logical_type, reasons, self.labels.get(f.name))
            cols.append(_ts_in_range(col, f.name, reasons, self.labels.get(f.name)) if f.logical_type == "timestamp" else col)
        if self.contract.unknown_fields == "reject":
            for name in table.column_names:
                if name not in self.types:
                    col = table.column(name)
                    for i in np.flatnonzero(~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)):
                        reasons.setdefault(int(i), []).append(unknown_field(self.contract, name, _show(col[int(i)].as_py())))
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
                arrays.append(_strings_to_ts(pa.array(values, pa.string()), name, extra, self.labels.get(name)))
                continue
            try:
                arrays.append(pa.array(values, type=fld.type))
            except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(_array_or_reasons(values, WIDE[t], name, t, extra, self.labels.get(name)))
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
                    why.append(c.reason(_show(value)))
            invalid = [InvalidRow(i, raws[i] if raws is not None else None, _ordered(why, self._rank)) for i, why in per_row.items()]
        valid_mask = ~bad
        valid_index = np.flatnonzero(valid_mask).tolist()

        return ValidationResult(n, valid_index, invalid, self._build_table, (table, valid_mask if len(invalid_idx) else None))

    def _build_table(self, payload, valid_index) -> pa.Table:
        table, mask = payload
        t = table.filter(pa.array(mask)) if mask is not None else table
        return t.cast(self.schema)

    # -- record path --------------------------------------------------------------------
    def _json_one(self, raw: bytes, now: int) -> ValidationResult:
        """A producer checking one record: the least work possible, inside the same boundary."""
        decoder = self.decoder
        out: list[Reason] = []
        try:
            try:
                row = decoder.struct_decode(raw)
                prior = None
            except decoder.errors as e:
                row, prior = decoder.slow(raw, e)
                out.extend(prior)
            self._row_checker_one(row, now, prior, None, out)  # a batch of one is unique by itself
        except FATAL:
            raise
        except BaseException as e:
            row = decoder.empty
            out.append(self._failure(e))
        if out:
            return ValidationResult(1, [], [InvalidRow(0, raw, _ordered(out, self._rank))], self._build_rows, [row])
        return ValidationResult(1, [0], [], self._build_rows, [row])

    def _json_rows(self, raws: Sequence[bytes], now: int, *, isolate: bool = False) -> ValidationResult:
        """Decode and check record by record in one pass: the small-batch path.

        Each record inside its own try: whatever its content makes a check raise
        refuses that record (rule `internal`) and no other."""
        decoder = self.decoder
        dec = decoder.struct_decode
        errors = decoder.errors
        check = self._row_checker
        rank = self._rank
        seen = self._fresh_seen()
        rows: list = []
        valid_index: list[int] = []
        invalid: list[InvalidRow] = []
        out = []
        for i, raw in enumerate(raws):
            try:
                try:
                    row = dec(raw)
                    prior = None
                except errors as e:
                    row, prior = decoder.slow(raw, e)
                    out.extend(prior)
                check(row, now, prior, seen, out)
                if isolate and not out:
                    self._prove(row)
            except FATAL:
                raise
            except BaseException as e:
                row = decoder.empty
                out.append(self._failure(e))
            rows.append(row)
            if out:
                invalid.append(InvalidRow(i, raw, _ordered(out, rank)))
                out = []
            else:
                valid_index.append(i)
        return ValidationResult(len(raws), valid_index, invalid, self._build_rows, rows)

    def _prove(self, row) -> None:
        """Raise unless `row` alone builds into the contract's schema."""
        _, extra = self._rows_to_table([row], final=True)
        if extra:
            raise ValueError(f"the row does not build: {extra[0][0].rule} of `{extra[0][0].field}`")

    def _fresh_seen(self) -> dict[str, set] | None:
        return {name: set() for name in self._unique_fields} if self._unique_fields else None

    def _build_rows(self, rows: list, valid_index: list[int]) -> pa.Table:
        table, _ = self._rows_to_table([rows[i] for i in valid_index] if len(valid_index) < len(rows) else rows, final=True)
        return table


def _ordered(why: list[Reason], rank: dict) -> tuple[Reason, ...]:
    """Reasons in one canonical order (decode reasons first, then checks in contract order)."""
    return tuple(sorted(why, key=lambda r: rank.get((r.field, r.rule), -1)))


# the timestamp forms Arrow's cast reads as parse_ts does (an RE2 pattern, run by Arrow)
_ISO_Z = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


_show = show_value


def _py(scalar: pa.Scalar) -> Any:
    return _show(scalar.as_py())


def _array_or_reasons(values: list, typ: pa.DataType, name: str, t: str, reasons: dict[int, list[Reason]], label: str | None) -> pa.Array:
    out = []
    for i, v in enumerate(values):
        try:
            pa.array([v], type=typ)
            out.append(v)
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            out.append(None)
            reasons.setdefault(i, []).append(make_reason(name, "type", _show(v), lambda shown: f"{shown} does not fit a 64-bit {t}", label))
    return pa.array(out, type=typ)


def _cast_column(col, want: pa.DataType, name: str, t: str, reasons: dict[int, list[Reason]], label: str | None = None):
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = _utf8_or_reasons(col, name, reasons, label)
    if col.type == want:
        return col
    import pyarrow.compute as pc

    try:
        if pa.types.is_timestamp(want) and pa.types.is_timestamp(col.type) and col.type.tz is None:
            return pc.assume_timezone(col.cast(pa.timestamp("us")), "UTC")  # naive = UTC
        if pa.types.is_timestamp(want) and pa.types.is_string(col.type):
            return _strings_to_ts(col, name, reasons, label)
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
            reasons.setdefault(i, []).append(
                make_reason(name, "type", _show(v), lambda shown: f"expected {'an' if t[0] in 'aeiou' else 'a'} {t}, got {shown}", label)
            )
    return pa.array(out, type=want)


TS = pa.timestamp("us", tz="UTC")


def _utf8_or_reasons(col, name: str, reasons: dict[int, list[Reason]], label: str | None):
    """A string column as is when it is valid UTF-8 (Arrow does not check what a file holds);
    else its undecodable values are `type` reasons and null."""
    try:
        col.validate(full=True)
        return col
    except pa.ArrowInvalid:
        pass
    out = []
    for i, b in enumerate(col.cast(pa.binary()).to_pylist()):
        try:
            out.append(None if b is None else b.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
            reasons.setdefault(i, []).append(
                make_reason(name, "type", b, lambda shown: f"expected a string, got bytes that are not UTF-8: {shown}", label)
            )
    return pa.array(out, pa.string())


def _ts_in_range(col, name: str, reasons: dict[int, list[Reason]], label: str | None):
    """A timestamp column with the instants beyond years 1..9999 UTC (a file may hold them) as
    `type` reasons and null, as parse_ts refuses them in JSON."""
    import pyarrow.compute as pc

    us = pc.fill_null(col.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    far = np.flatnonzero((us < MIN_US) | (us > MAX_US))
    if not len(far):
        return col
    for i in far.tolist():
        reasons.setdefault(i, []).append(
            make_reason(name, "type", int(us[i]), lambda shown: f"{shown} µs from 1970 is beyond years 1..9999 UTC", label)
        )
    keep = np.ones(len(us), dtype=bool)
    keep[far] = False
    return pc.if_else(pa.array(keep), col, pa.scalar(None, col.type))


def _strings_to_ts(col, name: str, reasons: dict[int, list[Reason]], label: str | None = None):
    """ISO 8601 strings -> timestamp[us, UTC], as `timestamps.parse_ts` reads them. Arrow's cast takes
    the common forms (with an offset or Z) at C speed; the rest (naive = UTC, other ISO forms) go
    through parse_ts; what it refuses is a `type` reason for its row."""
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    # the forms Arrow parses as Python does, at C speed; the others one by one
    ok = pc.fill_null(pc.match_substring_regex(col, _ISO_Z), False)
    try:
        fast = pc.cast(pc.if_else(ok, col, pa.scalar(None, pa.string())), TS).cast(pa.int64())
        out = fast.to_pylist()
        ok_np = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
        vals = pc.fill_null(fast, 0).to_numpy(zero_copy_only=False)
        # an instant beyond years 1..9999 UTC is no timestamp (as parse_ts says): parse_ts refuses it below
        slow = np.flatnonzero(~ok_np | (vals < MIN_US) | (vals > MAX_US)).tolist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = [None] * len(col)
        slow = range(len(col))
    for i in slow:
        v = col[i].as_py()
        if v is None:
            continue
        out[i] = parse_ts(v)
        if out[i] is None:
            reasons.setdefault(i, []).append(ts_type_reason(name, v, label))
    return pa.array(out, type=pa.int64()).cast(TS)


def _event_times(table: pa.Table, et: str) -> pa.Table:
    """The event-time column as the contract reads it, for uniqueWithin buckets (a value that does
    not cast is null: a bucket of its own kind, as on the other paths)."""
    col = table.column(et) if et in table.column_names else pa.nulls(table.num_rows, TS)
    try:
        col = _cast_column(col, TS, et, "timestamp", {}, None)
    except Exception:  # noqa: BLE001 - no usable event times
        col = pa.nulls(table.num_rows, TS)
    return pa.table({et: col})
