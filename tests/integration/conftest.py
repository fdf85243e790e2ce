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
