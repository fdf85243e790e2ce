"""Batch sources read into DuckDB, checked against their contract on the way in.

Each source becomes a temp table `__src_<name>` of its valid rows with the contract's
columns (typed), `__t` (event time, epoch microseconds) and `__arrival` (arrival
order: file order, then row order within a file). Invalid rows are excluded, counted
per (field, rule) and reported; in strict mode any invalid row is an error.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass, field

from ..contracts.sql_eval import checks_sql, typed_select, unknown_flag
from ..errors import FeaturelineError
from ..plan import Plan, SourcePlan
from ..sql import lit, q

ARRIVAL_FILE_SHIFT = 1 << 40  # arrival = file index * 2^40 + row number in the file


class SourceError(FeaturelineError):
    """A batch source that cannot be read, or (with --strict) holds rows breaking its contract."""


@dataclass
class SourceReport:
    name: str
    contract: str
    rows: int = 0
    valid: int = 0
    by_rule: Counter = field(default_factory=Counter)  # (field, rule) -> rows

    @property
    def invalid(self) -> int:
        return self.rows - self.valid

    def describe(self) -> str:
        head = f"source {self.name}: {self.rows:,} rows, {self.valid:,} valid, {self.invalid:,} invalid (contract {self.contract})"
        if not self.by_rule:
            return head
        rules = ", ".join(f"{f or 'record'}/{r}: {n:,}" for (f, r), n in sorted(self.by_rule.items(), key=lambda x: -x[1]))
        return f"{head}; {rules}"


def raw_relation(con, src: SourcePlan) -> str:
    """SQL of the source as stored, with an `__arrival` column."""
    b = src.batch
    if b is None:
        raise SourceError(f"source `{src.name}` has no batch side")
    if b.format == "duckdb":
        con.execute(f"ATTACH IF NOT EXISTS {lit(b.database)} AS __db_{src.name} (READ_ONLY)")
        return f"(SELECT *, rowid AS __arrival FROM __db_{src.name}.{q(b.table)})"
    files = sorted(glob.glob(b.path, recursive=True))
    if not files:
        raise SourceError(f"source `{src.name}`: no files match {b.path}")
    if b.format == "parquet":
        idx = ", ".join(f"({lit(f)}, {i})" for i, f in enumerate(files))
        return (
            f"(SELECT r.* EXCLUDE (filename, file_row_number), f.i * {ARRIVAL_FILE_SHIFT} + r.file_row_number AS __arrival "
            f"FROM read_parquet([{', '.join(lit(f) for f in files)}], filename=true, file_row_number=true) r JOIN (VALUES {idx}) f(name, i) ON r.filename = f.name)"
        )
    # csv: read in file order; DuckDB keeps insertion order, so row_number() is arrival order
    return (
        f"(SELECT *, row_number() OVER () AS __arrival FROM read_csv([{', '.join(lit(f) for f in files)}], header=true, all_varchar=true))"
    )


def fingerprint(plan: Plan, name: str, now_us: int) -> str:
    """What a checked source depends on: its contract and source plans, its files (path, size,
    mtime) or DuckDB file, and the hour (the future-event-time rule moves with the clock)."""
    import hashlib
    import os

    src = plan.sources[name]
    parts = [repr(src), repr(plan.contracts[src.contract]), str(now_us // 3_600_000_000)]
    paths = files_of(src) or ([src.batch.database] if src.batch and src.batch.database else [])
    for f in paths:
        st = os.stat(f)
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_source(con, plan: Plan, name: str, *, now_us: int, strict: bool = False, schema: str = "temp") -> tuple[SourceReport, str]:
    """Check the source against its contract into `<schema>.__src_<name>` (all rows, typed, with
    `__t`, `__arrival`, `__bad` and one flag per check). Returns the report and the SQL of the
    valid rows."""
    src = plan.sources[name]
    contract = plan.contracts[src.contract]
    raw = raw_relation(con, src)
    cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall() if r[0] != "__arrival"}
    items, type_bad = typed_select(contract, cols)
    known = {f.name for f in contract.fields}
    unknown = [c for c in cols if c not in known] if contract.unknown_fields == "reject" else []
    flags = [f"{sql} AS {q('__type_' + n)}" for n, sql in type_bad.items()]
    flags += [f"{q(c)} IS NOT NULL AS {unknown_flag(c)}" for c in unknown]
    checks = checks_sql(contract, list(type_bad), unknown, now_us)
    et = src.event_time
    if not any(f == et and r == "required" for f, r, _ in checks):
        # a row without an event time has no place in time: excluded, and counted as such
        checks.append((et, "required", f"{q(et)} IS NULL"))
    # uniqueness in one GROUP BY per unique field (cheaper than a window over every row):
    # the first occurrence in arrival order is valid, later ones are duplicates
    joins = []
    window = contract.unique_within_us  # per bucket of event time (uniqueWithin), as in the stream
    ctf = contract.event_time_field
    for i, (fname, rule, _sql) in enumerate(checks):
        if rule != "unique":
            continue
        field = next(f for f in contract.fields if f.name == fname)
        from ..contracts.sql_eval import SQL_TYPES, bucket_sql

        cast = f"TRY_CAST({q(fname)} AS {SQL_TYPES[field.logical_type]})" if fname in cols else "NULL"
        if window:
            raw_t = f"TRY_CAST({q(ctf)} AS TIMESTAMPTZ)" if ctf in cols else "CAST(NULL AS TIMESTAMPTZ)"
            b_raw, b_typed = bucket_sql(raw_t, window), bucket_sql(f"t.{q(ctf)}", window)
        else:
            b_raw = b_typed = "0"
        dup = f"__dup_{name}_{i}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {dup} AS SELECT {cast} AS __dv, {b_raw} AS __db, min(__arrival) AS __dfirst FROM {raw} "
            f"WHERE {cast} IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1"
        )
        joins.append((i, dup, fname, b_typed))
        checks[i] = (fname, rule, f"(d{i}.__dfirst IS NOT NULL AND t.__arrival > d{i}.__dfirst)")
    typed = f"(SELECT {', '.join(items + flags)}, __arrival FROM {raw})"
    join_sql = " ".join(
        f"LEFT JOIN {dup} d{i} ON d{i}.__dv = t.{q(fname)} AND d{i}.__db IS NOT DISTINCT FROM {b}" for i, dup, fname, b in joins
    )
    viol = [f"({sql}) AS __v{i}" for i, (_, _, sql) in enumerate(checks)]
    any_bad = " OR ".join(f"({sql})" for _, _, sql in checks) or "FALSE"
    keep = ", ".join(f"t.{q(f.name)}" for f in contract.fields)
    table = f"{schema}.{q('__src_' + name)}"
    temp = "TEMP " if schema == "temp" else ""
    con.execute(
        f"CREATE OR REPLACE {temp}TABLE {q('__src_' + name) if temp else table} AS SELECT {keep}, epoch_us(t.{q(et)}) AS __t, t.__arrival, "
        f"coalesce({any_bad}, FALSE) AS __bad{', ' + ', '.join(viol) if viol else ''} FROM {typed} t {join_sql}"
    )
    for _, dup, _, _ in joins:
        con.execute(f"DROP TABLE {dup}")
    counts = ", ".join(f"count(*) FILTER (WHERE __v{i})" for i in range(len(checks)))
    row = con.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT __bad){', ' + counts if counts else ''} FROM {table}").fetchall()[0]
    report = SourceReport(name, contract.id, rows=row[0], valid=row[1])
    for (fname, rule, _), n in zip(checks, row[2:], strict=False):
        if n:
            report.by_rule[(fname, rule)] = n
    if strict and report.invalid:
        raise SourceError(f"strict: {report.describe()}")
    return report, valid_rows(table)


def valid_rows(table: str) -> str:
    return f"(SELECT * FROM {table} WHERE NOT __bad)"


def files_of(src: SourcePlan) -> list[str]:
    if src.batch is None or src.batch.path is None:
        return []
    return sorted(glob.glob(src.batch.path, recursive=True))
