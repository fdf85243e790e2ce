"""Streaming engine benchmark: Kafka -> validate -> aggregate -> Redis, against a bare consumer.

    .venv/bin/python bench/stream_bench.py                 # 1 and 4 partitions, 200k events, freshness at 5k/s
    .venv/bin/python bench/stream_bench.py --events 50000 --freshness-seconds 20

Needs Redis and Kafka (`scripts/services up`). For each partition count, in one run:
- baseline: a bare kafka-python consumer (manual assignment, same fetch settings) reading
  every record of the topic, nothing else;
- ours: `featureline stream --until-caught-up` in-process on FnApiRunner (decode + contract
  check + uniqueness claims + 6 tile slots and a latest view merged into Redis + dead
  letters and offsets in Kafka transactions), timed from launch to caught up and also
  between the first and last micro-batch (the steady rate, without Beam's start-up).
Then freshness: the stream runs live (a subprocess) while a producer process sends generator
events at a steady rate; after 5 s of load (warm-up), a probe sends one valid event for a
reserved user every 250 ms and polls the online store until that user's count_1h shows it:
produce -> visible in an online read.
The stream's own freshness (Kafka timestamp -> Redis ack) is printed too (FL_BENCH_LINES=1:
all its progress lines).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALL_VIEWS = "--all-views" in sys.argv
sys.path.insert(0, str(REPO / "src"))


def project(tmp: Path, topic: str) -> Path:
    tag = uuid.uuid4().hex[:8]
    text = (REPO / "featureline.yaml").read_text().replace("key_prefix: fl", f"key_prefix: b{tag}")
    text = text.replace("consumer_group: featureline-payments", f"consumer_group: bench-{tag}")
    (tmp / "featureline.yaml").write_text(text)
    shutil.copytree(REPO / "features", tmp / "features")
    if not ALL_VIEWS:  # the bench's views stay those of its earlier runs (--all-views: the example's every view)
        (tmp / "features" / "user_variety.yaml").unlink(missing_ok=True)
    shutil.copytree(REPO / "contracts", tmp / "contracts")
    ent = tmp / "features" / "entities.yaml"
    ent.write_text(ent.read_text().replace("    stream:\n      format: json", f"    stream:\n      topic: {topic}\n      format: json"))
    return tmp


def bootstrap() -> str:
    return f"127.0.0.1:{os.environ.get('FEATURELINE_KAFKA_PORT', '9092')}"


def create_topic(topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    a = KafkaAdminClient(bootstrap_servers=bootstrap())
    a.create_topics([NewTopic(topic, partitions, 1)])
    a.close()


def produce_all(topic: str, values: list[tuple[bytes | None, bytes]]) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap(), linger_ms=20, batch_size=256 * 1024, acks=1)
    t0 = time.perf_counter()
    for k, v in values:
        p.send(topic, key=k, value=v)
    p.flush()
    p.close()
    return time.perf_counter() - t0


def bare_consumer(topic: str, partitions: int, n: int) -> float:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for recs in c.poll(timeout_ms=500, max_records=10_000).values():
            got += len(recs)
    secs = time.perf_counter() - t0
    c.close()
    return secs


def events(n: int, *, end_us: int, users: int = 2_000, merchants: int = 300, bad_share: float = 0.02):
    from featureline.generator import live_events

    minutes = 50
    start = dt.datetime.fromtimestamp((end_us - minutes * 60_000_000) / 1e6, dt.UTC)
    return live_events(n, seed=3, start=start, rate_per_s=n / (minutes * 60), bad_share=bad_share, users=users, merchants=merchants)


def throughput(partitions: int, n: int, evs, max_poll: int, readers: int | None = None) -> dict:
    from featureline.compiler import compile_project
    from featureline.stream.pipeline import StreamOptions, auto_readers_per_partition, run

    topic = f"bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="flstream"))
    d = project(tmp, topic)
    create_topic(topic, partitions)
    produce_s = produce_all(topic, [(e.key, e.value) for e in evs])
    base_s = bare_consumer(topic, partitions, n)
    plan = compile_project(d)
    t0 = time.perf_counter()
    readers = readers or auto_readers_per_partition(partitions)
    m, _ = run(plan, StreamOptions(until_caught_up=True, max_poll_records=max_poll, quiet=True, run_id=topic, readers_per_partition=readers))
    ours_s = time.perf_counter() - t0
    assert m.totals["consumed"] == n, m.line()
    assert m.balanced(), m.line()
    _cleanup(plan)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "partitions": partitions,
        "readers_per_partition": readers,
        "events": n,
        "produce_s": produce_s,
        "bare_s": base_s,
        "ours_s": ours_s,
        "ours_steady_rate": m.steady_rate(),
        "batches": m.batches,
        "dead": m.totals["dead_lettered"],
        "applied": m.totals["applied"],
    }


def _cleanup(plan) -> None:
    from featureline.online.store import OnlineStore

    store = OnlineStore(plan)
    keys = list(store.client.scan_iter(f"{plan.project.redis_key_prefix}:*", count=5000))
    for i in range(0, len(keys), 5000):
        store.client.delete(*keys[i : i + 5000])


def freshness(rate: int, seconds: float, partitions: int, load_nice: int = 0, warmup_s: float = 5.0) -> dict:
    from kafka import KafkaProducer

    from featureline.compiler import compile_project
    from featureline.online.store import OnlineStore

    topic = f"fresh_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="flfresh"))
    d = project(tmp, topic)
    create_topic(topic, partitions)
    plan = compile_project(d)
    store = OnlineStore(plan)
    proc = subprocess.Popen(
        [sys.executable, "-m", "featureline", "stream", "-p", str(d), "--report-every", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=d,
    )
    stream_lines: list[str] = []
    threading.Thread(target=lambda: stream_lines.extend(proc.stderr), daemon=True).start()
    time.sleep(6)  # Beam start-up
    # the load: generator events at `rate`/s from a process of its own (kafka-python's producer,
    # ~60-100 us a record: ~0.4 of this machine's 2 cores at 5k/s, taken from the stream it
    # measures; `load_nice` > 0 lowers its priority); the rate it reached is reported and judged
    load = subprocess.Popen(
        [sys.executable, __file__, "--load-producer", topic, str(rate), str(warmup_s + seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.nice(load_nice)) if load_nice else None,  # noqa: PLW1509 - no threads started yet in the child
    )
    assert load.stdout.readline().strip() == "ready", "the load producer did not start"
    template = json.loads(load.stdout.readline())
    load.stdin.write("go\n")
    load.stdin.flush()
    # the probe: one valid event for a reserved user, then poll until the online count shows it
    probe_user = 999_999
    pp = KafkaProducer(bootstrap_servers=bootstrap(), linger_ms=0, acks=1)
    lat: list[float] = []
    misses = 0
    # steady state: the probes start after `warmup_s` of load (the job's first batches compile
    # its queries and scripts and catch up on what arrived meanwhile)
    time.sleep(warmup_s)
    t_end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < t_end:
        k += 1
        ev = dict(template, user_id=probe_user, txn_id=str(uuid.uuid4()), event_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        t0 = time.perf_counter()
        pp.send(topic, key=str(probe_user).encode(), value=json.dumps(ev).encode())
        pp.flush()
        seen = False
        while time.perf_counter() - t0 < 10:
            got = store.get("user_activity", [{"user_id": probe_user}])
            if got["count_1h"][0] >= k:
                seen = True
                break
            time.sleep(0.005)
        if seen:
            lat.append(time.perf_counter() - t0)
        else:
            misses += 1
        time.sleep(max(0.0, 0.25 - (time.perf_counter() - t0)))
    out = load.communicate(timeout=60)[0].split()
    sent, load_s = int(out[0]), float(out[1])
    pp.close()
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    own = [ln for ln in stream_lines if "freshness p50" in ln]
    if os.environ.get("FL_BENCH_LINES"):
        print("".join(own), file=sys.stderr)
    _cleanup(plan)
    shutil.rmtree(tmp, ignore_errors=True)
    lat.sort()
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: float("nan"))
    return {"rate": rate, "sent": sent, "load_rate": sent / load_s, "load_nice": load_nice, "warmup_s": warmup_s, "probes": len(lat), "misses": misses, "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": (lat[-1] * 1000 if lat else float("nan")), "stream_says": own[-1].strip() if own else "-"}


def load_producer(topic: str, rate: float, seconds: float) -> None:
    """`--load-producer`: generator events (20,000 users, none bad) at `rate`/s for `seconds`,
    event times from now; prints "ready" and one event (the probe's template), waits for "go",
    sends paced, prints how many it sent and in how many seconds."""
    from kafka import KafkaProducer

    from featureline.generator import live_events

    n = int(rate * seconds)
    events = live_events(n, seed=9, start=dt.datetime.now(dt.UTC), rate_per_s=rate, bad_share=0.0, users=20_000, merchants=300)
    p = KafkaProducer(bootstrap_servers=bootstrap(), linger_ms=5, acks=1)
    print("ready", flush=True)
    print(events[0].value.decode(), flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    sent = 0
    for i, e in enumerate(events):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        p.send(topic, key=e.key, value=e.value)
        sent += 1
    p.flush()
    took = time.monotonic() - t0
    p.close()
    print(sent, took, flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--load-producer"]:
        topic, rate, seconds = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
        return load_producer(topic, rate, seconds)
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", default="1,4")
    ap.add_argument("--max-poll-records", type=int, default=None, help="default: the stream's own (50,000 catching up)")
    ap.add_argument("--readers-per-partition", type=int, default=None, help="default: the stream's own (2 with fewer partitions than cores)")
    ap.add_argument("--freshness-rate", type=int, default=5000)
    ap.add_argument("--freshness-seconds", type=float, default=30)
    ap.add_argument("--no-freshness", action="store_true")
    ap.add_argument("--all-views", action="store_true", help="keep every view of the example (user_variety too: the newer aggregations)")
    ap.add_argument("--freshness-warmup", type=float, default=5.0, help="seconds of load before the probes start (steady state)")
    ap.add_argument("--load-nice", type=int, default=0, help="niceness of the freshness run's load producer process (default 0: the same priority as the stream)")
    a = ap.parse_args()
    import apache_beam
    import kafka

    print(f"python {sys.version.split()[0]}, apache-beam {apache_beam.__version__}, kafka-python {kafka.__version__}, cores {os.cpu_count()}, runner FnApiRunner (in-process)")
    now = time.time_ns() // 1000
    t0 = time.perf_counter()
    evs = events(a.events, end_us=now - 5_000_000)
    print(f"generated {len(evs):,} events ({sum(1 for e in evs if e.bad_kind):,} bad) in {time.perf_counter() - t0:.1f}s")
    rows = []
    for p in [int(x) for x in a.partitions.split(",")]:
        r = throughput(p, a.events, evs, a.max_poll_records, a.readers_per_partition)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print()
    print(f"{'partitions':>10} {'readers/p':>9} {'events':>9} {'bare consumer rec/s':>20} {'ours rec/s (launch->done)':>26} {'ours rec/s (steady)':>20} {'ratio launch/steady':>20} {'batches':>8}")
    for r in rows:
        bare = r["events"] / r["bare_s"]
        ours = r["events"] / r["ours_s"]
        steady = r["ours_steady_rate"] or float("nan")
        ratios = f"{ours / bare:.2f} / {steady / bare:.2f}"
        print(f"{r['partitions']:>10} {r['readers_per_partition']:>9} {r['events']:>9,} {bare:>20,.0f} {ours:>26,.0f} {steady:>20,.0f} {ratios:>20} {r['batches']:>8}")
    if not a.no_freshness:
        f = freshness(a.freshness_rate, a.freshness_seconds, 4, a.load_nice, a.freshness_warmup)
        print()
        print(f"load: {f['sent']:,} events sent at {f['load_rate']:,.0f}/s (load producer process at nice {f['load_nice']}); probes after {f['warmup_s']:.0f} s of load")
        print(f"freshness at {f['rate']:,} events/s produced ({f['sent']:,} sent), produce -> visible in an online read, {f['probes']} probes ({f['misses']} not seen within 10 s):")
        print(f"  p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms, max {f['max_ms']:.0f} ms")
        print(f"  the stream's own last line (its freshness counts every record since the job started, warm-up included): {f['stream_says']}")
    print()
    print("targets (throughput = the steady rate, see bench/README.md; launch->done adds the job's fixed start-up):")
    for r in rows:
        ours, bare = r["events"] / r["ours_s"], r["events"] / r["bare_s"]
        steady = r["ours_steady_rate"] or 0.0
        print(f"  {'PASS' if steady >= 30_000 else 'FAIL'}  {r['partitions']} partition(s): >= 30k events/s end to end (Kafka -> Redis, offsets committed): {steady:,.0f}")
        print(f"  {'PASS' if steady >= bare / 2 else 'FAIL'}  {r['partitions']} partition(s): >= half the bare consumer: {steady / bare:.2f}")
        print(f"  {'(>= 30k)' if ours >= 30_000 else '(< 30k) '}  {r['partitions']} partition(s): launch to caught up, {r['events']:,} events, start-up included: {ours:,.0f}/s, {ours / bare:.2f} of the bare consumer")
    if not a.no_freshness:
        print(f"  {'PASS' if f['p99_ms'] < 2000 else 'FAIL'}  freshness p99 < 2 s at {f['rate']:,}/s: {f['p99_ms']:.0f} ms")
        print(f"  {'PASS' if f['load_rate'] >= 0.98 * f['rate'] else 'FAIL'}  the load kept its rate (>= 98% of {f['rate']:,}/s): {f['load_rate']:,.0f}/s")


if __name__ == "__main__":
    main()
