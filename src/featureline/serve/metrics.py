"""Prometheus metrics of `featureline serve` (one registry; every worker's with --workers)."""

from __future__ import annotations

import os


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "featureline_http_request_duration_seconds",
            "Time to answer a request, from routing to the response body (seconds)",
            ["endpoint"],
            buckets=(0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.requests = Counter(
            "featureline_http_requests", "Requests answered, by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.redis_errors = Counter(
            "featureline_redis_errors", "Redis errors while serving, by exception", ["error"], registry=self.registry
        )
        self.entities = Counter("featureline_entity_rows", "Entity rows read, by endpoint", ["endpoint"], registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = self.registry
        if self.multiprocess:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str, metrics: Metrics | None = None) -> None:
    """/metrics on its own port (a thread of this process; with --workers, the parent's, over
    every worker's files), so the feature port can stay token-only and this one private."""
    from prometheus_client import CollectorRegistry, start_http_server

    if metrics is not None and not metrics.multiprocess:
        registry = metrics.registry
    else:
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
