"""featureline.yaml: project settings."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .base import Spec

# ${VAR} or ${VAR:-default}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_WORDS = ("password", "secret", "token", "key")


def _must_be_env_ref(v: str | None) -> str | None:
    if v is not None and not ENV_REF.fullmatch(v.strip()):
        raise ValueError("secrets must be environment references like ${KAFKA_PASSWORD}, never literal values")
    return v


class RedisSettings(Spec):
    url: str = "redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0"
    password: str | None = None  # ${ENV} reference
    key_prefix: str = Field(default="fl", pattern=r"^[A-Za-z0-9_.:-]+$")
    # connect and read timeout of every Redis call (a stalled Redis never hangs a job), e.g. 500ms, 5s
    timeout: str = Field(default="5s", pattern=r"^\d+(\.\d+)?(ms|s|m)$")

    _secret = field_validator("password")(_must_be_env_ref)


class KafkaSettings(Spec):
    bootstrap_servers: str = "127.0.0.1:${FEATURELINE_KAFKA_PORT:-9092}"
    security_protocol: str = Field(default="PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None  # ${ENV} reference
    consumer_group: str = "featureline"
    # Any other kafka-python client setting, passed through (e.g. request_timeout_ms).
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)

    _secret = field_validator("sasl_password")(_must_be_env_ref)

    @field_validator("client")
    @classmethod
    def _no_literal_secrets(cls, v: dict) -> dict:
        for k, val in v.items():
            if any(w in k.lower() for w in SECRET_WORDS) and isinstance(val, str):
                _must_be_env_ref(val)
        return v


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
