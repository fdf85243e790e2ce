"""The soak: the live stream under a steady load for 10+ minutes while it is killed (SIGKILL) at
random moments, Redis is killed and restarted from its AOF, the broker is killed and restarted,
and hostile records are mixed in. Then every online value must equal the batch engine over the
same events, and the dead-letter topic must hold each bad record once.

    .venv/bin/python bench/soak.py                 # 11 minutes, 20 kills, 2 + 2 restarts (make soak)
    .venv/bin/python bench/soak.py --minutes 3 --kills 5 --redis-restarts 1 --broker-restarts 1

Redis and Kafka are private processes of this run (tests/integration/faults.py: AOF everysec,
one broker, free loopback ports); the stream is `featureline stream` as a user runs it. The
reference is built from what the topic holds at the end (read back, read_committed), checked by
the same contract: so the check is about faults, not about contract semantics (the fuzz is).
Exit code 0 when nothing was lost, nothing counted twice and every dead letter is there once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.faults import PrivateKafka, PrivateRedis  # noqa: E402
from tests.integration.test_stream_faults import project  # noqa: E402 - the fault tests' project copy

USERS, MERCHANTS = 400, 40


def hostile(i: int) -> tuple[bytes | None, bytes, str]:
    """(key, value, kind) of a record built to break a reader: each must be dead-lettered, none may stop the stream."""
    kinds = [
        ("deep_nesting", b'{"txn_id": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
        ("huge_record", b'{"amount": "' + b"9" * (1536 * 1024) + b'"}'),
        ("huge_classified_field", b'{"txn_id": "x", "customer_email": "' + b"a" * (600 * 1024) + b'@x.io"}'),
        ("invalid_utf8", b'{"txn_id": "\xff\xfe\xfa", "user_id": 1}'),
        ("nan", b'{"txn_id": "x", "user_id": 1, "amount": NaN}'),
        ("huge_int", b'{"user_id": ' + b"9" * 400 + b"}"),
        ("lone_surrogate", b'{"txn_id": "\\ud800", "user_id": 1}'),
        ("random_bytes", random.Random(i).randbytes(300)),
        ("empty", b""),
        ("long_regex_bait", b'{"card_country": "' + b"A" * 200_000 + b'", "user_id": 1}'),
    ]
    kind, value = kinds[i % len(kinds)]
    return b"1", value, kind


class Stream:
    """`featureline stream` (live), restarted whenever it is killed; its output to a log file."""

    def __init__(self, d: Path, log: Path):
        self.d, self.log = d, log
        self.p: subprocess.Popen | None = None
        self.starts = 0
        self.died = []  # exits nobody asked for: (code, last lines)

    def start(self) -> None:
        fh = open(self.log, "a")  # noqa: SIM115 - the child writes to it
        fh.write(f"\n===== start {self.starts} at {time.strftime('%H:%M:%S')} =====\n")
        fh.flush()
        self.p = subprocess.Popen([sys.executable, "-m", "featureline", "stream", "-p", str(self.d), "--report-every", "5"], stdout=fh, stderr=fh, cwd=self.d)
        self.starts += 1

    def kill9(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def check_alive(self) -> None:
        if self.p is not None and self.p.poll() is not None:
            tail = self.log.read_text()[-1500:]
            self.died.append((self.p.returncode, tail))
            self.start()

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(60)


def producer_loop(bootstrap: str, topic: str, rate: float, stop: threading.Event, hostile_every: int, counts: Counter) -> None:
    from kafka import KafkaProducer

    from featureline.generator import live_events

    p = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_request_size=4 << 20,
        retries=1_000_000, delivery_timeout_ms=600_000, max_block_ms=600_000,
    )  # fmt: skip
    seed, n_hostile = 1000, 0
    t0 = time.monotonic()
    sent = 0
    while not stop.is_set():
        seed += 1
        batch = live_events(int(rate), seed=seed, rate_per_s=rate, bad_share=0.02, users=USERS, merchants=MERCHANTS)
        for e in batch:
            p.send(topic, key=e.key, value=e.value)
            counts["bad" if e.bad_kind else "valid"] += 1
            sent += 1
            if sent % hostile_every == 0:
                k, v, kind = hostile(n_hostile)
                n_hostile += 1
                p.send(topic, key=k, value=v)
                counts["hostile"] += 1
                counts[f"hostile:{kind}"] += 1
        delay = t0 + sent / rate - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    p.flush()
    p.close()


def read_topic(bootstrap: str, topic: str) -> list:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed", max_partition_fetch_bytes=8 << 20)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    ends = c.end_offsets(tps)
    out = []
    while any(c.position(tp) < ends[tp] for tp in tps):
        for recs in c.poll(timeout_ms=1000).values():
            out.extend(recs)
    c.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


def ends_and_committed(bootstrap: str, group: str, topic: str) -> tuple[dict, dict]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
        ends = c.end_offsets(tps)
        return {tp.partition: ends[tp] for tp in tps}, {tp.partition: c.committed(tp) for tp in tps}
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=11.0)
    ap.add_argument("--rate", type=float, default=200.0, help="events per second produced")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of the stream")
    ap.add_argument("--redis-restarts", type=int, default=2)
    ap.add_argument("--broker-restarts", type=int, default=2)
    ap.add_argument("--hostile-every", type=int, default=400, help="a hostile record after every N events")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = ap.parse_args()

    from kafka.admin import KafkaAdminClient, NewTopic

    from featureline.batch.engine import BatchEngine
    from featureline.batch.online_backfill import backfill_online
    from featureline.compiler import compile_project
    from featureline.contracts import ContractValidator
    from featureline.generator import write_history
    from featureline.online.store import OnlineStore
    from featureline.timeutil import HOUR

    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="featureline-soak-"))
    print(f"[soak] work dir {work}", flush=True)
    redis = PrivateRedis(work / "redis").start()
    kafka = PrivateKafka(work / "kafka").start()
    topic = f"soak_{uuid.uuid4().hex[:8]}"
    d = work / "project"
    d.mkdir()
    project(d, redis_url=redis.url, bootstrap=kafka.bootstrap, topic=topic)
    now = time.time_ns() // 1000
    write_history(d, events=300, users=USERS, merchants=MERCHANTS, days=3, end=dt.datetime.fromtimestamp((now - 3 * HOUR) / 1e6, dt.UTC))
    plan = compile_project(d)
    backfill_online(BatchEngine(plan, cache=False), OnlineStore(plan), now, views=["user_profile", "merchant_profile"])
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    admin.create_topics([NewTopic(topic, args.partitions, 1, topic_configs={"max.message.bytes": str(4 << 20)})])
    admin.close()

    stream = Stream(d, work / "stream.log")
    stream.start()
    counts: Counter = Counter()
    stop = threading.Event()
    prod = threading.Thread(target=producer_loop, args=(kafka.bootstrap, topic, args.rate, stop, args.hostile_every, counts), daemon=True)
    prod.start()

    duration = args.minutes * 60
    faults = ["stream"] * args.kills + ["redis"] * args.redis_restarts + ["broker"] * args.broker_restarts
    times = sorted(rnd.uniform(20, duration - 30) for _ in faults)
    rnd.shuffle(faults)
    plan_ = list(zip(times, faults, strict=True))
    survived: Counter = Counter()
    injected: Counter = Counter()
    t0 = time.monotonic()
    for at, kind in plan_:
        while time.monotonic() - t0 < at:
            stream.check_alive()
            time.sleep(0.5)
        injected[kind] += 1
        print(f"[soak] {time.monotonic() - t0:6.1f}s  {kind} fault #{injected[kind]}", flush=True)
        if kind == "stream":
            stream.kill9()
            time.sleep(rnd.uniform(0.2, 2.0))
            stream.start()
        elif kind == "redis":
            redis.kill9()
            time.sleep(rnd.uniform(1.0, 4.0))
            redis.start()  # from its AOF
        else:
            kafka.kill9()
            time.sleep(rnd.uniform(3.0, 10.0))
            kafka.start()
    while time.monotonic() - t0 < duration:
        stream.check_alive()
        time.sleep(0.5)
    stop.set()
    prod.join(600)
    print(f"[soak] load stopped after {time.monotonic() - t0:.0f}s; waiting for the stream to catch up", flush=True)
    group = plan.project.kafka_consumer_group
    deadline = time.monotonic() + 600
    while True:
        stream.check_alive()
        ends, got = ends_and_committed(kafka.bootstrap, group, topic)
        if all(got.get(p) is not None and got[p] >= ends[p] for p in ends):
            break
        if time.monotonic() > deadline:
            print(f"[soak] FAIL: offsets not committed to the end: {got} of {ends}", flush=True)
            break
        time.sleep(2)
    stream.stop()
    for kind in injected:
        survived[kind] = injected[kind]  # the stream went on after each (checked below: nothing lost)
    survived["stream"] -= len(stream.died)

    # the reference: what the topic holds, checked by the same contract
    records = read_topic(kafka.bootstrap, topic)
    check_now = time.time_ns() // 1000
    contract = plan.contracts["transactions"]
    res = ContractValidator(contract).validate_json([r.value or b"" for r in records], now=check_now)
    bad_src = {(records[row.index].partition, records[row.index].offset) for row in res.invalid}
    folder = d / "data" / "history" / "transactions"
    for f in folder.glob("*.parquet"):
        f.unlink()
    import pyarrow.parquet as pq

    pq.write_table(res.valid, folder / "part-0.parquet")
    engine = BatchEngine(compile_project(d), cache=False)

    # dead letters
    from tests.integration.test_stream import read_dlq

    dl = Counter()
    for m in read_dlq(kafka.bootstrap, topic, len(bad_src), timeout_s=120):
        h = {k: v.decode() for k, v in m.headers}
        dl[(int(h["featureline.errors.partition"]), int(h["featureline.errors.offset"]))] += 1
    twice = sum(1 for n in dl.values() if n > 1)
    missing = len(bad_src - set(dl))
    extra = len(set(dl) - bad_src)

    # online values against the batch engine: every user seen, a merchant each
    import pyarrow as pa

    store = OnlineStore(plan)
    users = sorted({json.loads(r.value)["user_id"] for r in records if _valid_json_user(r.value)})
    rows = [{"user_id": u, "merchant_id": 1 + u % MERCHANTS} for u in users]
    count_feats = [f.name for ref in plan.services["fraud_detection"].features for f in [plan.feature(ref)] if f.function == "count"]
    mismatched_values = lost = double = 0
    first_bad = None
    for lo in range(0, len(rows), 500):
        part = rows[lo : lo + 500]
        got_ = store.get("fraud_detection", part, at_us=check_now)
        spine = pa.table({"user_id": [r["user_id"] for r in part], "merchant_id": [r["merchant_id"] for r in part], "ts": pa.array([check_now] * len(part), pa.timestamp("us", tz="UTC"))})
        want = engine.historical(spine, "fraud_detection", at_column="ts").to_pydict()
        from tests.projects import same

        for name, col in got_.items():
            for i, (a, b) in enumerate(zip(col, want[name], strict=True)):
                if not same(a, b):
                    mismatched_values += 1
                    first_bad = first_bad or (name, part[i], a, b)
                    if name in count_feats and a is not None and b is not None:
                        lost += max(0, b - a)
                        double += max(0, a - b)

    applied_in_redis = res.n_valid
    print()
    print("soak result" + (f" ({args.minutes:g} min, {args.rate:g} events/s, {args.partitions} partitions)"))
    table = [
        ("events produced (valid / bad / hostile)", f"{counts['valid'] + counts['bad'] + counts['hostile']:,} ({counts['valid']:,} / {counts['bad']:,} / {counts['hostile']:,})"),
        ("records in the topic", f"{len(records):,}"),
        ("valid by the contract (applied)", f"{applied_in_redis:,}"),
        ("dead-lettered (distinct sources)", f"{len(dl):,} of {len(bad_src):,} expected"),
        ("dead-lettered twice / missing / unexpected", f"{twice} / {missing} / {extra}"),
        *((f"faults: {k} (injected / survived)", f"{injected[k]} / {survived[k]}") for k in ("stream", "redis", "broker")),
        ("stream exits nobody asked for", f"{len(stream.died)}"),
        ("stream starts", f"{stream.starts}"),
        ("online values compared / mismatched", f"{len(rows) * len(plan.services['fraud_detection'].features):,} / {mismatched_values}"),
        ("lost (count features, events)", f"{lost}"),
        ("double counted (count features, events)", f"{double}"),
    ]
    for k, v in table:
        print(f"  {k:<44} {v}")
    hostile_kinds = {k.split(':', 1)[1]: v for k, v in counts.items() if k.startswith("hostile:")}
    print(f"  hostile kinds: {', '.join(f'{k} {v}' for k, v in sorted(hostile_kinds.items()))}")
    ok = not (twice or missing or extra or mismatched_values or lost or double or stream.died)
    if first_bad:
        print(f"  first mismatch: {first_bad}")
    for code, tail in stream.died[:3]:
        print(f"  stream died with {code}: ...{tail[-800:]}")
    print("PASS" if ok else "FAIL")
    redis.close()
    kafka.close()
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"[soak] kept {work} (stream.log there)")
    return 0 if ok else 1


def _valid_json_user(raw: bytes | None) -> bool:
    try:
        v = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return False
    return isinstance(v, dict) and isinstance(v.get("user_id"), int) and not isinstance(v.get("user_id"), bool) and 0 < v["user_id"] < 10**9


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
