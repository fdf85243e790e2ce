"""`FeatureStore`: the Python entry point, over the compiled plan and the engines.

from featureline import FeatureStore

fs = FeatureStore(".")
train = fs.get_historical_features(spine, "fraud_detection")      # pyarrow.Table
train = fs.get_historical_features(spine, "fraud_detection", to_pandas=True)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path


class FeatureStore:
    def __init__(self, path: str | Path = ".", *, strict: bool = False, memory_limit: str | None = None, cache: bool = True):
        from .compiler import compile_project

        self.plan = compile_project(path)
        self.strict = strict
        self.memory_limit = memory_limit
        self.cache = cache
        self._aclient = None  # (event loop, redis.asyncio client) of get_online_features_async

    @cached_property
    def batch(self):
        from .batch.engine import BatchEngine

        return BatchEngine(self.plan, strict=self.strict, memory_limit=self.memory_limit, cache=self.cache)

    @cached_property
    def online(self):
        from .online.store import OnlineStore

        return OnlineStore(self.plan)

    def get_online_features(self, service: str, entity_rows, *, to_arrow: bool = False):
        """The service's features for each entity row, as of now, from Redis: a dict of columns
        (join keys first), or a pyarrow Table with `to_arrow=True`. One round trip."""
        return _columns(self.online.get(service, entity_rows), to_arrow)

    async def get_online_features_async(self, service: str, entity_rows, *, to_arrow: bool = False):
        """`get_online_features` for asyncio services: the event loop runs on while Redis answers
        (redis.asyncio, the project's `online_store.timeout` on every call). One client per event loop."""
        import asyncio

        from .online.store import connect_async

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient[0] is not loop:
            self._aclient = (loop, connect_async(self.plan, timeout=self.plan.project.redis_timeout_s))
        return _columns(await self.online.get_async(self._aclient[1], service, entity_rows), to_arrow)

    async def aclose(self) -> None:
        """Close the asyncio client of `get_online_features_async` (if one was made)."""
        if self._aclient is not None:
            client = self._aclient[1]
            self._aclient = None
            await client.aclose()

    def get_historical_features(
        self, spine, service: str, *, at_column: str | None = None, to_pandas: bool = False, progress: bool = False
    ):
        """Every spine row (in order, with its columns) and the service's features as of its time.

        `spine`: a pyarrow Table, a pandas DataFrame, a dict of columns, or a parquet/csv path,
        with the service's join keys and a time column (`at_column`, default: timestamp,
        event_time or ts). Values follow docs/semantics.md: only events strictly before
        the row's time count.
        """
        table = read_spine(spine)
        out = self.batch.historical(table, service, at_column=at_column, progress=progress)
        return out.to_pandas() if to_pandas else out

    def source_reports(self):
        """What the contract checks found in each batch source read so far."""
        return dict(self.batch.reports)


def _columns(cols: dict, to_arrow: bool):
    if to_arrow:
        import pyarrow as pa

        return pa.table(cols)
    return cols


def read_spine(spine):
    import pyarrow as pa

    if isinstance(spine, (str, Path)):
        p = Path(spine)
        if not p.exists():
            raise FileNotFoundError(f"spine file {p} does not exist")
        if p.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(p)
        import pyarrow.parquet as pq

        return pq.read_table(p)
    if isinstance(spine, pa.Table):
        return spine
    if hasattr(spine, "to_records"):  # pandas
        return pa.Table.from_pandas(spine, preserve_index=False)
    return pa.table(spine)
