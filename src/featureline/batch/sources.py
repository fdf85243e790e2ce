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
from pathlib import Path

from ..contracts.sql_eval import checks_sql, lit, q, typed_select, unknown_flag
from ..plan import Plan, SourcePlan

ARRIVAL_FILE_SHIFT = 1 << 40  # arrival = file index * 2^40 + row number in the file


class SourceError(Exception):
    pass


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
    return f"(SELECT *, row_number() OVER () AS __arrival FROM read_csv([{', '.join(lit(f) for f in files)}], header=true, all_varchar=true))"


def load_source(con, plan: Plan, name: str, *, now_us: int, strict: bool = False) -> SourceReport:
    src = plan.sources[name]
    contract = plan.contracts[src.contract]
    raw = raw_relation(con, src)
    cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall() if r[0] != "__arrival"}
    items, type_bad = typed_select(contract, cols)
    known = {f.name for f in contract.fields}
    unknown = [c for c in cols if c not in known] if contract.unknown_fields == "reject" else []
    flags = [f"{sql} AS {q('__type_' + n)}" for n, sql in type_bad.items()]
    flags += [f"{q(c)} IS NOT NULL AS {unknown_flag(c)}" for c in unknown]
    typed = f"(SELECT {', '.join(items + flags)}, __arrival FROM {raw})"
    checks = checks_sql(contract, list(type_bad), unknown, now_us)
    et = src.event_time
    if not any(f == et and r == "required" for f, r, _ in checks):
        # a row without an event time has no place in time: excluded, and counted as such
        checks.append((et, "required", f"{q(et)} IS NULL"))
    table = f"__checked_{name}"
    viol = ", ".join(f"({sql}) AS __v{i}" for i, (_, _, sql) in enumerate(checks)) or "FALSE AS __v0"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, {viol} FROM {typed}")
    n_checks = max(1, len(checks))
    any_bad = " OR ".join(f"__v{i}" for i in range(n_checks))
    counts = ", ".join(f"count(*) FILTER (WHERE __v{i})" for i in range(n_checks))
    row = con.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT ({any_bad})), {counts} FROM {table}").fetchone()
    report = SourceReport(name, contract.id, rows=row[0], valid=row[1])
    for (fname, rule, _), n in zip(checks, row[2:], strict=False):
        if n:
            report.by_rule[(fname, rule)] = n
    if strict and report.invalid:
        con.execute(f"DROP TABLE {table}")
        raise SourceError(f"strict: {report.describe()}")
    keep = ", ".join(q(f.name) for f in contract.fields)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {q('__src_' + name)} AS SELECT {keep}, epoch_us({q(et)}) AS __t, __arrival "
        f"FROM {table} WHERE NOT ({any_bad})"
    )
    con.execute(f"DROP TABLE {table}")
    return report


def files_of(src: SourcePlan) -> list[str]:
    if src.batch is None or src.batch.path is None:
        return []
    return sorted(glob.glob(src.batch.path, recursive=True))


def describe_path(src: SourcePlan) -> str:
    b = src.batch
    if b is None:
        return "-"
    return b.path if b.path else f"{Path(b.database).name}:{b.table}"
