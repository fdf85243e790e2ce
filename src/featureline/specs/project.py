"""featureline.yaml: project settings. Secrets (password, sasl_password, secret-like `client`
keys) are checked by the compiler (featureline/secrets.py has the rules)."""

from __future__ import annotations

from pydantic import Field

from ..secrets import ENV_REF  # noqa: F401 - ${VAR} or ${VAR:-default}
from .base import Spec


class RedisSettings(Spec):
    url: str = "redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0"
    password: str | None = None  # a ${VAR} reference (or the URL's userinfo: redis://:${VAR}@host)
    key_prefix: str = Field(default="fl", pattern=r"^[A-Za-z0-9_.:-]+$")
    # connect and read timeout of every Redis call (a stalled Redis never hangs a job), e.g. 500ms, 5s
    timeout: str = Field(default="5s", pattern=r"^\d+(\.\d+)?(ms|s|m)$")


class KafkaSettings(Spec):
    bootstrap_servers: str = "127.0.0.1:${FEATURELINE_KAFKA_PORT:-9092}"
    security_protocol: str = Field(default="PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None  # a ${VAR} reference
    consumer_group: str = "featureline"
    # Any other kafka-python client setting, passed through (e.g. request_timeout_ms).
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)


class OfflineSettings(Spec):
    path: str = "data/offline"


class ProjectSpec(Spec):
    project: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str | None = None
    online_store: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    offline_store: OfflineSettings = Field(default_factory=OfflineSettings)
    features: list[str] = Field(default_factory=lambda: ["features/*.yaml", "features/**/*.yaml"])
    contracts: list[str] = Field(default_factory=lambda: ["contracts/*.yaml", "contracts/**/*.yaml"])
