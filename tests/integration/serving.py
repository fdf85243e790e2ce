"""A served project for the HTTP tests: a small generated history backfilled into the real Redis
under a fresh key prefix, and `Server`, the app on uvicorn (with featureline's own uvicorn
settings: the guarded protocol, limits, keep-alive) in a thread on a free loopback port."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import rebuild_online
from featureline.compiler import compile_project
from featureline.generator import write_history
from featureline.online.store import OnlineStore
from featureline.serve import uvicorn_settings

REPO = Path(__file__).resolve().parents[2]

# a view whose feature names clash with user_transactions' (count_1h), on another entity; and
# one of list values (last_k of strings and of timestamps)
EXTRA_VIEW = """
feature_views:
  - name: merchant_counts
    entity: merchant
    source: transactions
    aggregations:
      - function: count
        windows: [1h, 24h]
  - name: user_recent
    entity: user
    source: transactions
    aggregations:
      - column: card_country
        functions: [last_k]
        k: 3
        windows: [1d]
      - column: event_time
        functions: [first_k]
        k: 2
        windows: [1d]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(d: Path, redis_port: int, *, serve_yaml: str = "", events: int = 6_000):
    """Write, generate and backfill a project in `d`: (plan, engine, store, T)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    text = (REPO / "featureline.yaml").read_text().replace("key_prefix: fl", f"key_prefix: {prefix}")
    text = text.replace("${FEATURELINE_REDIS_PORT:-6379}", str(redis_port))
    (d / "featureline.yaml").write_text(text + serve_yaml)
    shutil.copytree(REPO / "features", d / "features")
    shutil.copytree(REPO / "contracts", d / "contracts")
    (d / "features" / "extra.yaml").write_text(EXTRA_VIEW)
    T = time.time_ns() // 1000 - 1_000_000
    write_history(d, events=events, users=120, merchants=20, days=8, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan = compile_project(d)
    engine = BatchEngine(plan)
    store = OnlineStore(plan)
    rebuild_online(engine, store, T)  # what `featureline backfill --to online` does: the store is marked ready
    return plan, engine, store, T


def drop_prefix(store: OnlineStore) -> None:
    keys = list(store.client.scan_iter(f"{store.prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)


class Server:
    """uvicorn serving an app in a thread on a free loopback port, as `featureline serve` runs it."""

    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **uvicorn_settings(app.state.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.time() + 15
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
