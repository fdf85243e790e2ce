"""The compiled plan: one immutable description of a project that every engine consumes.

Engines (batch, stream, online, contracts runtime) take a `Plan`, never YAML or
specs. Times and durations are integer microseconds (see `timeutil`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import Location
from .timeutil import format_duration

# logicalType -> Arrow type name used by every engine
ARROW_TYPES = {
    "string": "string",
    "integer": "int64",
    "number": "float64",
    "boolean": "bool",
    "timestamp": "timestamp[us, tz=UTC]",
    "date": "date32",
    "time": "time64[us]",
    "object": "string",  # kept as JSON text
    "array": "string",  # kept as JSON text
}
NUMERIC = ("integer", "number")
# ODCS `classification` values that do not make a field's values secret (compared case-insensitively);
# any other classification (restricted, confidential, pii, ...) redacts them in reasons and reports
OPEN_CLASSIFICATIONS = ("public", "internal", "unclassified")
ORDERED = ("integer", "number", "string", "date", "timestamp", "time", "boolean")


@dataclass(frozen=True)
class FieldPlan:
    name: str
    logical_type: str
    arrow_type: str
    required: bool = False
    unique: bool = False
    primary_key: bool = False
    minimum: Any = None
    maximum: Any = None
    exclusive_minimum: Any = None
    exclusive_maximum: Any = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    enum: tuple | None = None
    has_default: bool = False
    default: Any = None
    description: str | None = None
    classification: str | None = None  # ODCS classification, as written
    location: Location | None = field(default=None, compare=False)

    @property
    def redacted(self) -> bool:
        """Values of this field never appear in reasons, reports or dead-letter headers."""
        c = (self.classification or "").strip().lower()
        return bool(c) and c not in OPEN_CLASSIFICATIONS


@dataclass(frozen=True)
class ContractPlan:
    id: str
    name: str
    version: str
    compatibility: str
    fields: tuple[FieldPlan, ...]
    event_time_field: str | None
    key_fields: tuple[str, ...]
    topic: str | None
    unknown_fields: str  # reject | ignore
    max_future_skew_us: int
    # `unique` fields: a value may appear once per bucket of this much event time (uniqueWithin);
    # None when the contract has no eventTimeField (unique within one input: a file, a batch)
    unique_within_us: int | None = None
    samples: tuple[str, ...] = ()  # globs of sample data files (ODCS servers of type local)
    file: str = field(compare=False, default="")
    location: Location | None = field(default=None, compare=False)

    def field(self, name: str) -> FieldPlan | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def columns(self) -> dict[str, str]:
        return {f.name: f.logical_type for f in self.fields}

    @property
    def redactions(self) -> dict[str, str]:
        """Redacted field -> its classification (the label its placeholders show)."""
        return {f.name: (f.classification or "").strip() for f in self.fields if f.redacted}


@dataclass(frozen=True)
class BatchPlan:
    format: str  # parquet | csv | duckdb
    path: str | None  # absolute glob
    table: str | None = None
    database: str | None = None  # absolute path


@dataclass(frozen=True)
class StreamPlan:
    topic: str
    format: str  # json | avro


@dataclass(frozen=True)
class SourcePlan:
    name: str
    contract: str
    event_time: str
    batch: BatchPlan | None
    stream: StreamPlan | None
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FeaturePlan:
    """One output feature.

    kind "window": AGG(input) over events with floor(t - window, hop) <= event_time < t.
    kind "latest": the input of the row with the greatest event_time < t and >= t - ttl.
    """

    name: str
    view: str
    kind: str  # window | latest
    function: str | None  # aggregation for kind=window; None for latest
    column: str | None  # input column (None: count of events, or expr)
    expr: str | None  # canonical SQL of an input expression
    input_type: str | None  # logical type of the input
    dtype: str  # logical type of the output
    window_us: int | None = None
    hop_us: int | None = None
    ttl_us: int | None = None
    param: int | float | None = None  # its function's setting (last_k/first_k: k)
    location: Location | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"

    def as_of_rule(self) -> str:
        if self.kind == "window":
            w, h = format_duration(self.window_us), format_duration(self.hop_us)
            return f"events with floor(t - {w}, {h}) <= event_time < t"
        return f"latest row with t - {format_duration(self.ttl_us)} <= event_time < t"

    def describe_input(self) -> str:
        if self.expr is not None:
            return self.expr
        return self.column or "*"


@dataclass(frozen=True)
class ViewPlan:
    name: str
    kind: str  # window | latest
    entity: str
    join_keys: tuple[str, ...]
    source: str
    where: str | None
    features: tuple[FeaturePlan, ...]
    ttl_us: int | None
    online: bool
    location: Location | None = field(default=None, compare=False)

    @property
    def hops(self) -> tuple[int, ...]:
        return tuple(sorted({f.hop_us for f in self.features if f.hop_us}))

    def feature(self, name: str) -> FeaturePlan | None:
        for f in self.features:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class ServicePlan:
    name: str
    features: tuple[str, ...]  # "view:feature", in the declared order, `view:*` expanded
    join_keys: tuple[str, ...]  # every key an entity row must carry
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class EntityPlan:
    name: str
    join_keys: tuple[str, ...]
    key_types: tuple[str, ...]  # logical types of the join keys (from the sources using them)


@dataclass(frozen=True)
class ServePlan:
    """`featureline serve`'s limits and timeouts (seconds); tokens as environment variable names."""

    auth_token_envs: tuple[str, ...] = ()
    max_body: int = 1 << 20
    max_entities: int = 1000
    max_features: int = 500
    timeout_s: float = 1.0
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    refusal_delay_s: float = 1.0
    keep_alive_s: float = 5.0
    max_connections: int = 1024
    metrics_port: int | None = None


@dataclass(frozen=True)
class ProjectPlan:
    name: str
    root: str
    # Secrets are never values here: a variable's name, or a `${VAR}` reference in kafka_client
    # (featureline/secrets.py reads them when connecting). Other settings are expanded.
    redis_url: str  # without a password (one written in the URL's userinfo is redis_password_env)
    redis_password_env: str | None
    redis_key_prefix: str
    kafka_bootstrap: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str | None
    kafka_sasl_username: str | None
    kafka_sasl_password_env: str | None
    kafka_consumer_group: str
    kafka_client: Mapping[str, Any]  # secret-like settings as `${VAR}`
    offline_path: str  # absolute
    redis_timeout_s: float = 5.0  # socket connect and read timeout of every Redis call
    redis_password_from: str = "online_store.password"  # the setting naming the password (for errors)
    serve: ServePlan = ServePlan()


@dataclass(frozen=True)
class Plan:
    project: ProjectPlan
    entities: Mapping[str, EntityPlan]
    contracts: Mapping[str, ContractPlan]
    sources: Mapping[str, SourcePlan]
    views: Mapping[str, ViewPlan]
    services: Mapping[str, ServicePlan]

    def __post_init__(self) -> None:
        for name in ("entities", "contracts", "sources", "views", "services"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __reduce__(self):
        # picklable (a Beam pipeline ships the compiled plan to its workers): plain dicts in,
        # read-only views again after __post_init__
        names = ("entities", "contracts", "sources", "views", "services")
        return (Plan, (self.project, *(dict(getattr(self, n)) for n in names)))

    def feature(self, ref: str) -> FeaturePlan:
        view, _, name = ref.partition(":")
        f = self.views[view].feature(name)
        if f is None:
            raise KeyError(ref)
        return f

    def to_dict(self) -> dict:
        def conv(x):
            if isinstance(x, Mapping):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [conv(v) for v in x]
            if isinstance(x, Location):
                return str(x)
            if hasattr(x, "__dataclass_fields__"):
                return {k: conv(getattr(x, k)) for k in x.__dataclass_fields__}
            return x

        return {
            "project": conv(self.project),
            "entities": conv(self.entities),
            "contracts": conv(self.contracts),
            "sources": conv(self.sources),
            "views": conv(self.views),
            "services": conv(self.services),
        }
