"""The stream's counters: printed periodically, exposed for Prometheus, checked by the tests.

Invariant: consumed = applied + dead_lettered + filtered (every record counted once).
`late` counts applied records too old for any window or ttl (they change nothing); `lost`
offsets whose records were deleted before the stream read them, skipped with --skip-lost
(never silently: without it the job stops); `internal` records dead-lettered because a check
failed on them (rule `internal`, a bug to report: the record itself is kept in the DLQ).
Freshness: from a record's Kafka timestamp (its produce time, or the event time if the
producer set it) to the moment Redis acknowledged its batch's effects.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from .outcome import Outcome

COUNTERS = ("consumed", "applied", "dead_lettered", "filtered", "late", "lost", "internal")


class StreamMetrics:
    def __init__(self, *, window: int = 200_000):
        self.lock = threading.Lock()
        self.totals = Counter({k: 0 for k in COUNTERS})
        self.by_rule: Counter = Counter()
        self.batches = 0
        self.next_offset: dict[tuple[str, int], int] = {}
        self.lag: dict[tuple[str, int], int] = {}
        self.fresh_ms: deque = deque(maxlen=window)  # recent freshness samples
        self.started = time.monotonic()
        self.first_batch: float | None = None
        self.first_consumed = 0  # records of the first batch (before the steady clock starts)
        self.last_batch: float | None = None
        self._prom = None

    def record(self, out: Outcome) -> None:
        t = time.monotonic()
        with self.lock:
            if self.first_batch is None:
                self.first_batch = t
                self.first_consumed = out.consumed
            self.last_batch = t
            for k in COUNTERS:
                self.totals[k] += getattr(out, k)
            self.by_rule.update(out.by_rule)
            self.batches += 1
            if out.hi >= 0:
                self.next_offset[(out.topic, out.partition)] = out.hi + 1
            if out.timestamps_ms is not None and len(out.timestamps_ms):
                self.fresh_ms.extend((out.written_ms - out.timestamps_ms).tolist())
        if self._prom is not None:
            self._prom.update(out)

    def freshness(self) -> tuple[float | None, float | None]:
        """(p50, p99) in ms over the recent samples."""
        with self.lock:
            if not self.fresh_ms:
                return None, None
            a = np.fromiter(self.fresh_ms, dtype=np.float64)
        return float(np.percentile(a, 50)), float(np.percentile(a, 99))

    def steady_rate(self) -> float | None:
        """Records per second after the first micro-batch (the records of the batches after it,
        over the time from its end to the last one's): the rate without start-up."""
        if self.first_batch is None or self.last_batch is None or self.last_batch <= self.first_batch:
            return None
        return (self.totals["consumed"] - self.first_consumed) / (self.last_batch - self.first_batch)

    def balanced(self) -> bool:
        t = self.totals
        return t["consumed"] == t["applied"] + t["dead_lettered"] + t["filtered"]

    def line(self) -> str:
        t = self.totals
        secs = max(1e-9, time.monotonic() - self.started)
        p50, p99 = self.freshness()
        fresh = f"freshness p50 {p50:,.0f} ms p99 {p99:,.0f} ms" if p50 is not None else "freshness -"
        lag = sum(self.lag.values()) if self.lag else 0
        return (
            f"consumed {t['consumed']:,} = applied {t['applied']:,} + dead-lettered {t['dead_lettered']:,} + filtered {t['filtered']:,}"
            f" | late {t['late']:,} | lost {t['lost']:,} | internal {t['internal']:,} | {t['consumed'] / secs:,.0f} rec/s | lag {lag:,} | {fresh}"
        )

    def serve(self, port: int) -> None:
        """Expose the counters on http://127.0.0.1:<port>/metrics (Prometheus text format)."""
        self._prom = _Prometheus(self)
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1", registry=self._prom.registry)

    def add_lost(self, n: int) -> None:
        """Records skipped at launch (start offsets below the partitions' first, --skip-lost)."""
        with self.lock:
            self.totals["lost"] += n

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        with self.lock:
            self.lag = dict(lag)
        if self._prom is not None:
            for (t, p), v in lag.items():
                self._prom.lag.labels(t, str(p)).set(v)


class _Prometheus:
    def __init__(self, m: StreamMetrics):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.counters = {
            k: Counter(f"featureline_stream_{k}", f"records {k.replace('_', ' ')}", ["topic"], registry=self.registry) for k in COUNTERS
        }
        self.dead_by_rule = Counter(
            "featureline_stream_dead_lettered_by_rule", "dead-lettered records by field and rule", ["field", "rule"], registry=self.registry
        )
        self.lag = Gauge("featureline_stream_lag", "records not yet applied, per partition", ["topic", "partition"], registry=self.registry)
        self.fresh = Histogram(
            "featureline_stream_freshness_seconds",
            "Kafka record timestamp to Redis acknowledgement",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )

    def update(self, out: Outcome) -> None:
        for k in COUNTERS:
            v = getattr(out, k)
            if v:
                self.counters[k].labels(out.topic).inc(v)
        for (f, r), n in out.by_rule.items():
            self.dead_by_rule.labels(f or "", r).inc(n)
        if out.timestamps_ms is not None and len(out.timestamps_ms):
            # one observation per record would cost a Python call each: sample the batch's quantiles
            fresh = (out.written_ms - out.timestamps_ms) / 1000.0
            for q in np.percentile(fresh, (10, 30, 50, 70, 90, 99)):
                self.fresh.observe(float(q))
