"""The streaming job end to end, against the real Kafka and Redis started by scripts/services:
`featureline stream` runs as a user runs it (a subprocess, Beam's FnApiRunner), on topics with
several partitions, fed by the generator's live events including every kind of bad record.

The reference for online values is the batch engine (held to the oracle by the batch tests)
over the same valid events, plus the plain-Python oracle itself for the windowed features
of `user_transactions`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests import oracle
from tests.bad_kinds import EXPECTED_BAD
from tests.projects import add_views, make_project, same

from featureline.batch.engine import BatchEngine
from featureline.batch.online_backfill import backfill_online
from featureline.compiler import compile_project
from featureline.contracts import ContractValidator
from featureline.generator import BAD_KINDS, live_events, write_history
from featureline.online.store import OnlineStore
from featureline.timeutil import HOUR, MINUTE

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
USERS, MERCHANTS = 150, 25
STREAMED = ("user_transactions", "user_declines", "user_last_merchant", "merchant_transactions")


# -- helpers ---------------------------------------------------------------------------------
def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, events) -> list[tuple[int, int]]:
    """Send the events (key = user id, Kafka's default partitioner); their (partition, offset)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    futs = [p.send(topic, key=e.key, value=e.value) for e in events]
    p.flush()
    out = [(f.get(10).partition, f.get(10).offset) for f in futs]
    p.close()
    return out


def run_stream(d: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "featureline", "stream", "--until-caught-up", "-p", str(d), "--report-every", "1", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=d,
    )


def backfill_online_cli(d: Path, T: int) -> None:
    """`featureline backfill --to online --end T`, as a user runs it."""
    end = dt.datetime.fromtimestamp(T / 1e6, dt.UTC).isoformat()
    r = subprocess.run([sys.executable, "-m", "featureline", "backfill", "--to", "online", "--end", end, "-p", str(d)], capture_output=True, text=True, timeout=300, cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]


def counts(stdout: str) -> dict[str, int]:
    m = re.search(r"consumed ([\d,]+) = applied ([\d,]+) \+ dead-lettered ([\d,]+) \+ filtered ([\d,]+) \| late ([\d,]+)", stdout)
    assert m, stdout
    keys = ("consumed", "applied", "dead_lettered", "filtered", "late")
    return {k: int(v.replace(",", "")) for k, v in zip(keys, m.groups(), strict=True)}


def reference(d: Path, plan, events, *, now: int) -> BatchEngine:
    """The batch engine over the valid events (in produce order, which is each key's partition order)."""
    good = [e.value for e in events if e.bad_kind is None]
    table = ContractValidator(plan.contracts["transactions"]).validate_json(good, now=now).valid
    assert table.num_rows == len(good)
    folder = d / "data" / "history" / "transactions"
    for f in folder.glob("*.parquet"):
        f.unlink()
    pq.write_table(table, folder / "part-0.parquet")
    return BatchEngine(plan, cache=False)


def entity_rows(events, n: int = 80, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    users = sorted({int(e.key) for e in events if e.key and e.key.isdigit()})
    rows = [{"user_id": u, "merchant_id": rnd.randint(1, MERCHANTS)} for u in rnd.sample(users, min(n, len(users)))]
    return rows + [{"user_id": 10_000 + i, "merchant_id": MERCHANTS + 5} for i in range(3)]  # never seen


def mismatches(store: OnlineStore, engine: BatchEngine, rows: list[dict], at: int, service: str = "fraud_detection") -> dict:
    keys = engine.plan.services[service].join_keys
    rows = [{k: r[k] for k in keys} for r in rows]
    got = store.get(service, rows, at_us=at)
    spine = pa.table({**{k: [r[k] for r in rows] for k in keys}, "ts": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC"))})
    want = engine.historical(spine, service, at_column="ts").to_pydict()
    out = {}
    for name, col in got.items():
        bad = [(rows[i], a, b) for i, (a, b) in enumerate(zip(col, want[name], strict=True)) if not same(a, b)]
        if bad:
            out[name] = bad[:3]
    return out


def read_dlq(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list:
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        f"{topic}.dlq",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    out: list = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out += list(c)
        if len(out) >= expect:
            out += list(c)  # anything beyond what was expected would show up here
            break
    c.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        c.close()


def events_for(n: int, *, seed: int, minutes: float, end_us: int, bad_share: float = 0.05):
    start = dt.datetime.fromtimestamp((end_us - int(minutes * MINUTE)) / 1e6, dt.UTC)
    return live_events(n, seed=seed, start=start, rate_per_s=n / (minutes * 60), bad_share=bad_share, users=USERS, merchants=MERCHANTS)


def setup_world(tmp: Path, services, *, partitions: int, n: int, seed: int, views: str | None = None, bad_share: float = 0.05):
    """A project on its own topic (with `views` added: `add_views`), history, and n events produced."""
    topic = f"txn_{uuid.uuid4().hex[:10]}"
    d = make_project(tmp, services, topic=topic)
    if views:
        add_views(d / "features/user_features.yaml", views)
    now = time.time_ns() // 1000
    write_history(d, events=200, users=USERS, merchants=MERCHANTS, days=3, end=dt.datetime.fromtimestamp((now - 3 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(d)
    # profiles come from the batch side (no stream): backfill them so every feature of the service is compared
    backfill_online(BatchEngine(plan, cache=False), OnlineStore(plan), now, views=["user_profile", "merchant_profile"])
    create_topic(services.kafka_bootstrap, topic, partitions)
    events = events_for(n, seed=seed, minutes=50, end_us=now - 2_000_000, bad_share=bad_share)
    where = produce(services.kafka_bootstrap, topic, events)
    return d, plan, topic, events, where


def cleanup(plan) -> None:
    store = OnlineStore(plan)
    keys = list(store.client.scan_iter(f"{plan.project.redis_key_prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)


# -- tests -----------------------------------------------------------------------------------
def test_caught_up_stream_equals_batch_and_oracle_and_dead_letters_are_exact(tmp_path, services):
    d, plan, topic, events, where = setup_world(tmp_path, services, partitions=4, n=6000, seed=21)
    assert {e.bad_kind for e in events} >= set(BAD_KINDS)
    try:
        r = run_stream(d, "--max-poll-records", "700")
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        n_bad = sum(1 for e in events if e.bad_kind)
        assert c["consumed"] == len(events)
        assert c["consumed"] == c["applied"] + c["dead_lettered"] + c["filtered"]
        assert (c["dead_lettered"], c["filtered"], c["applied"]) == (n_bad, 0, len(events) - n_bad)
        # offsets committed up to the end of every partition
        ends = {p: 0 for p in range(4)}
        for p, o in where:
            ends[p] = max(ends[p], o + 1)
        assert committed(services.kafka_bootstrap, plan.project.kafka_consumer_group, topic, 4) == ends

        # dead letters: exactly the bad records, once each, with the right reasons and headers
        dlq = read_dlq(services.kafka_bootstrap, topic, n_bad)
        got = {}
        for m in dlq:
            h = {k: v.decode() for k, v in m.headers}
            src = (int(h["featureline.errors.partition"]), int(h["featureline.errors.offset"]))
            assert src not in got, f"dead-lettered twice: {src}"
            got[src] = (m.value, h)
        bad_at = {where[i]: e for i, e in enumerate(events) if e.bad_kind}
        assert set(got) == set(bad_at)
        for src, (value, h) in got.items():
            e = bad_at[src]
            assert value == e.value
            assert h["featureline.errors.topic"] == topic
            assert h["featureline.errors.contract"] == "transactions" and h["featureline.errors.contract.version"]
            reasons = {(r["field"], r["rule"]) for r in json.loads(h["featureline.errors.reasons"])}
            assert reasons & EXPECTED_BAD[e.bad_kind], (e.bad_kind, reasons)
            assert (h["featureline.errors.field"] or None, h["featureline.errors.rule"]) in EXPECTED_BAD[e.bad_kind]
            assert h["featureline.errors.message"]

        # online values: the batch engine over the valid events, as of now and later (windows expire)
        store = OnlineStore(plan)
        now = time.time_ns() // 1000
        engine = reference(d, plan, events, now=now)
        rows = entity_rows(events)
        for later in (0, 5 * MINUTE, HOUR):
            assert mismatches(store, engine, rows, now + later) == {}, later
        # and the oracle itself for user_transactions' windows
        valid = [json.loads(e.value) for e in events if e.bad_kind is None]
        by_user: dict[int, list[dict]] = {}
        for i, v in enumerate(valid):
            t = int(dt.datetime.fromisoformat(v["event_time"].replace("Z", "+00:00")).timestamp() * 1e6)
            by_user.setdefault(v["user_id"], []).append({**v, "event_time": t, "arrival": i})
        got_online = store.get("fraud_detection", rows, at_us=now)
        for f in plan.views["user_transactions"].features:
            for i, row in enumerate(rows):
                want = oracle.window_value(by_user.get(row["user_id"], []), now, f.function, f.column, f.window_us, f.hop_us, f.param)
                assert same(got_online[f.name][i], want), (f.name, row, got_online[f.name][i], want)
    finally:
        cleanup(plan)


NEW_AGGREGATIONS = """
  - name: user_newer
    entity: user
    source: transactions
    aggregations:
      - column: merchant_id
        functions: [count_distinct, approx_count_distinct, count, last]
        windows: [10m, 1h]
      - column: card_country
        function: count_distinct
        windows: [1h]
      - column: channel
        function: count_distinct
        windows: [1h]
        hop: 1m
      - column: amount
        functions: [last_k, first_k, approx_percentile]
        k: 3
        percentiles: [0.5, 0.9]
        windows: [10m, 1h]
      - column: card_country
        functions: [last_k, top_k]
        k: 2
        windows: [1h]
feature_services:
  - name: newer
    features: ["user_newer:*"]
"""


def test_new_aggregations_stream_equals_batch_and_oracle(tmp_path, services):
    """count_distinct (and the other registry aggregations added since) through the real stream:
    Kafka -> contract check -> micro-batch partials in DuckDB -> Lua merges into Redis, over
    3 partitions whose records of one user land in one partition and merchants' in any: the
    online values equal the batch engine's and the oracle's."""
    d, plan, topic, events, where = setup_world(tmp_path, services, partitions=3, n=3000, seed=5, views=NEW_AGGREGATIONS)
    try:
        r = run_stream(d, "--max-poll-records", "400")
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        n_bad = sum(1 for e in events if e.bad_kind)
        assert (c["consumed"], c["dead_lettered"], c["late"]) == (len(events), n_bad, 0), c
        store = OnlineStore(plan)
        valid = [json.loads(e.value) for e in events if e.bad_kind is None]
        by_user: dict[int, list[dict]] = {}
        for i, v in enumerate(valid):
            t = int(dt.datetime.fromisoformat(v["event_time"].replace("Z", "+00:00")).timestamp() * 1e6)
            by_user.setdefault(v["user_id"], []).append({**v, "event_time": t, "arrival": i})
        # read after the newest event: an open tile holds events ahead of the reader's clock,
        # which a point-in-time read leaves out (docs/online.md, exactness)
        now = max(time.time_ns() // 1000, 1 + max(e["event_time"] for es in by_user.values() for e in es))
        engine = reference(d, plan, events, now=now)
        rows = entity_rows(events)
        for later in (0, 5 * MINUTE, HOUR):
            assert mismatches(store, engine, rows, now + later, "newer") == {}, later
        got = store.get("newer", [{"user_id": r["user_id"]} for r in rows], at_us=now)
        for f in plan.views["user_newer"].features:
            for i, row in enumerate(rows):
                want = oracle.window_value(by_user.get(row["user_id"], []), now, f.function, f.column, f.window_us, f.hop_us, f.param)
                ok = oracle.approx_close(f.function, got[f.name][i], want) if f.function.startswith("approx_") else same(got[f.name][i], want)
                assert ok, (f.name, row, got[f.name][i], want)
        assert max(got["merchant_id_count_distinct_1h"]) > 1 and max(len(v or ()) for v in got["amount_last_k_1h"]) == 3
    finally:
        cleanup(plan)


CRASHES = [
    {"FEATURELINE_STREAM_CRASH": "mid_merge:4"},  # between two slots' Redis merges of a batch
    {"FEATURELINE_STREAM_CRASH": "before_commit:3"},  # Redis has the batch, Kafka has not its offsets
    {"FEATURELINE_STREAM_CRASH": "mid_merge:9"},
    None,  # killed with SIGKILL from outside at a random moment
    {"FEATURELINE_STREAM_CRASH": "before_commit:7"},
]


def test_kill_9_at_any_point_loses_nothing_and_counts_nothing_twice(tmp_path, services):
    d, plan, topic, events, where = setup_world(tmp_path, services, partitions=3, n=5000, seed=33)
    rnd = random.Random(5)
    try:
        killed = 0
        for crash in CRASHES:
            if crash is None:
                p = subprocess.Popen(
                    [sys.executable, "-m", "featureline", "stream", "--until-caught-up", "-p", str(d), "--max-poll-records", "300"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=d,
                )
                time.sleep(rnd.uniform(4.0, 7.0))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    killed += 1
                p.wait(60)
                continue
            r = run_stream(d, "--max-poll-records", "300", env=crash)
            if r.returncode == -signal.SIGKILL:
                killed += 1
            else:
                assert r.returncode == 0, r.stderr[-3000:]
        assert killed >= 3, "the fault injection did not kill the stream"
        r = run_stream(d, "--max-poll-records", "300")
        assert r.returncode == 0, r.stderr[-3000:]
        # nothing lost, nothing counted twice
        store = OnlineStore(plan)
        now = time.time_ns() // 1000
        engine = reference(d, plan, events, now=now)
        assert mismatches(store, engine, entity_rows(events, n=150), now) == {}
        # the dead-letter topic still holds each bad record once (aborted transactions are not read)
        n_bad = sum(1 for e in events if e.bad_kind)
        dlq = read_dlq(services.kafka_bootstrap, topic, n_bad)
        srcs = [(int(dict(m.headers)["featureline.errors.partition"]), int(dict(m.headers)["featureline.errors.offset"])) for m in dlq]
        assert sorted(srcs) == sorted(where[i] for i, e in enumerate(events) if e.bad_kind)
    finally:
        cleanup(plan)


def test_backfill_then_stream_counts_each_event_once(tmp_path, services):
    topic = f"txn_{uuid.uuid4().hex[:10]}"
    d = make_project(tmp_path, services, topic=topic)
    now = time.time_ns() // 1000
    write_history(d, events=200, users=USERS, merchants=MERCHANTS, days=3, end=dt.datetime.fromtimestamp((now - 3 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(d)
    events = events_for(4000, seed=44, minutes=50, end_us=now - 2_000_000)
    T = now - 20 * MINUTE - 7_000_123  # not on a tile boundary
    try:
        # the batch side has the events before T; the topic has all of them
        engine = reference(d, plan, [e for e in events if e.event_time_us < T], now=now)
        backfill_online_cli(d, T)
        create_topic(services.kafka_bootstrap, topic, 2)
        produce(services.kafka_bootstrap, topic, events)
        r = run_stream(d, "--max-poll-records", "500")
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        n_before = sum(1 for e in events if e.bad_kind is None and e.event_time_us < T)
        assert c["filtered"] == n_before and c["consumed"] == c["applied"] + c["dead_lettered"] + c["filtered"]
        assert "backfill boundary" in r.stdout
        store = OnlineStore(plan)
        engine = reference(d, plan, events, now=now)
        t = time.time_ns() // 1000
        assert mismatches(store, engine, entity_rows(events), t) == {}
    finally:
        cleanup(plan)


def test_live_stream_applies_new_events_and_stops_on_sigterm(tmp_path, services):
    """`featureline stream` without --until-caught-up: events produced while it runs become
    readable within seconds; SIGTERM stops it with its counts; a restart loses nothing."""
    d, plan, topic, events, where = setup_world(tmp_path, services, partitions=2, n=1500, seed=55)
    store = OnlineStore(plan)
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "featureline", "stream", "-p", str(d), "--report-every", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=d,
        )
        # a user with no history: its count shows when the live events arrive
        now = time.time_ns() // 1000
        late = live_events(200, seed=56, start=dt.datetime.fromtimestamp((now - 60_000_000) / 1e6, dt.UTC), rate_per_s=200 / 55, bad_share=0.0, users=USERS, merchants=MERCHANTS)
        probe = [e for e in late if e.key == late[0].key]
        deadline = time.monotonic() + 90
        time.sleep(3)
        produce(services.kafka_bootstrap, topic, late)
        uid = int(late[0].key)
        want_total = sum(1 for e in events + late if e.bad_kind is None and e.key == late[0].key and e.event_time_us >= time.time_ns() // 1000 - HOUR)
        seen = None
        while time.monotonic() < deadline:
            seen = store.get("fraud_detection", [{"user_id": uid, "merchant_id": 1}])["count_1h"][0]
            if seen >= want_total:
                break
            time.sleep(0.2)
        assert seen is not None and seen >= want_total >= len(probe), (seen, want_total)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 143 and "stopped by SIGTERM" in err, err[-2000:]
        # a restart catches up; the values equal the batch engine over everything produced
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        at = time.time_ns() // 1000
        engine = reference(d, plan, events + late, now=at)
        assert mismatches(store, engine, entity_rows(events + late), at) == {}
    finally:
        cleanup(plan)


def test_backfill_again_after_streaming_replaces_and_the_stream_rereads(tmp_path, services):
    """The quickstart run twice: backfill at T1, stream, then backfill at a later T2 (which clears
    what the stream applied and starts a new epoch) and stream again: the topic is re-read, events
    from T2 on applied once, the earlier ones not twice, no bad record dead-lettered twice."""
    topic = f"txn_{uuid.uuid4().hex[:10]}"
    d = make_project(tmp_path, services, topic=topic)
    now = time.time_ns() // 1000
    write_history(d, events=200, users=USERS, merchants=MERCHANTS, days=3, end=dt.datetime.fromtimestamp((now - 3 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(d)
    events = events_for(3000, seed=66, minutes=50, end_us=now - 2_000_000)
    T1, T2 = now - 40 * MINUTE, now - 15 * MINUTE - 1_234_567

    def backfill(T):
        reference(d, plan, [e for e in events if e.event_time_us < T], now=now)
        backfill_online_cli(d, T)

    try:
        create_topic(services.kafka_bootstrap, topic, 2)
        produce(services.kafka_bootstrap, topic, events)
        backfill(T1)
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        n_bad = sum(1 for e in events if e.bad_kind)
        backfill(T2)
        r = run_stream(d)
        assert r.returncode == 0, r.stderr[-3000:]
        c = counts(r.stdout)
        assert c["consumed"] == len(events)  # re-read from the beginning
        assert c["filtered"] == sum(1 for e in events if e.bad_kind is None and e.event_time_us < T2)
        store = OnlineStore(plan)
        t = time.time_ns() // 1000
        engine = reference(d, plan, events, now=t)
        assert mismatches(store, engine, entity_rows(events), t) == {}
        assert len(read_dlq(services.kafka_bootstrap, topic, n_bad)) == n_bad  # not sent again
    finally:
        cleanup(plan)


def test_live_stream_reads_partitions_added_while_it_runs(tmp_path, services):
    """Partitions added to the topic while a live job runs are found (--discover-every) and read:
    the job restarts itself, loses nothing, and the values equal the batch engine's."""
    from kafka.admin import KafkaAdminClient, NewPartitions

    d, plan, topic, events, where = setup_world(tmp_path, services, partitions=1, n=400, seed=57)
    group = plan.project.kafka_consumer_group
    store = OnlineStore(plan)

    def wait_committed(ends: dict[int, int], timeout_s: float = 90) -> dict:
        deadline = time.monotonic() + timeout_s
        got = {}
        while time.monotonic() < deadline:
            got = committed(services.kafka_bootstrap, group, topic, len(ends))
            if all(got.get(p) == o for p, o in ends.items()):
                break
            time.sleep(0.5)
        return got

    p = subprocess.Popen(
        [sys.executable, "-m", "featureline", "stream", "-p", str(d), "--report-every", "1", "--discover-every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=d,
    )
    try:
        first = {0: max(o for _, o in where) + 1}
        assert wait_committed(first) == first
        admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        try:
            admin.create_partitions({topic: NewPartitions(total_count=3)})
        finally:
            admin.close()
        time.sleep(1)
        now = time.time_ns() // 1000
        late = live_events(300, seed=58, start=dt.datetime.fromtimestamp((now - 60_000_000) / 1e6, dt.UTC), rate_per_s=300 / 55, bad_share=0.0, users=USERS, merchants=MERCHANTS)
        where2 = produce(services.kafka_bootstrap, topic, late)
        assert {q for q, _ in where2} == {0, 1, 2}, "the producer spreads keys over the new partitions"
        ends = {q: max(o for pp, o in where + where2 if pp == q) + 1 for q in range(3)}
        assert wait_committed(ends) == ends
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 143, err[-3000:]
    assert f"new partitions {topic}:1, {topic}:2: restarting" in err, err[-3000:]
    at = time.time_ns() // 1000
    engine = reference(d, plan, events + late, now=at)
    assert mismatches(store, engine, entity_rows(events + late), at) == {}
    cleanup(plan)
