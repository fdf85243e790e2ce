"""featureline.yaml: project settings. Secrets (password, sasl_password, secret-like `client`
keys) are checked by the compiler (featureline/secrets.py has the rules)."""

from __future__ import annotations

from pydantic import Field

from .base import Spec

_DURATION = r"^\d+(\.\d+)?(ms|s|m)$"  # 500ms, 5s, 1m


class RedisSettings(Spec):
    url: str = "redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0"
    password: str | None = None  # a ${VAR} reference (or the URL's userinfo: redis://:${VAR}@host)
    key_prefix: str = Field(default="fl", pattern=r"^[A-Za-z0-9_.:-]+$")
    # connect and read timeout of every Redis call (a stalled Redis never hangs a job), e.g. 500ms, 5s
    timeout: str = Field(default="5s", pattern=_DURATION)


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


class ServeSettings(Spec):
    """`featureline serve`: limits, timeouts and authentication (docs/security.md)."""

    # bearer tokens required on the feature endpoints, /metrics and /openapi.json; each an ${ENV} reference (compiler)
    auth_tokens: list[str] = Field(default_factory=list, max_length=16)
    max_body: int = Field(default=1 << 20, ge=1024, le=1 << 30)  # bytes of one request body (1000 rows: ~60 kB)
    max_entities: int = Field(default=1000, ge=1, le=100_000)  # entity rows of one request
    max_features: int = Field(default=500, ge=1, le=10_000)  # feature refs of one request
    timeout: str = Field(default="1s", pattern=_DURATION)  # a request's Redis time (connect + read), then 503
    header_timeout: str = Field(default="5s", pattern=_DURATION)  # from a request's first byte to its last header
    body_timeout: str = Field(default="10s", pattern=_DURATION)  # to read a request's body
    refusal_delay: str = Field(default="1s", pattern=_DURATION)  # a 413/431 is answered after it (a tarpit)
    keep_alive: str = Field(default="5s", pattern=_DURATION)  # an idle keep-alive connection is closed after it
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)  # open connections + requests, then 503
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # serve /metrics there instead (no token)


class ProjectSpec(Spec):
    project: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str | None = None
    online_store: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    offline_store: OfflineSettings = Field(default_factory=OfflineSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    features: list[str] = Field(default_factory=lambda: ["features/*.yaml", "features/**/*.yaml"])
    contracts: list[str] = Field(default_factory=lambda: ["contracts/*.yaml", "contracts/**/*.yaml"])
