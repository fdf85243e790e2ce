"""`featureline generate`: example payments data (a parquet history, a live Kafka stream).

Only typer is imported here; numpy, pyarrow and kafka load inside the commands.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Generate example data.", no_args_is_help=True)


def _default_bootstrap() -> str:
    port = os.environ.get("FEATURELINE_KAFKA_PORT")
    return f"127.0.0.1:{port}" if port else "127.0.0.1:9092"


def _ensure_topic(server: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=server)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        print(f"created topic {topic!r} with {partitions} partitions")
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def _parse_time(text: str | None, option: str):
    if text is None:
        return None
    from ..timeutil import from_us, to_us

    try:
        return from_us(to_us(text))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


@app.command()
def history(
    events: int = typer.Option(200_000, "--events", min=0, help="Number of transactions."),
    users: int = typer.Option(2000, "--users", min=1, help="Number of users (some never pay)."),
    merchants: int = typer.Option(300, "--merchants", min=1, help="Number of merchants."),
    days: int = typer.Option(30, "--days", min=1, help="Days of history, ending at --end."),
    seed: int = typer.Option(42, "--seed", help="Random seed: same seed, same data."),
    end: str | None = typer.Option(None, "--end", help="End of the history (exclusive), ISO 8601 UTC; default 2026-11-01T00:00:00Z."),
    root: Path = typer.Option(Path("."), "--root", help="Project directory; files go to ROOT/data/history/."),
) -> None:
    """Write data/history/{transactions/part-*.parquet, users.parquet, merchants.parquet}."""
    from ..generator import write_history

    end_dt = _parse_time(end, "--end")
    t0 = time.perf_counter()
    info = write_history(root, users=users, merchants=merchants, events=events, days=days, end=end_dt, seed=seed)
    dt = time.perf_counter() - t0
    iso = "%Y-%m-%dT%H:%M:%SZ"
    hist = Path(root) / "data" / "history"
    print(f"wrote {info['transactions']:,} transactions in {len(info['transaction_files'])} file(s) under {hist / 'transactions'}")
    print(f"  event time {info['start'].strftime(iso)} .. {info['end'].strftime(iso)} ({days} days, end exclusive)")
    print(
        f"  users: {info['users']:,} ({info['user_rows']:,} profile rows, {info['users_without_transactions']:,} without transactions) -> {info['users_path']}"
    )
    print(f"  merchants: {info['merchants']:,} ({info['merchant_rows']:,} rows) -> {info['merchants_path']}")
    print(f"  seed {seed}, {dt:.2f} s")


@app.command()
def live(
    count: int = typer.Option(1000, "--count", min=0, help="Number of messages."),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="Messages per second (sending pace and event-time spacing); default: as fast as possible."
    ),
    bad_share: float = typer.Option(
        0.02, "--bad-share", min=0.0, max=1.0, help="Share of records that break the contract (every kind, round-robin)."
    ),
    seed: int | None = typer.Option(
        None, "--seed", min=0, help="Random seed: same seed, same records (and event times, with --start). Default: a fresh one, printed."
    ),
    users: int = typer.Option(2000, "--users", min=1, help="Number of users (same population as `history`)."),
    merchants: int = typer.Option(300, "--merchants", min=1, help="Number of merchants."),
    start: str | None = typer.Option(None, "--start", help="Event time of the first record, ISO 8601 UTC; default now."),
    topic: str = typer.Option("transactions", "--topic", help="Kafka topic."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka bootstrap servers; default 127.0.0.1:$FEATURELINE_KAFKA_PORT, else 127.0.0.1:9092."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the values as JSON lines to this file instead of producing to Kafka."),
    partitions: int | None = typer.Option(
        None, "--partitions", min=1, help="Create the topic with this many partitions if it does not exist."
    ),
) -> None:
    """Produce transaction events (JSON, key = user_id) to Kafka, or write them to a JSONL file."""
    from ..generator import DEFAULT_LIVE_RATE, live_events, produce_live
    from ..timeutil import SECOND, from_us

    start_dt = _parse_time(start, "--start")
    if seed is None:  # each run its own txn_ids: a second run is not dead-lettered as duplicates of the first
        import secrets

        seed = secrets.randbelow(1 << 31)
    if start_dt is None and not rate:
        # Sent as fast as possible: end the stream's event times at now, so none is in the future.
        start_dt = from_us(time.time_ns() // 1000 - int(count / DEFAULT_LIVE_RATE * SECOND))
    t0 = time.perf_counter()
    events = live_events(count, seed=seed, start=start_dt, rate_per_s=rate, bad_share=bad_share, users=users, merchants=merchants)
    n_bad = sum(1 for e in events if e.bad_kind)
    if out is not None:
        with open(out, "wb") as fh:
            for e in events:
                fh.write(e.value + b"\n")
        print(f"wrote {len(events):,} records ({n_bad:,} bad) to {out}; seed {seed} (--seed {seed} writes them again)")
        return
    server = bootstrap or _default_bootstrap()
    try:
        if partitions:
            _ensure_topic(server, topic, partitions)
        sent = produce_live(events, server, topic, rate_per_s=rate)
    except Exception as e:  # kafka errors: no broker, unknown topic, ...
        print(f"error: producing to {topic!r} at {server}: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"sent {sent:,} messages ({n_bad:,} bad) to {topic!r} at {server} in {time.perf_counter() - t0:.1f} s; seed {seed}")


@app.command()
def spine(
    out: Path = typer.Option(Path("data/spine.parquet"), "--out", help="Where to write the spine (parquet)."),
    rows: int = typer.Option(1000, "--rows", help="Spine rows."),
    users: int = typer.Option(2000, "--users", help="Users in the history."),
    merchants: int = typer.Option(300, "--merchants", help="Merchants in the history."),
    days: int = typer.Option(30, "--days", help="Days of history the times spread over."),
    end: str | None = typer.Option(None, "--end", help="End of the history (exclusive); default 2026-11-01T00:00:00Z."),
    seed: int = typer.Option(11, "--seed"),
) -> None:
    """A training spine for the example service (request_id, user_id, merchant_id, timestamp, is_fraud)."""
    from ..generator import write_spine

    n = write_spine(out, rows=rows, users=users, merchants=merchants, days=days, end=_parse_time(end, "--end"), seed=seed)
    print(f"wrote a spine of {n:,} rows to {out}")
