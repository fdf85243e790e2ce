"""Fixtures for tests that talk to the real Redis and Kafka.

The services are the ones ``scripts/services`` starts (Redis from Debian's
packages, a single-node Apache Kafka broker). The session fixture runs
``scripts/services up``, which reuses running services within a second and
starts them otherwise. Host and ports come from the same environment
variables the script reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: talks to the real Redis and Kafka started by scripts/services",
    )


@dataclass(frozen=True)
class Services:
    redis_host: str
    redis_port: int
    kafka_host: str
    kafka_port: int

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"


def _endpoints() -> Services:
    return Services(
        redis_host=os.environ.get("FEATURELINE_REDIS_HOST", "127.0.0.1"),
        redis_port=int(os.environ.get("FEATURELINE_REDIS_PORT", "6379")),
        kafka_host=os.environ.get("FEATURELINE_KAFKA_HOST", "127.0.0.1"),
        kafka_port=int(os.environ.get("FEATURELINE_KAFKA_PORT", "9092")),
    )


@pytest.fixture(scope="session")
def services() -> Services:
    """Make sure Redis and Kafka run (``scripts/services up``) and say where."""
    env = dict(os.environ)
    # The script's Kafka check needs kafka-python: use this interpreter.
    env.setdefault("PYTHON", sys.executable)
    result = subprocess.run(
        [str(SERVICES_SCRIPT), "up"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/services up failed (exit {result.returncode}):\n{result.stdout}",
            pytrace=False,
        )
    return _endpoints()


# ----------------------------------------------------------------- private services for fault tests
#
# Tests that kill, stall or wipe a service use these, never the shared dev
# services above: each is a process of its own on a free loopback port
# (tests/integration/faults.py).


@pytest.fixture
def private_redis(tmp_path: Path):
    """A PrivateRedis (AOF everysec) started for this test, killed after it."""
    from tests.integration.faults import PrivateRedis

    with PrivateRedis(tmp_path / "private-redis") as r:
        yield r


@pytest.fixture
def private_kafka(tmp_path: Path):
    """A PrivateKafka (one broker, restartable with its data) for this test."""
    from tests.integration.faults import PrivateKafka

    with PrivateKafka(tmp_path / "private-kafka") as k:
        yield k


@pytest.fixture(scope="module")
def _kafka_cluster_module(tmp_path_factory: pytest.TempPathFactory):
    from tests.integration.faults import KafkaCluster

    with KafkaCluster(tmp_path_factory.mktemp("kafka-cluster")) as cluster:
        yield cluster


@pytest.fixture
def kafka_cluster(_kafka_cluster_module):
    """A 3-node KafkaCluster, shared by the tests of a module (it takes
    ~20-30 s to start). After each test every node is resumed and restarted
    and the cluster is healthy again, whatever the test killed."""
    cluster = _kafka_cluster_module
    yield cluster
    for node in cluster.NODES:
        cluster.resume(node)
    if len(cluster.running_nodes()) < len(cluster.NODES):
        cluster.start()
    else:
        cluster.wait_healthy()
