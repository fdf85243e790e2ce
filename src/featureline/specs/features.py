"""features/*.yaml: entities, sources, feature views and feature services.

A feature view is either *windowed* (it has `aggregations:`, docs/semantics.md
windowed aggregations) or *latest* (it has `features:` and a `ttl`, the latest
value as of t). The two are a discriminated union chosen by those keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from ..aggregations import FUNCTION_NAMES, FUNCTIONS
from ..aggregations.lastk import MAX_K
from .base import Spec

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME)]

# Durations are parsed by the compiler (to report '10 min' with its position); a bare
# number is accepted here so that the compiler can say it lacks a unit.
Duration = str | int | float

AggFunction = Literal[FUNCTION_NAMES]  # type: ignore[valid-type]  # the registry's names


class Entity(Spec):
    name: Name
    join_keys: list[Name] = Field(min_length=1)
    description: str | None = None


class BatchSide(Spec):
    """Where the source's history lives: a parquet/csv glob or a DuckDB table."""

    path: str | None = None  # glob, relative to the project root
    format: Literal["parquet", "csv"] | None = None  # default: from the path's extension
    table: str | None = None  # a table in `database`
    database: str | None = None  # a DuckDB file, relative to the project root

    @model_validator(mode="after")
    def _one_of(self) -> BatchSide:
        if (self.path is None) == (self.table is None):
            raise ValueError("give exactly one of `path` (a parquet/csv glob) or `table` (a DuckDB table)")
        if self.table is not None and self.database is None:
            raise ValueError("a `table` needs the DuckDB `database` file it lives in")
        if self.path is not None and self.format is None and not self.path.endswith((".parquet", ".csv")):
            raise ValueError("cannot tell the format from the path: set `format: parquet` or `format: csv`")
        return self

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        if self.path is not None:
            return "csv" if self.path.endswith(".csv") else "parquet"
        return "duckdb"


class StreamSide(Spec):
    topic: str | None = None  # default: the topic the contract binds to
    format: Literal["json", "avro"] = "json"


class Source(Spec):
    name: Name
    contract: str
    event_time: Name | None = None  # default: the contract's eventTimeField
    batch: BatchSide | None = None
    stream: StreamSide | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _some_side(self) -> Source:
        if self.batch is None and self.stream is None:
            raise ValueError("a source needs a `batch` side, a `stream` side, or both")
        return self


class Aggregation(Spec):
    """One or more aggregations of a column (or expression) over one or more windows.

    Each (function, window) pair is one feature named `<name>_<function>_<window>`,
    where `<name>` defaults to the column (or `events` for a bare count). With one
    function and one window, `name` is the feature's exact name.
    """

    column: Name | None = None
    expr: str | None = None  # an expression in the filter language, e.g. "status = 'declined'"
    function: AggFunction | None = None
    functions: list[AggFunction] | None = None
    windows: list[Duration] = Field(min_length=1)
    hop: Duration | None = None
    name: Name | None = None
    k: int | None = Field(default=None, ge=1, le=MAX_K)  # last_k, first_k, top_k: how many values
    percentiles: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(default=None, min_length=1, max_length=20)  # approx_percentile

    @model_validator(mode="after")
    def _shape(self) -> Aggregation:
        if (self.function is None) == (self.functions is None):
            raise ValueError("give exactly one of `function` or `functions`")
        if self.column is not None and self.expr is not None:
            raise ValueError("give `column` or `expr`, not both")
        fns = self.function_list
        if self.column is None and self.expr is None and fns != ["count"]:
            raise ValueError("only `count` may omit `column` (it then counts events)")
        if self.expr is not None and self.name is None:
            raise ValueError("an aggregation of an `expr` needs a `name`")
        if self.percentiles is not None and len(set(self.percentiles)) < len(self.percentiles):
            raise ValueError("`percentiles` lists a percentile twice")
        for setting in ("k", "percentiles"):
            takes = [f for f in fns if FUNCTIONS[f].param == setting]
            if getattr(self, setting) is None and takes:
                raise ValueError(f"`{takes[0]}` needs `{setting}`")
            if getattr(self, setting) is not None and not takes:
                names = [f"`{n}`" for n, fn in FUNCTIONS.items() if fn.param == setting]
                names = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
                raise ValueError(f"`{setting}` applies to {names}, not to {', '.join(f'`{f}`' for f in fns)}")
        return self

    @property
    def function_list(self) -> list[str]:
        return [self.function] if self.function else list(self.functions or [])


class _ViewBase(Spec):
    name: Name
    entity: Name
    source: Name
    where: str | None = None
    description: str | None = None
    online: bool = True
    tags: dict[str, str] = Field(default_factory=dict)


class WindowedView(_ViewBase):
    aggregations: list[Aggregation] = Field(min_length=1)


class LatestFeature(Spec):
    name: Name
    column: Name | None = None  # default: same as name


class LatestView(_ViewBase):
    ttl: Duration
    features: list[Name | LatestFeature] = Field(min_length=1)

    def feature_list(self) -> list[LatestFeature]:
        return [LatestFeature(name=f) if isinstance(f, str) else f for f in self.features]


def _view_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "windowed" if "aggregations" in v else "latest"
    return "windowed" if isinstance(v, WindowedView) else "latest"


FeatureView = Annotated[
    Annotated[WindowedView, Tag("windowed")] | Annotated[LatestView, Tag("latest")],
    Discriminator(_view_kind),
]


class FeatureService(Spec):
    name: Name
    features: list[str] = Field(min_length=1)  # "view:feature" or "view:*"
    description: str | None = None


class FeatureFile(Spec):
    entities: list[Entity] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    feature_views: list[FeatureView] = Field(default_factory=list)
    feature_services: list[FeatureService] = Field(default_factory=list)
