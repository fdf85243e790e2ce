"""What each endpoint of `featureline serve` answers (app.py wires them: auth, errors, metrics).

Every request is bounded before it costs anything: the body is complete and within `max_body`
(http.py's protocol; for another ASGI server it is read in chunks here within `body_timeout`,
413/408), then decoded and validated (`reader.py`, 4xx); a read waits on Redis for at most
`timeout` (then 503), so a slow or dead Redis never holds up the event loop (`/health`
answers meanwhile). Answers never carry credentials or hosts: a Redis failure is a 503 naming
the kind of error only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from ..plan import Plan, ServePlan
from .asgi import Answer, Disconnected
from .http import too_large
from .metrics import Metrics
from .reader import HTTPError, Read, Reader, _feast_ts, _jtype, read_time

log = logging.getLogger("featureline.serve")

EPOCH_TS = "1970-01-01T00:00:00Z"  # Feast's event timestamp of a value it did not find (and of join keys)
FEATURE_ENDPOINTS = ("/features/online", "/get-online-features")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class Endpoints:
    """The endpoints' state (the plan, the settings, the reader, the metrics; `client`: the
    redis.asyncio client, made on the event loop by the app's lifespan) and handlers."""

    def __init__(self, plan: Plan, cfg: ServePlan, reader: Reader, metrics: Metrics, schema: bytes):
        self.plan = plan
        self.cfg = cfg
        self.reader = reader
        self.metrics = metrics
        self.schema = schema
        self.client: Any = None
        self.entity_rows = {e: metrics.entities.labels(e) for e in FEATURE_ENDPOINTS}

    async def body(self, request) -> dict:
        raw = request.body  # http.py's protocol passes a body on once complete, within its limits
        if raw is None:  # another ASGI server: bounded here
            raw = await self._read_body(request)
        try:
            doc = _decode(raw)
        except msgspec.DecodeError as e:
            raise HTTPError(400, f"malformed JSON: {str(e)[:120]}" if raw else "empty body: send a JSON object") from None
        except RecursionError:
            raise HTTPError(400, "malformed JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, f"the request body must be a JSON object, got {_jtype(doc)}")
        return doc

    async def _read_body(self, request) -> bytes:
        """The body from an ASGI server's chunks: its declared size, then what arrives, within
        `max_body` and `body_timeout` (what http.py's protocol checks before the app runs)."""
        size = request.header("content-length")
        if size is not None:
            if not size.isdigit():
                raise HTTPError(400, "Content-Length must be a number of bytes")
            why = too_large(size, self.cfg.max_body)
            if why:
                raise HTTPError(413, why)
        chunks, n = [], 0
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                async for chunk in request.chunks():
                    n += len(chunk)
                    if n > self.cfg.max_body:
                        raise HTTPError(413, f"request body over {self.cfg.max_body:,} bytes (the limit)")
                    chunks.append(chunk)
        except TimeoutError:
            raise HTTPError(408, f"request body not received within {self.cfg.body_timeout_s:g}s") from None
        except Disconnected:  # nobody will read the answer; nothing to log
            raise HTTPError(400, "the client left before sending its whole body") from None
        return b"".join(chunks)

    async def store_call(self, coro):
        """A Redis call (bounded by `timeout`: `AsyncRedis` bounds its reads, `ready` its own
        command): late or failed -> 503 naming only the kind of error."""
        try:
            return await coro
        except (TimeoutError, RedisTimeout):
            self.metrics.redis_errors.labels("TimeoutError").inc()
            raise HTTPError(503, f"the online store did not answer within {self.cfg.timeout_s:g}s") from None
        except RedisError as e:
            kind = type(e).__name__
            self.metrics.redis_errors.labels(kind).inc()
            raise HTTPError(503, f"the online store is unavailable ({kind})") from None

    def read_of(self, doc: dict, service_field: str) -> Read:
        service, features = doc.get(service_field), doc.get("features")
        if service is not None:
            if features is not None:
                if service_field == "service":
                    raise HTTPError(400, "name a `service` or a list of `features`, not both")
                self.reader.for_features(features)  # Feast's shape: the service wins, but the list must be valid
            return self.reader.for_service(service)
        if features is not None:
            return self.reader.for_features(features)
        raise HTTPError(400, f'name a `{service_field}` or a list of `features` ("view:feature")')

    def parse(self, doc: dict, service_field: str) -> tuple[Read, list[dict], list[str]]:
        """Everything checked before Redis is asked: what to read, the rows, the output names."""
        read = self.read_of(doc, service_field)
        if "entities" not in doc:
            raise HTTPError(400, "missing `entities`")
        rows = self.reader.rows(read, doc["entities"])
        full = doc.get("full_feature_names", False)
        if not isinstance(full, bool):
            raise HTTPError(400, f"`full_feature_names` must be a boolean, got {_jtype(full)}")
        names = [f"{f.view}__{f.name}" if full else f.name for f in read.features]
        if not full and len(read.parts) > 1:
            dup = sorted({x for x in names if names.count(x) > 1})
            raise HTTPError(400, f"feature name(s) {', '.join(dup)} come from more than one view: set full_feature_names")
        return read, rows, names

    async def features_online(self, request) -> Answer:
        doc = await self.body(request)
        read, rows, names = self.parse(doc, "service")
        t = read_time(doc.get("at"))
        cols = await self.store_call(self.reader.get(self.client, read, rows, t))
        self.entity_rows["/features/online"].inc(len(rows))
        keys = [*read.join_keys, *names]
        if len(read.parts) == 1 and keys == list(cols):
            values = cols.values()
        else:
            values = [*(cols[k] for k in read.join_keys), *self.reader.feature_columns(read, cols)]
        out_rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*values, strict=True)]
        out = {"service": read.service, "at": _feast_ts(t), "join_keys": list(read.join_keys), "features": names, "rows": out_rows}
        return Answer(200, _encode(out))

    async def get_online_features(self, request) -> Answer:
        doc = await self.body(request)
        read, rows, names = self.parse(doc, "feature_service")
        t = time.time_ns() // 1000
        cols = await self.store_call(self.reader.get(self.client, read, rows, t))
        self.entity_rows["/get-online-features"].inc(len(rows))
        n = len(rows)
        ts = _feast_ts(t)
        present, epoch = ["PRESENT"] * n, [EPOCH_TS] * n
        results = [{"values": cols[k], "statuses": present, "event_timestamps": epoch} for k in read.join_keys]
        for f, col in zip(read.features, self.reader.feature_columns(read, cols), strict=True):
            if f.dtype == "timestamp":  # Feast's unix_timestamp_val: epoch seconds
                col = [None if v is None else int(v.timestamp()) for v in col]
            elif f.dtype == "list<timestamp>":  # unix_timestamp_list_val
                col = [None if v is None else [int(x.timestamp()) for x in v] for v in col]
            if None in col:
                statuses = ["NOT_FOUND" if v is None else "PRESENT" for v in col]
                stamps = [EPOCH_TS if v is None else ts for v in col]
            else:
                statuses, stamps = present, [ts] * n
            results.append({"values": col, "statuses": statuses, "event_timestamps": stamps})
        out = {"results": results, "metadata": {"feature_names": [*read.join_keys, *names]}}
        return Answer(200, _encode(out))

    async def health(self, request) -> Answer:
        return Answer(200, b'{"status":"ok"}')

    async def ready(self, request) -> Answer:
        from ..online.layout import FORMAT

        try:
            st = await self.store_call(asyncio.wait_for(self.reader.store.read_state_async(self.client), self.cfg.timeout_s))
        except HTTPError as e:
            return Answer(503, _encode({"status": "unavailable", "error": e.message}))
        if st is None or not st.id:
            why = (
                "the online store holds no featureline data: never bootstrapped, or Redis lost its data (restarted without "
                "persistence, flushed, or failed over to an empty replica); rebuild it with `featureline backfill --to online` "
                "then `featureline stream`"
            )
            return Answer(503, _encode({"status": "unavailable", "error": why}))
        if st.state == "building":
            why = "a backfill to online is writing the store (its values are incomplete until it finishes)"
            return Answer(503, _encode({"status": "unavailable", "error": why}))
        if st.format != FORMAT:
            why = (
                f"the online store was written in store format {st.format or '1'} by an older featureline; this server reads "
                f"format {FORMAT}: rewrite it with `featureline backfill --to online`"
            )
            return Answer(503, _encode({"status": "unavailable", "error": why}))
        return Answer(200, b'{"status":"ready"}')

    async def metrics_text(self, request) -> Answer:
        data, ctype = self.metrics.render()
        return Answer(200, data, (), ctype.encode())

    async def warm_up(self) -> None:
        """Read each service once (connections open, read plans built), so the first request is not slower."""
        for name, read in self.reader._services.items():
            row = {k: {"integer": 0, "number": 0, "boolean": False}.get(self.reader.key_types.get(k, ""), "") for k in read.join_keys}
            try:
                await self.store_call(self.reader.get(self.client, read, [row], time.time_ns() // 1000))
            except HTTPError as e:  # Redis may come up later: /ready says so
                log.warning("warm-up read of %s: %s", name, e.message)
                return

    async def openapi_json(self, request) -> Answer:
        return Answer(200, self.schema)
