"""contracts/*.yaml: Open Data Contract Standard (ODCS) v3 documents, the subset featureline reads.

Every ODCS v3 key is accepted (so documents from other tools load), and a key
ODCS does not define is an error (so typos are caught). featureline enforces:
logicalType, required, unique, primaryKey, logicalTypeOptions (min/max,
exclusive bounds, multipleOf, minLength/maxLength, pattern, format, integer
format i8..u64), quality rules of type `library` (`invalidValues` with
`validValues` is the enum, `nullValues`, `duplicateValues`), `classification`
(redaction of the field's values in reasons), and its own settings under
`customProperties` (see CONTRACT_SETTINGS).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .base import Spec

COMPATIBILITY_MODES = (
    "backward",
    "backward_transitive",
    "forward",
    "forward_transitive",
    "full",
    "full_transitive",
    "none",
)

# featureline's settings, as ODCS customProperties of the contract (camelCase, as ODCS asks).
CONTRACT_SETTINGS = {
    "compatibility": "backward | forward | full (+ _transitive) | none; default backward",
    "eventTimeField": "the property holding each record's event time",
    "keyFields": "properties that identify an entity (list)",
    "topic": "the Kafka topic the records arrive on (default: the schema object's physicalName)",
    "unknownFields": "reject | ignore: a record with a property the contract lacks; default reject",
    "maxFutureSkew": "how far in the future an event time may be, e.g. 5m; default 5m",
    "uniqueWithin": "`unique` properties: a value may appear once per this much event time (buckets since the epoch), e.g. 1d; default 1d",
}
PROPERTY_SETTINGS = {
    "default": "the value a reader uses when the field is absent (makes adding it compatible)",
}


class CustomProperty(Spec):
    id: str | None = None
    property: str
    value: Any
    description: str | None = None


class QualityRule(Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str | None = None
    type: Literal["library", "text", "sql", "custom"] = "library"
    metric: Literal["nullValues", "missingValues", "invalidValues", "duplicateValues", "rowCount"] | None = None
    rule: str | None = None  # deprecated ODCS spelling of metric
    arguments: dict[str, Any] | None = None
    mustBe: Any = None
    mustNotBe: Any = None
    mustBeGreaterThan: float | None = None
    mustBeGreaterOrEqualTo: float | None = None
    mustBeLessThan: float | None = None
    mustBeLessOrEqualTo: float | None = None
    mustBeBetween: list[float] | None = None
    mustNotBeBetween: list[float] | None = None
    unit: str | None = None
    name: str | None = None
    description: str | None = None
    dimension: str | None = None
    severity: str | None = None
    businessImpact: str | None = None
    method: str | None = None
    schedule: str | None = None
    scheduler: str | None = None
    query: str | None = None
    engine: str | None = None
    implementation: Any = None
    tags: list[str] | None = None
    authoritativeDefinitions: list[Any] | None = None
    customProperties: list[CustomProperty] | None = None


class SchemaProperty(Spec):
    name: str
    logicalType: Literal["string", "date", "timestamp", "time", "number", "integer", "object", "array", "boolean"] | None = None
    physicalType: str | None = None
    required: bool = False
    unique: bool = False
    primaryKey: bool = False
    primaryKeyPosition: int | None = None
    logicalTypeOptions: dict[str, Any] | None = None
    description: str | None = None
    quality: list[QualityRule] = Field(default_factory=list)
    examples: list[Any] | None = None
    customProperties: list[CustomProperty] = Field(default_factory=list)
    classification: str | None = None  # anything but public/internal/unclassified: values redacted
    # ODCS keys featureline accepts and does not act on:
    id: str | None = None
    businessName: str | None = None
    physicalName: str | None = None
    partitioned: bool | None = None
    partitionKeyPosition: int | None = None
    encryptedName: str | None = None
    transformSourceObjects: list[str] | None = None
    transformLogic: str | None = None
    transformDescription: str | None = None
    criticalDataElement: bool | None = None
    tags: list[str] | None = None
    authoritativeDefinitions: list[Any] | None = None
    relationships: list[Any] | None = None
    items: Any = None
    properties: list[Any] | None = None

    def setting(self, key: str, default: Any = None) -> Any:
        return _setting(self.customProperties, key, default)


class SchemaObject(Spec):
    name: str
    logicalType: Literal["object", "blob"] | None = "object"
    physicalType: str | None = None
    physicalName: str | None = None
    description: str | None = None
    businessName: str | None = None
    dataGranularityDescription: str | None = None
    properties: list[SchemaProperty] = Field(default_factory=list)
    quality: list[QualityRule] = Field(default_factory=list)
    id: str | None = None
    tags: list[str] | None = None
    authoritativeDefinitions: list[Any] | None = None
    relationships: list[Any] | None = None
    customProperties: list[CustomProperty] = Field(default_factory=list)


class ContractSpec(Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    apiVersion: Literal["v3.0.0", "v3.0.1", "v3.0.2", "v3.1.0"]
    kind: Literal["DataContract"]
    id: str
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
    status: str
    name: str | None = None
    schema_: list[SchemaObject] = Field(default_factory=list, alias="schema")
    customProperties: list[CustomProperty] = Field(default_factory=list)
    description: dict[str, Any] | None = None
    servers: list[dict[str, Any]] | None = None
    # ODCS keys featureline accepts and does not act on:
    tenant: str | None = None
    tags: list[str] | None = None
    dataProduct: str | None = None
    domain: str | None = None
    support: Any = None
    price: Any = None
    team: Any = None
    roles: Any = None
    slaDefaultElement: str | None = None
    slaProperties: Any = None
    authoritativeDefinitions: Any = None
    contractCreatedTs: str | None = None

    def setting(self, key: str, default: Any = None) -> Any:
        return _setting(self.customProperties, key, default)


def _setting(props: list[CustomProperty], key: str, default: Any) -> Any:
    for p in props:
        if p.property == key:
            return p.value
    return default
