"""The `featureline` command line. Each command is thin: parse options, call one library
function, print, and map errors to exit codes (0 ok, 1 problems found, 2 usage/config).

Heavy libraries (pydantic, pyarrow, duckdb, sqlglot, kafka, redis) are imported inside
commands, never at module import, so `featureline --help` starts fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="featureline",
    help="A streaming feature store with data contracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProjectOpt = typer.Option(".", "--project", "-p", envvar="FEATURELINE_PROJECT", help="Project directory (or any directory below it).")


def _err(text: str) -> None:
    from .secrets import redact

    print(redact(text), file=sys.stderr)  # no secret value read by this process is ever printed


def handle_errors(fn):
    """featureline's errors (errors.FeaturelineError) -> their message on stderr (a SpecError:
    every problem with its file:line), exit with the error's `exit_code` (1 or 2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import FeaturelineError, SpecError

        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            _err(e.render())
            raise typer.Exit(e.exit_code) from None
        except FeaturelineError as e:
            _err(f"error: {e}")
            raise typer.Exit(e.exit_code) from None

    return wrapper


@app.command()
@handle_errors
def check(project: Path = ProjectOpt) -> None:
    """Parse, cross-check and compile the project; print a summary."""
    from .compiler import compile_project

    plan = compile_project(project)
    n_feat = sum(len(v.features) for v in plan.views.values())
    print(f"ok: project `{plan.project.name}` compiles")
    print(f"  {len(plan.contracts)} contracts: {', '.join(f'{c.id} v{c.version}' for c in plan.contracts.values())}")
    ents = ", ".join(f"{e.name} ({'/'.join(e.join_keys)})" for e in plan.entities.values())
    print(f"  {len(plan.entities)} entities: {ents}")
    print(f"  {len(plan.sources)} sources: {', '.join(_source_line(s) for s in plan.sources.values())}")
    print(f"  {len(plan.views)} feature views, {n_feat} features:")
    for v in plan.views.values():
        print(
            f"    {v.name:<24} {v.kind:<7} {len(v.features):>3} features  entity={v.entity} source={v.source}"
            + (f" where {v.where}" if v.where else "")
        )
    print(f"  {len(plan.services)} feature services: {', '.join(f'{s.name} ({len(s.features)} features)' for s in plan.services.values())}")


def _source_line(s) -> str:
    sides = []
    if s.batch:
        sides.append("batch")
    if s.stream:
        sides.append(f"stream:{s.stream.topic}")
    return f"{s.name} [{'+'.join(sides)}]"


@app.command()
@handle_errors
def plan(
    project: Path = ProjectOpt,
    format: str = typer.Option("text", "--format", "-f", help="text or json"),
    view: str | None = typer.Option(None, "--view", help="Only this feature view."),
) -> None:
    """Show the compiled plan: every feature's window, hop and as-of rule."""
    from .compiler import compile_project

    p = compile_project(project)
    if format == "json":
        import json

        print(json.dumps(p.to_dict(), indent=2, default=str))
        return
    if format != "text":
        _err(f"error: unknown format {format!r} (use text or json)")
        raise typer.Exit(2)
    from .plan_view import render_plan

    render_plan(p, view)


@app.command()
@handle_errors
def dataset(
    spine: Path = typer.Option(..., "--spine", help="Spine file (parquet or csv): join keys + a time column."),
    service: str = typer.Option(..., "--service", help="Feature service to compute."),
    out: Path = typer.Option(..., "--out", help="Output file (.parquet or .csv)."),
    at_column: str | None = typer.Option(None, "--at-column", help="The spine's time column (default: timestamp, event_time or ts)."),
    strict: bool = typer.Option(False, "--strict", help="Fail if a batch source has rows that break its contract."),
    project: Path = ProjectOpt,
) -> None:
    """A point-in-time training set: every spine row, in order, with the service's features as of its time."""
    import time

    from .store import FeatureStore

    t0 = time.perf_counter()
    fs = FeatureStore(project, strict=strict)
    try:
        table = fs.get_historical_features(spine, service, at_column=at_column, progress=sys.stderr.isatty())
    except FileNotFoundError as e:
        _err(f"error: {e}")
        raise typer.Exit(2) from None
    _write_table(table, out)
    for r in fs.source_reports().values():
        _err(r.describe())
    print(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {out} in {time.perf_counter() - t0:.1f}s")


def _write_table(table, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, out)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, out)


@app.command()
@handle_errors
def backfill(
    start: str | None = typer.Option(None, "--start", help="Start time (ISO 8601, UTC if naive), inclusive; offline only."),
    end: str = typer.Option(..., "--end", help="End time, exclusive."),
    to: str = typer.Option("offline", "--to", help="offline, online or both."),
    view: list[str] | None = typer.Option(None, "--view", help="Only these feature views (repeatable)."),
    cadence: str | None = typer.Option(None, "--cadence", help="Time between rows, e.g. 1h (default: each view's smallest hop)."),
    strict: bool = typer.Option(False, "--strict", help="Fail if a batch source has rows that break its contract."),
    project: Path = ProjectOpt,
) -> None:
    """Compute feature values: over [start, end) into the offline store (partitioned parquet),
    and/or as of --end into the online store (Redis tiles and latest values)."""
    import time

    from .batch.backfill import backfill_offline
    from .store import FeatureStore
    from .timeutil import parse_duration, to_us

    if to not in ("offline", "online", "both"):
        _err("error: --to must be offline, online or both")
        raise typer.Exit(2)
    if start is None and to != "online":
        _err("error: --start is needed for --to offline/both (the online store needs only --end)")
        raise typer.Exit(2)
    try:
        lo, hi = (to_us(start) if start else None), to_us(end)
        step = parse_duration(cadence) if cadence else None
    except ValueError as e:
        _err(f"error: {e}")
        raise typer.Exit(2) from None
    t0 = time.perf_counter()
    fs = FeatureStore(project, strict=strict)
    try:
        if to in ("offline", "both"):
            written = backfill_offline(fs.batch, lo, hi, views=view, cadence=step, progress=sys.stderr.isatty())
            by_view: dict[str, tuple[int, int]] = {}
            for w in written:
                n, p = by_view.get(w.view, (0, 0))
                by_view[w.view] = (n + w.rows, p + 1)
            for v, (n, p) in by_view.items():
                print(f"  offline {v:<24} {n:>10,} rows in {p} partition(s) under {fs.plan.project.offline_path}/{v}/")
        if to in ("online", "both"):
            from .batch.online_backfill import rebuild_online

            t1 = time.perf_counter()
            done = rebuild_online(fs.batch, fs.online, hi, views=view)
            for w in done:
                what = f"{w.tiles:,} tiles" if w.kind != "latest" else "latest values"
                print(f"  online  {w.view:<24} {w.kind:<12} {w.entities:>8,} entities, {what}")
            per_view: dict[str, int] = {}
            for w in done:  # a view's hop layouts cover the same entities: count each view once
                per_view[w.view] = max(per_view.get(w.view, 0), w.entities)
            rows = sum(per_view.values())
            print(
                f"  online: {rows:,} entity-view rows in {time.perf_counter() - t1:.1f}s (events before {end}; the stream continues from there)"
            )
    except ValueError as e:
        _err(f"error: {e}")
        raise typer.Exit(2) from None
    for r in fs.source_reports().values():
        _err(r.describe())
    print(f"backfill to {to} done in {time.perf_counter() - t0:.1f}s")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handle_errors
def stream(
    ctx: typer.Context,
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Read each partition up to its end offset at launch, then stop."),
    runner: str = typer.Option(
        "FnApiRunner",
        "--runner",
        help="Beam runner (FnApiRunner here; FlinkRunner, DataflowRunner, ... with their options after the command's own).",
    ),
    from_: str | None = typer.Option(
        None, "--from", help="Apply only events at or after this time (default: the boundary of the last `backfill --to online`)."
    ),
    start: str = typer.Option("earliest", "--start", help="Where a partition without a committed offset starts: earliest or latest."),
    source: list[str] | None = typer.Option(None, "--source", help="Only these stream sources (repeatable)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics."),
    report_every: float = typer.Option(5.0, "--report-every", help="Seconds between progress lines."),
    max_poll_records: int | None = typer.Option(
        None,
        "--max-poll-records",
        min=1,
        help="Records per poll of a partition at most (one micro-batch); default 50,000 with --until-caught-up, else 5,000.",
    ),
    discover_every: float = typer.Option(
        30.0,
        "--discover-every",
        min=0,
        help="Live: look for partitions added to the topics every S seconds and restart the job to read them (0: never).",
    ),
    readers_per_partition: int | None = typer.Option(
        None,
        "--readers-per-partition",
        min=1,
        help="Reader processes per partition (decoding + contract check); default 2 with fewer partitions than cores, else 1.",
    ),
    skip_lost: bool = typer.Option(
        False,
        "--skip-lost",
        help="Go on past records deleted before they were read (retention), counting them as lost; without it the job stops and names the gap.",
    ),
    project: Path = ProjectOpt,
) -> None:
    """Run the streaming job: Kafka -> contract check -> tiles in Redis, bad records to <topic>.dlq.
    Extra arguments are passed to Beam as pipeline options."""
    import time

    from .compiler import compile_project
    from .stream.pipeline import StreamOptions, run
    from .timeutil import from_us, to_us

    if start not in ("earliest", "latest"):
        _err("error: --start must be earliest or latest")
        raise typer.Exit(2)
    try:
        from_us_ = to_us(from_) if from_ else None
    except ValueError as e:
        _err(f"error: --from: {e}")
        raise typer.Exit(2) from None
    _quiet_logs()
    plan = compile_project(project)
    opts = StreamOptions(
        until_caught_up=until_caught_up,
        runner=runner,
        beam_args=list(ctx.args),
        from_us=from_us_,
        start=start,
        report_every_s=report_every,
        max_poll_records=max_poll_records,
        metrics_port=metrics_port,
        sources=tuple(source or ()),
        discover_every_s=discover_every,
        readers_per_partition=readers_per_partition,
        skip_lost=skip_lost,
    )
    t0 = time.perf_counter()
    _stop_on_signals(opts.run_id)
    from .online.state import StoreBehind, StoreRebuilt

    try:
        m, bounds = run(plan, opts, on_new_partitions=_restart_for(opts.run_id))
    except (StoreBehind, StoreRebuilt) as e:  # start again from what Redis holds: nothing lost, nothing twice
        _restart(f"{e}; restarting", opts.run_id)
    except ValueError as e:
        _err(f"error: {e}")
        raise typer.Exit(2) from None
    secs = time.perf_counter() - t0
    for s, b in bounds.items():
        print(f"  source {s}: " + (f"events at or after {from_us(b).isoformat()} (backfill boundary)" if b is not None else "all events"))
    print(f"  {m.line()}")
    if m.by_rule:
        print("  dead-letter reasons (a record may break several rules):")
    for (f, r), n in sorted(m.by_rule.items(), key=lambda x: -x[1]):
        print(f"    {n:>7,}  {f or 'record'}/{r}")
    print(f"stream {'caught up' if until_caught_up else 'stopped'} in {secs:.1f}s")
    if not m.balanced():
        _err("error: counts do not add up (consumed != applied + dead-lettered + filtered)")
        raise typer.Exit(1)


def _restart_for(run_id: str):
    """New partitions in live mode: the job is started again (the same command, in place), so
    it reads every partition. What was applied is in Redis; what was not committed is read
    again from the committed offsets (at-least-once in, idempotent merges): nothing is lost."""

    def restart(new) -> None:
        names = ", ".join(f"{t}:{p}" for t, p in new)
        _restart(f"new partitions {names}: restarting the job to read them", run_id)

    return restart


def _restart(why: str, run_id: str) -> None:
    """The stream started again in place (the same command): applied work is in Redis, what was
    not committed is read again from the committed offsets."""
    import os

    from .stream.pipeline import metrics

    print(f"[stream] {why} ({metrics(run_id).line()})", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "featureline", *sys.argv[1:]])


def _stop_on_signals(run_id: str) -> None:
    """Ctrl-C / SIGTERM stop the job at once (FnApiRunner would not notice them while it waits
    for a poll): what was applied is in Redis, what was not is re-read from the committed
    offsets next time (at-least-once in, idempotent merges), so nothing is lost. The counts so
    far are printed first."""
    import os
    import signal

    def stop(signum, _frame):
        from .stream.pipeline import metrics

        print(f"\nstopped by {signal.Signals(signum).name}: {metrics(run_id).line()}", file=sys.stderr, flush=True)
        os._exit(130 if signum == signal.SIGINT else 143)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _quiet_logs() -> None:
    """Beam warns at import about optional GCP libraries, kafka-python about normal states
    (no group on a reader, a topic created on first use): keep stderr for what matters."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("apitools not found")

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addFilter(_Drop())
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the stream prints one line per outage itself (outage.py)
    # Beam logs a DoFn's error with its traceback before re-raising it: the CLI reports it once
    for name in ("apache_beam.runners.worker", "apache_beam.runners.common"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@app.command("dead-letters")
@handle_errors
def dead_letters(
    topic: str | None = typer.Option(None, "--topic", help="Source topic (default: every stream source's topic)."),
    limit: int = typer.Option(10, "--limit", "-n", help="Records to show (the counts cover all)."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
    project: Path = ProjectOpt,
) -> None:
    """What the stream dead-lettered: counts by field and rule, and the first records with their reasons."""
    import json
    from collections import Counter

    from .compiler import compile_project
    from .stream.pipeline import stream_sources
    from .stream.sinks import kafka_config, read_dead_letters

    plan = compile_project(project)
    topics = [topic] if topic else sorted(stream_sources(plan))
    try:
        by_topic = {t: plan.contracts[plan.sources[s].contract] for t, s in stream_sources(plan).items()}
        rows = [r for t in topics for r in read_dead_letters(kafka_config(plan), t, contract=by_topic.get(t))]
    except Exception as e:  # no broker
        _err(f"error: cannot read dead letters at {plan.project.kafka_bootstrap}: {e}")
        raise typer.Exit(1) from None
    if fmt == "json":
        print(json.dumps(rows[:limit] if limit else rows, indent=2))
        return
    by = Counter((r["field"] or "record", r["rule"]) for r in rows)
    print(f"{len(rows):,} dead letters in {', '.join(t + '.dlq' for t in topics)}")
    for (f, r), n in by.most_common():
        print(f"  {n:>7,}  {f}/{r}")
    for r in rows[:limit]:
        print(f"  {r['source']:<22} {(r['field'] or 'record') + '/' + r['rule']:<28} {r['message']}")


@app.command()
@handle_errors
def get(
    service: str = typer.Option(..., "--service", "-s", help="Feature service."),
    entity: list[str] = typer.Option(
        ..., "--entity", "-e", help="Join key values, e.g. user_id=42 (repeat for more keys or rows: user_id=1,user_id=2)."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    project: Path = ProjectOpt,
) -> None:
    """Read a service's features for entities from the online store, as of now."""
    import json

    from .store import FeatureStore

    rows = _entity_rows(entity)
    fs = FeatureStore(project)
    try:
        cols = fs.get_online_features(fs_service := service, rows)
    except Exception as e:  # redis connection errors: say where we tried
        if type(e).__module__.startswith("redis"):
            _err(f"error: cannot read the online store at {fs.plan.project.redis_url}: {e}")
            raise typer.Exit(1) from None
        raise
    if fmt == "json":
        n = len(next(iter(cols.values()))) if cols else 0
        print(json.dumps([{k: cols[k][i] for k in cols} for i in range(n)], default=str, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{fs_service} (online, as of now)", title_justify="left")
    table.add_column("feature", no_wrap=True)
    n = len(next(iter(cols.values()))) if cols else 0
    for i in range(n):
        table.add_column(f"row {i + 1}", no_wrap=True)
    for k, vals in cols.items():
        table.add_row(k, *(_cell(v) for v in vals))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


@app.command()
@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(6566, "--port", help="Port (6566, like `feast serve`)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes (one per core scales reads)."),
    project: Path = ProjectOpt,
) -> None:
    """Serve online features over HTTP: POST /features/online, Feast's POST /get-online-features,
    GET /health, /ready, /metrics (Prometheus), /openapi.json. Limits, timeouts and bearer tokens:
    featureline.yaml's `serve:` (docs/security.md). Stops on SIGINT/SIGTERM."""
    from .serve import run

    run(project, host=host, port=port, workers=workers)


def _entity_rows(specs: list[str]) -> list[dict]:
    """`user_id=42` and `merchant_id=7` make one row; `user_id=1,user_id=2` two rows."""
    rows: list[dict] = []
    for spec in specs:
        parts = [p for p in spec.split(",") if p]
        for i, part in enumerate(parts):
            key, sep, value = part.partition("=")
            if not sep:
                _err(f"error: --entity {spec!r}: write key=value")
                raise typer.Exit(2)
            while len(rows) <= i:
                rows.append({})
            rows[i][key.strip()] = _scalar(value.strip())
    return rows


def _scalar(v: str):
    try:
        return int(v)
    except ValueError:
        return v


@app.command()
def head(
    path: Path = typer.Argument(..., help="A parquet or csv file (a training set, an offline partition, a spine)."),
    rows: int = typer.Option(10, "-n", "--rows", help="Rows to show."),
    offset: int = typer.Option(0, "--offset", help="First row to show."),
    columns: str | None = typer.Option(None, "--columns", "-c", help="Comma-separated columns (default: all)."),
) -> None:
    """Show the first rows of a parquet or csv file as a table."""
    from rich.console import Console
    from rich.table import Table

    from .store import read_spine

    try:
        t = read_spine(path)
        if columns:
            t = t.select([c.strip() for c in columns.split(",")])
    except (FileNotFoundError, KeyError) as e:
        _err(f"error: {e}")
        raise typer.Exit(2) from None
    table = Table(title=f"{path} ({t.num_rows:,} rows x {t.num_columns} columns)", title_justify="left")
    for name in t.column_names:
        table.add_column(name, no_wrap=True)
    for row in t.slice(offset, rows).to_pylist():
        table.add_row(*(_cell(row[c]) for c in t.column_names))
    console = Console()
    if not console.is_terminal:
        console = Console(width=250)
    console.print(table)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if hasattr(v, "isoformat"):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="Directory to create the project in."),
    name: str | None = typer.Option(None, help="Project name (default: the directory's name)."),
    force: bool = typer.Option(False, help="Write into a non-empty directory."),
) -> None:
    """Scaffold a new project with one contract and one feature view that pass `check`."""
    from .scaffold import scaffold

    written = scaffold(directory, name=name, force=force)
    print(f"created project in {directory}:")
    for f in written:
        print(f"  {f}")
    print(f"next: cd {directory} && featureline check")


def _register_subcommands() -> None:
    from .commands import contracts, generate

    app.add_typer(contracts.app, name="contracts")
    app.add_typer(generate.app, name="generate")


def main() -> None:
    _register_subcommands()
    app()


if __name__ == "__main__":
    main()
