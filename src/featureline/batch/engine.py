"""Point-in-time feature values in DuckDB, exact to docs/semantics.md.

For a spine (entity keys + a time t per row):

- windowed features: AGG over the view's events with floor(t - W, H) <= event_time < t.
  One range join per view (entity keys equal, event time in [the widest window's
  start, t)); each feature is a FILTERed aggregate over its own start. Sums use
  DuckDB's compensated `fsum`; `last`/`first` break event-time ties by arrival order
  through one 128-bit ordering key (event_time * 2^64 + arrival).
- latest-value features: one ASOF join per view on the same ordering key (the greatest
  (event_time, arrival) strictly before t), then the ttl bound.

Work per spine row is proportional to its entity's events in the widest window, so
time grows linearly with the spine; DuckDB spills to disk past its memory limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FeaturelineError
from ..partials import events_sql
from ..plan import FeaturePlan, Plan, ViewPlan
from ..sql import ORD_SHIFT, floor_sql, lit, q
from .sources import SourceReport, fingerprint, load_source, valid_rows


class SpineError(FeaturelineError, ValueError):
    """A spine (the rows of a training set) that cannot be read or lacks its keys or time."""

    exit_code = 2


@dataclass
class BatchEngine:
    plan: Plan
    strict: bool = False
    now_us: int | None = None  # for the contracts' future-event-time rule; default: wall clock
    memory_limit: str | None = None
    cache: bool = True  # keep checked sources in .featureline/cache.duckdb between runs
    con: object = None
    reports: dict[str, SourceReport] = field(default_factory=dict)
    _valid: dict[str, str] = field(default_factory=dict)
    _schema: str | None = None

    def __post_init__(self) -> None:
        import duckdb

        if self.con is None:
            self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        if self.memory_limit:
            self.con.execute(f"SET memory_limit = {lit(self.memory_limit)}")
        tmp = Path(self.plan.project.root) / ".featureline" / "duckdb_tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"SET temp_directory = {lit(str(tmp))}")
        if self.now_us is None:
            self.now_us = time.time_ns() // 1000

    # -- sources -------------------------------------------------------------------
    def source(self, name: str) -> str:
        """SQL of the source's valid rows, checked against its contract on first use.

        With `cache`, the checked source lives in `.featureline/cache.duckdb`, keyed by a
        fingerprint of the contract, the source and its files (path, size, mtime) and the
        hour: a later run over unchanged files skips reading and checking them again.
        """
        if name not in self._valid:
            import json

            schema = self._cache_schema()
            fp = fingerprint(self.plan, name, self.now_us) if schema != "temp" else None
            hit = None
            if fp is not None:
                found = self.con.execute(f"SELECT report FROM {schema}.__meta WHERE name = ? AND fp = ?", [name, fp]).fetchall()
                hit = found[0] if found else None
            if hit is not None:
                data = json.loads(hit[0])
                report = SourceReport(name, data["contract"], data["rows"], data["valid"])
                report.by_rule.update({(f, r): n for f, r, n in data["by_rule"]})
                if self.strict and report.invalid:
                    from .sources import SourceError

                    raise SourceError(f"strict: {report.describe()}")
                valid = valid_rows(f"{schema}.{q('__src_' + name)}")
            else:
                report, valid = load_source(self.con, self.plan, name, now_us=self.now_us, strict=self.strict, schema=schema)
                if fp is not None:
                    blob = json.dumps(
                        {
                            "contract": report.contract,
                            "rows": report.rows,
                            "valid": report.valid,
                            "by_rule": [[f, r, n] for (f, r), n in report.by_rule.items()],
                        }
                    )
                    self.con.execute(f"DELETE FROM {schema}.__meta WHERE name = ?", [name])
                    self.con.execute(f"INSERT INTO {schema}.__meta VALUES (?, ?, ?)", [name, fp, blob])
            self.reports[name] = report
            self._valid[name] = valid
        return self._valid[name]

    def _cache_schema(self) -> str:
        if self._schema is None:
            self._schema = "temp"
            if self.cache:
                path = Path(self.plan.project.root) / ".featureline" / "cache.duckdb"
                try:
                    self.con.execute(f"ATTACH {lit(str(path))} AS __cache")
                    self.con.execute("CREATE TABLE IF NOT EXISTS __cache.__meta (name VARCHAR, fp VARCHAR, report VARCHAR)")
                    self._schema = "__cache"
                except Exception:  # another process holds the cache: check in memory this time
                    self._schema = "temp"
        return self._schema

    def events_sql(self, view: ViewPlan) -> str:
        """The view's events: keys, __t, __ord, and one input column per feature."""
        return events_sql(view, self.source(view.source))

    # -- point in time ----------------------------------------------------------------
    def view_values_sql(self, view: ViewPlan, spine: str, features: list[FeaturePlan]) -> str:
        """One row per spine row (__row) with the view's features as of the row's __t."""
        ev = self.events_sql(view)
        keys_eq = " AND ".join(f"e.{q(k)} = s.{q(k)}" for k in view.join_keys)
        if view.kind == "latest":
            outs = [f"CASE WHEN e.__t >= s.__t - {f.ttl_us} THEN e.{q('__in_' + f.name)} END AS {q(f.name)}" for f in features]
            return (
                f"SELECT s.__row, {', '.join(outs)} FROM (SELECT __row, {', '.join(q(k) for k in view.join_keys)}, __t, "
                f"__t::HUGEINT * {ORD_SHIFT} AS __ord FROM {spine}) s ASOF LEFT JOIN {ev} e ON {keys_eq} AND s.__ord > e.__ord"
            )
        starts = {f.name: floor_sql("s.__t - " + str(f.window_us), f.hop_us) for f in features}
        widest = max(features, key=lambda f: f.window_us + f.hop_us)
        lo = starts[widest.name] if len({(f.window_us, f.hop_us) for f in features}) == 1 else "least(" + ", ".join(starts.values()) + ")"
        aggs = [f"{_agg_sql(f, starts[f.name])} AS {q(f.name)}" for f in features]
        return (
            f"SELECT s.__row, {', '.join(aggs)} FROM {spine} s LEFT JOIN {ev} e "
            f"ON {keys_eq} AND e.__t >= {lo} AND e.__t < s.__t GROUP BY s.__row"
        )

    def historical(self, spine, service: str, *, at_column: str | None = None, progress: bool = False):
        """Every spine row, in order, with its own columns and one column per feature of the service."""
        import pyarrow as pa

        svc = self.plan.services.get(service)
        if svc is None:
            from ..errors import did_you_mean

            hint = did_you_mean(service, self.plan.services)
            raise SpineError(f"no feature service `{service}`" + (f": {hint}" if hint else ""))
        if not isinstance(spine, pa.Table):
            spine = pa.Table.from_pandas(spine, preserve_index=False) if hasattr(spine, "to_records") else pa.table(spine)
        at = at_column or _guess_time_column(spine)
        missing = [k for k in svc.join_keys if k not in spine.column_names]
        if missing:
            raise SpineError(
                f"the spine lacks the join key column(s) {', '.join(missing)} of service `{service}` (has: {', '.join(spine.column_names)})"
            )
        clash = [ref.partition(":")[2] for ref in svc.features if ref.partition(":")[2] in spine.column_names]
        if clash:
            raise SpineError(f"spine column(s) {', '.join(clash)} have the name of a feature of `{service}`: rename them")
        if at not in spine.column_names:
            raise SpineError(f"the spine has no time column `{at}` (has: {', '.join(spine.column_names)}); pass --at-column")
        con = self.con
        con.register("__spine_in", spine)
        key_types = self._key_types(svc.join_keys)
        keys = ", ".join(f"TRY_CAST({q(k)} AS {key_types[k]}) AS {q(k)}" for k in svc.join_keys)
        tcol = _time_sql(q(at), dict(zip(spine.column_names, [str(t) for t in spine.schema.types], strict=True))[at])
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __spine AS SELECT row_number() OVER () - 1 AS __row, {keys}, {tcol} AS __t FROM __spine_in"
        )
        by_view: dict[str, list[FeaturePlan]] = {}
        for ref in svc.features:
            f = self.plan.feature(ref)
            by_view.setdefault(f.view, []).append(f)
        parts = []
        views = list(by_view.items())
        for i, (vname, feats) in enumerate(_progress(views, "point-in-time join", progress)):
            view = self.plan.views[vname]
            con.execute(f"CREATE OR REPLACE TEMP TABLE __pit_{i} AS {self.view_values_sql(view, '__spine', feats)}")
            parts.append((i, feats))
        cols = [f"p{i}.{q(f.name)}" for i, feats in parts for f in feats]
        joins = " ".join(f"LEFT JOIN __pit_{i} p{i} ON p{i}.__row = s.__row" for i, _ in parts)
        values = con.sql(f"SELECT {', '.join(cols)} FROM __spine s {joins} ORDER BY s.__row").to_arrow_table()
        values = finalize(values, [f for _, feats in parts for f in feats])
        for i, _ in parts:
            con.execute(f"DROP TABLE __pit_{i}")
        con.execute("DROP TABLE __spine")
        con.unregister("__spine_in")
        # the spine's own columns come back untouched; features follow in the service's order
        out = spine
        for ref in svc.features:
            name = ref.partition(":")[2]
            out = out.append_column(name, values.column(name).combine_chunks())
        return out

    def _key_types(self, keys) -> dict[str, str]:
        from ..contracts.sql_eval import SQL_TYPES

        out = {}
        for e in self.plan.entities.values():
            for k, t in zip(e.join_keys, e.key_types, strict=True):
                out[k] = SQL_TYPES.get(t, "VARCHAR")
        return {k: out.get(k, "VARCHAR") for k in keys}


def _agg_sql(f: FeaturePlan, start: str) -> str:
    from ..aggregations import FUNCTIONS

    counts_events = f.column is None and f.expr is None
    return FUNCTIONS[f.function].bound(f.param, f.input_type).sql(f"e.{q('__in_' + f.name)}", f"e.__t >= {start}", f.dtype, counts_events)


def finalize(table, features):
    """The features whose function finalizes in Python (sketches: `Function.finalize`) turned
    from `sql`'s values (a column each, by name) into their values."""
    from ..aggregations import FUNCTIONS

    for f in features:
        fn = FUNCTIONS[f.function] if f.function else None
        if fn is not None and fn.finalize is not None:
            j = table.column_names.index(f.name)
            table = table.set_column(j, f.name, fn.bound(f.param, f.input_type).finalize(table.column(j).combine_chunks()))
    return table


def _guess_time_column(spine) -> str:
    for name in ("timestamp", "event_time", "ts", "time", "at"):
        if name in spine.column_names:
            return name
    raise SpineError(
        f"which spine column holds the time? none of timestamp/event_time/ts found in {', '.join(spine.column_names)}: pass --at-column"
    )


def _time_sql(col: str, arrow_type: str) -> str:
    """Spine times as epoch microseconds: timestamps (naive = UTC), ISO strings, or integers (microseconds)."""
    if arrow_type.startswith("timestamp") or arrow_type.startswith("date"):
        return f"epoch_us({col}::TIMESTAMPTZ)"
    if arrow_type in ("string", "large_string"):
        return f"epoch_us(CAST({col} AS TIMESTAMPTZ))"
    return f"CAST({col} AS BIGINT)"


def _progress(items, label: str, enabled: bool):
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as p:
        task = p.add_task(label, total=len(items))
        for it in items:
            yield it
            p.advance(task)
