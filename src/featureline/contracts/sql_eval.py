"""Checks compiled to DuckDB SQL: the batch engine validates sources where they are read.

The third compilation of the check IR (after `arrow_eval` and `record_eval`), with the
same rules and names. A source is read into a typed relation (`typed_select`), each
check becomes a boolean SQL expression true for violating rows (`violations`), and
the valid rows are those where none holds. Counting violations per (field, rule) is
one aggregate pass.
"""

from __future__ import annotations

from ..plan import ContractPlan
from ..sql import lit, q
from .checks import BOUND_RULES, FORMAT_PATTERNS, Check, compile_checks

SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "time": "TIME",
    "object": "VARCHAR",
    "array": "VARCHAR",
}


def typed_select(contract: ContractPlan, source_columns: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """SELECT items casting the source's columns to the contract's types, and per field
    the SQL of its `type` violation (a value present that does not cast).

    `source_columns`: the source relation's column name -> DuckDB type. Missing fields are NULL.
    """
    items: list[str] = []
    type_bad: dict[str, str] = {}
    for f in contract.fields:
        want = SQL_TYPES[f.logical_type]
        if f.name not in source_columns:
            items.append(f"CAST(NULL AS {want}) AS {q(f.name)}")
            continue
        have = source_columns[f.name].upper()
        col = q(f.name)
        if _same_type(have, want):
            items.append(f"{col}" if want != "TIMESTAMPTZ" or "TIME ZONE" in have else f"{col}::TIMESTAMPTZ AS {col}")
            continue
        items.append(f"TRY_CAST({col} AS {want}) AS {col}")
        type_bad[f.name] = f"({col} IS NOT NULL AND TRY_CAST({col} AS {want}) IS NULL)"
    return items, type_bad


def _same_type(have: str, want: str) -> bool:
    if want == "TIMESTAMPTZ":
        return have.startswith("TIMESTAMP")  # naive timestamps are UTC (the session's TimeZone is UTC)
    if want == "BIGINT":
        return have in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")
    if want == "DOUBLE":
        return have in ("DOUBLE", "FLOAT", "REAL") or have.startswith("DECIMAL")
    return have == want


def violation(c: Check, now_us: int) -> str:
    """SQL true for the rows that violate `c` (NULL-safe: false when the value is null)."""
    col = q(c.field)
    r, a, t = c.rule, c.arg, c.logical_type
    if r == "required":
        return f"{col} IS NULL"
    v = f"epoch_us({col})" if t == "timestamp" else (f"({col} - DATE '1970-01-01')" if t == "date" else col)
    if r in BOUND_RULES:
        op = {"lt": "<", "gt": ">", "le": "<=", "ge": ">="}[BOUND_RULES[r][0]]
        return f"coalesce({v} {op} {lit(a)}, FALSE)"
    if r == "multipleOf":
        if t == "integer" and float(a).is_integer():
            return f"coalesce({col} % {int(a)} <> 0, FALSE)"
        m = lit(float(a))
        return f"coalesce(abs({col} / {m} - round({col} / {m})) > 1e-9 * greatest(1.0, abs({col} / {m})), FALSE)"
    if r == "minLength":
        return f"coalesce(length({col}) < {int(a)}, FALSE)"
    if r == "maxLength":
        return f"coalesce(length({col}) > {int(a)}, FALSE)"
    if r in ("pattern", "format"):
        rx = FORMAT_PATTERNS[a] if r == "format" else a
        return f"coalesce(NOT regexp_matches({col}, {lit(rx)}), FALSE)"
    if r == "enum":
        return f"coalesce({col} NOT IN ({', '.join(lit(x) for x in a)}), FALSE)"
    if r == "event_time_future":
        return f"coalesce(epoch_us({col}) > {now_us + int(a)}, FALSE)"
    if r == "unique":
        bucket = f", {bucket_sql(q(a[0]), a[1])}" if a else ""
        return f"({col} IS NOT NULL AND row_number() OVER (PARTITION BY {col}{bucket} ORDER BY __arrival) > 1)"
    raise ValueError(f"unknown rule {r}")


def bucket_sql(ts_sql: str, window_us: int) -> str:
    """SQL of the start of the uniqueWithin bucket of a TIMESTAMPTZ (exact integer floor, as
    `checks.bucket_start`); NULL for a null time."""
    x = f"epoch_us({ts_sql})"
    return f"({x} - ((({x} % {int(window_us)}) + {int(window_us)}) % {int(window_us)}))"


def type_flag(name: str) -> str:
    return q(f"__type_{name}")


def unknown_flag(name: str) -> str:
    return q(f"__unknown_{name}")


def checks_sql(contract: ContractPlan, typed_fields, unknown_columns, now_us: int) -> list[tuple[str, str, str]]:
    """(field, rule, violation SQL) over the typed relation, whose `__type_<field>` and
    `__unknown_<column>` flag columns hold the cast and unknown-field failures.

    `required` is not reported for a field whose value failed to cast (the type reason
    explains it), as in the other engines.
    """
    out = [(name, "type", type_flag(name)) for name in typed_fields]
    out += [(name, "unknown_field", unknown_flag(name)) for name in unknown_columns]
    for c in compile_checks(contract):
        sql = violation(c, now_us)
        if c.rule == "required" and c.field in typed_fields:
            sql = f"({sql} AND NOT {type_flag(c.field)})"
        out.append((c.field, c.rule, sql))
    return out
