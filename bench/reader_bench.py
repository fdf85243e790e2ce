"""One partition's reader processes alone: one `PartitionReader` vs a `StripedReader` (2 processes).

    .venv/bin/python bench/reader_bench.py                 # 400k generator events, 1 partition
    .venv/bin/python bench/reader_bench.py --events 200000 --rounds 3

Needs Kafka (`scripts/services up`). One topic of one partition holds generator events (the
stream bench's, 2% bad); each variant reads all of it from a parent that only takes the frames
(no job), with and without the stream's contract check (`ContractCheck`, run in the readers),
alternating the variants each round. Printed per variant: records/s from the first frame to the
last (the processes' start-up excluded), and the readers' CPU per record (user + system of the
child processes, their start-up included: ~0.5 s each). The baseline is one reader process, the
stream's default before two readers per partition.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_bench as sb  # noqa: E402 - next to this file

from featureline.stream.kafka_source import KafkaSourceConfig  # noqa: E402


def read_all(topic: str, n: int, readers: int, decode) -> tuple[float, float]:
    """(records/s, child CPU us per record) of reading offsets [0, n) with `readers` processes."""
    from featureline.stream.reader_proc import PartitionReader, StripedReader

    src = KafkaSourceConfig(sb.bootstrap(), max_poll_records=50_000)  # the stream's catch-up batch limit
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    args = (src.kafka_config(group_id=None), topic, 0, src.max_poll_records, src.poll_timeout_ms, decode)
    r = PartitionReader(*args) if readers == 1 else StripedReader(*args, n=readers)
    r.start(0, n)
    got, t0, first = 0, None, 0
    while r.position is None or r.position < n:
        frame = r.take(30)
        if frame is None:
            raise RuntimeError(f"no frame within 30 s at offset {r.position}")
        if frame[0] is not None:
            assert frame[0].column(0)[0].as_py() == got, "frames out of order"
            got += frame[0].num_rows
            if t0 is None:  # the steady rate: from the first frame on (process start-up excluded)
                t0, first = time.perf_counter(), got
    secs = time.perf_counter() - t0
    r.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert got == n, (got, n)
    return (n - first) / secs if n > first else float("nan"), cpu / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if a.events < 1 or a.rounds < 1:
        ap.error("--events and --rounds must be >= 1")
    from featureline.compiler import compile_project
    from featureline.stream.check import ContractCheck

    topic = f"rbench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="flrbench"))
    plan = compile_project(sb.project(tmp, topic))
    evs = sb.events(a.events, end_us=time.time_ns() // 1000 - 5_000_000)
    sb.create_topic(topic, 1)
    sb.produce_all(topic, [(e.key, e.value) for e in evs])
    check = ContractCheck(plan.contracts[plan.sources["transactions"].contract])
    rows: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for decode in (None, check):
            for readers in (1, 2):
                rows.setdefault((readers, decode is not None), []).append(read_all(topic, a.events, readers, decode))
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=sb.bootstrap())
    admin.delete_topics([topic])
    admin.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{a.events:,} records of one partition, {a.rounds} round(s), variants alternating")
    print(f"{'readers':>8} {'contract check':>15} {'records/s':>22} {'reader CPU us/record':>22} {'x one reader':>13}")
    for (readers, checked), got in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rates, cpus = [g[0] for g in got], [g[1] for g in got]
        base = rows[(1, checked)]
        ratio = sum(rates) / sum(g[0] for g in base)
        print(
            f"{readers:>8} {'yes' if checked else 'no':>15} {min(rates):>10,.0f}-{max(rates):<10,.0f}"
            f" {min(cpus):>10.1f}-{max(cpus):<10.1f} {ratio:>13.2f}"
        )


if __name__ == "__main__":
    main()
