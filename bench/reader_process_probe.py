"""Probe for the stream's next step: kafka-python decoding in a child process, Arrow batches
over a pipe, against the same decoding in-process (the bare consumer) in the same run.

    .venv/bin/python bench/reader_process_probe.py [records]

Prints records/s both ways and the parent's CPU per record: what a reader process would take
off the stream's main process (see bench/README.md, streaming engine).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
BOOTSTRAP = "127.0.0.1:9092"


def _consumer(topic: str):
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    return c, tp


def child(conn, topic: str, n: int) -> None:
    c, tp = _consumer(topic)
    got = 0
    while got < n:
        recs = c.poll(timeout_ms=500, max_records=50_000).get(tp, [])
        if not recs:
            continue
        got += len(recs)
        batch = pa.record_batch(
            {
                "offset": pa.array([r.offset for r in recs], pa.int64()),
                "key": pa.array([r.key for r in recs], pa.binary()),
                "value": pa.array([r.value for r in recs], pa.binary()),
                "timestamp_ms": pa.array([r.timestamp for r in recs], pa.int64()),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as w:
            w.write_batch(batch)
        conn.send_bytes(sink.getvalue())
    conn.send_bytes(b"")
    c.close()


def main() -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from featureline.generator import live_events

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    topic = "probe_" + uuid.uuid4().hex[:6]
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, 1, 1)])
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=50, batch_size=512 * 1024)
    for e in live_events(n, users=2000):
        p.send(topic, key=e.key, value=e.value)
    p.flush()
    p.close()

    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    t0, cpu0 = time.perf_counter(), time.process_time()
    proc = ctx.Process(target=child, args=(w, topic, n))
    proc.start()
    got = 0
    while True:
        buf = r.recv_bytes()
        if not buf:
            break
        got += pa.ipc.open_stream(buf).read_next_batch().num_rows
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    proc.join()
    print(f"reader process: {got:,} records in {wall:.2f}s = {got / wall:,.0f}/s; parent CPU {cpu:.2f}s = {cpu * 1e6 / got:.2f} us/record")

    t0, cpu0 = time.perf_counter(), time.process_time()
    c, tp = _consumer(topic)
    got2 = 0
    while got2 < n:
        got2 += len(c.poll(timeout_ms=500, max_records=50_000).get(tp, []))
    wall2, cpu2 = time.perf_counter() - t0, time.process_time() - cpu0
    c.close()
    print(f"in-process (bare consumer): {got2:,} records in {wall2:.2f}s = {got2 / wall2:,.0f}/s; CPU {cpu2:.2f}s = {cpu2 * 1e6 / got2:.2f} us/record")
    print(f"ratio: the caller's CPU per record {cpu2 / got2 / (cpu / got):.0f}x less with the reader process; wall rate {got / wall / (got2 / wall2):.2f}x the bare consumer")
    admin.delete_topics([topic])
    admin.close()


if __name__ == "__main__":
    main()
