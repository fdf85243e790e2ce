"""`featureline serve`: online features over HTTP (Starlette on uvicorn), on top of `OnlineStore`.

    POST /features/online     {"service": "fraud_detection", "entities": [{"user_id": 42, "merchant_id": 7}]}
    POST /get-online-features Feast's request and response shape, so a Feast client can switch servers
    GET  /health              the process is up
    GET  /ready               the store holds featureline's data (online/state.py marker), 503 with the reason otherwise
    GET  /metrics             Prometheus text: latency histogram per endpoint, requests by status, Redis errors
    GET  /openapi.json        the OpenAPI 3.1 document of the endpoints above

Each request is validated against the plan before Redis is asked (service or feature refs,
join keys and their logical types, the number of entity rows) and answered with a JSON error
`{"error": "..."}` and a 4xx status when it is wrong; Redis unreachable is a 503. A read is one
`OnlineStore.get`, i.e. one EVALSHA, called inline on the event loop (measured faster than a
threadpool hop for these sub-millisecond reads; `--workers` scales across cores). docs/online.md,
section HTTP, has the shapes and the numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from .online.store import OnlineError, OnlineStore
from .plan import FeaturePlan, Plan, ServicePlan
from .timeutil import to_us

log = logging.getLogger("featureline.serve")

DEFAULT_PORT = 6566  # Feast's
MAX_ENTITIES = 1000
MAX_BODY = 4 << 20  # bytes: 1000 rows need ~50 kB
REDIS_TIMEOUT_S = 2.0
EPOCH_TS = "1970-01-01T00:00:00Z"  # Feast's event timestamp of a value it did not find (and of join keys)
ENDPOINTS = ("/features/online", "/get-online-features", "/health", "/ready", "/metrics", "/openapi.json")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- reads: validation and the ad-hoc feature lists ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Read:
    """What one request reads: one or more (store, service) parts, each one EVALSHA, whose
    outputs are disjoint; `features` in output order, `join_keys` every row must carry."""

    parts: tuple[tuple[OnlineStore, str], ...]
    features: tuple[FeaturePlan, ...]
    join_keys: tuple[str, ...]
    service: str | None = None


_CHECKS = {
    "integer": (lambda v: type(v) is int, "an integer"),
    "string": (lambda v: type(v) is str, "a string"),
    "number": (lambda v: type(v) in (int, float), "a number"),
    "boolean": (lambda v: type(v) is bool, "a boolean"),
}
_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object", type(None): "null"}


def connect(plan: Plan, timeout: float = REDIS_TIMEOUT_S):
    """A Redis client for serving: bounded timeouts and one immediate retry (a stale
    connection after a Redis restart), so a Redis outage answers 503 quickly."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    env = plan.project.redis_password_env
    password = os.environ.get(env) if env else None
    return redis.Redis.from_url(
        plan.project.redis_url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


class Reader:
    """Turns a request's service or feature list and entities into validated OnlineStore reads."""

    def __init__(self, plan: Plan, client=None, *, max_entities: int = MAX_ENTITIES):
        self.plan = plan
        self.client = client if client is not None else connect(plan)
        self.max_entities = max_entities
        self.store = OnlineStore(plan, client=self.client, max_rows=max_entities)
        self.key_types: dict[str, str] = {}
        for e in plan.entities.values():
            for k, t in zip(e.join_keys, e.key_types, strict=False):
                self.key_types.setdefault(k, t)
        self._services = {
            name: Read(((self.store, name),), tuple(plan.feature(r) for r in s.features), tuple(s.join_keys), name)
            for name, s in plan.services.items()
        }
        self._lists: dict[tuple[str, ...], Read] = {}
        self._lock = threading.Lock()

    # what to read
    def for_service(self, name: Any) -> Read:
        if not isinstance(name, str):
            raise HTTPError(400, f"`service` must be a string, got {_jtype(name)}")
        read = self._services.get(name)
        if read is None:
            from .errors import did_you_mean

            hint = did_you_mean(name, self.plan.services)
            known = ", ".join(self.plan.services)
            raise HTTPError(404, f"no feature service `{name}`" + (f" ({hint})" if hint else f" (services: {known})"))
        return read

    def for_features(self, refs: Any) -> Read:
        """A read of a list of "view:feature" refs, built once per distinct list (an ad-hoc
        service per group of refs whose names do not clash) and cached."""
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise HTTPError(400, '`features` must be a non-empty list of "view:feature" strings')
        key = tuple(refs)
        read = self._lists.get(key)
        if read is not None:
            return read
        feats = [self._feature(r) for r in refs]
        seen: set[str] = set()
        for r in refs:
            if r in seen:
                raise HTTPError(400, f"feature `{r}` is requested twice")
            seen.add(r)
        groups: list[list[FeaturePlan]] = []  # each group: unique output names (a store returns features by name)
        for f in feats:
            for g in groups:
                if all(x.name != f.name for x in g):
                    g.append(f)
                    break
            else:
                groups.append([f])
        join_keys: list[str] = []
        parts = []
        for i, g in enumerate(groups):
            keys: list[str] = []
            for f in g:
                for k in self.plan.views[f.view].join_keys:
                    if k not in keys:
                        keys.append(k)
            name = f"__features_{i}__"
            svc = ServicePlan(name, tuple(f.ref for f in g), tuple(keys))
            plan = dataclasses.replace(self.plan, services={**self.plan.services, name: svc})
            parts.append((OnlineStore(plan, client=self.client, max_rows=self.max_entities), name))
            join_keys += [k for k in keys if k not in join_keys]
        read = Read(tuple(parts), tuple(feats), tuple(join_keys))
        with self._lock:
            if len(self._lists) >= 256:
                self._lists.pop(next(iter(self._lists)))
            self._lists[key] = read
        return read

    def _feature(self, ref: str) -> FeaturePlan:
        from .errors import did_you_mean

        view_name, sep, name = ref.partition(":")
        if not sep:
            raise HTTPError(400, f'feature `{ref}`: write "view:feature"')
        view = self.plan.views.get(view_name)
        if view is None:
            hint = did_you_mean(view_name, self.plan.views)
            raise HTTPError(404, f"feature `{ref}`: no feature view `{view_name}`" + (f" ({hint})" if hint else ""))
        f = view.feature(name)
        if f is None:
            hint = did_you_mean(name, [x.name for x in view.features])
            raise HTTPError(404, f"feature `{ref}`: view `{view_name}` has no feature `{name}`" + (f" ({hint})" if hint else ""))
        if not view.online:
            raise HTTPError(400, f"feature `{ref}`: view `{view_name}` is not served online")
        return f

    # the entities
    def rows(self, read: Read, entities: Any) -> list[dict]:
        """Validate `entities` (a list of rows or a dict of columns) against the read's join
        keys and their types; return the rows."""
        jk = read.join_keys
        if isinstance(entities, dict):
            extra = [k for k in entities if k not in jk]
            if extra:
                raise HTTPError(422, f"unknown join key(s) {', '.join(map(repr, extra))} in `entities` (expected {', '.join(jk)})")
            missing = [k for k in jk if k not in entities]
            if missing:
                raise HTTPError(422, f"`entities` lacks join key(s) {', '.join(missing)}")
            cols = [entities[k] for k in jk]
            for k, c in zip(jk, cols, strict=True):
                if not isinstance(c, list):
                    raise HTTPError(422, f"`entities.{k}` must be a list of values, got {_jtype(c)}")
            n = len(cols[0]) if cols else 0
            if any(len(c) != n for c in cols):
                raise HTTPError(
                    422, "entity columns have different lengths: " + ", ".join(f"{k} {len(c)}" for k, c in zip(jk, cols, strict=True))
                )
            self._check_count(n)
            for k, c in zip(jk, cols, strict=True):
                check = _CHECKS.get(self.key_types.get(k, ""))
                if check is not None:
                    for i, v in enumerate(c):
                        if not check[0](v):
                            raise HTTPError(422, f"entity row {i}: join key `{k}` must be {check[1]}, got {_show(v)}")
            return [dict(zip(jk, vals, strict=True)) for vals in zip(*cols, strict=True)]
        if isinstance(entities, list):
            self._check_count(len(entities))
            checks = [(k, _CHECKS.get(self.key_types.get(k, ""))) for k in jk]
            width = len(jk)
            for i, row in enumerate(entities):
                if not isinstance(row, dict):
                    raise HTTPError(422, f"entity row {i} must be an object of join keys, got {_jtype(row)}")
                for k, check in checks:
                    if k not in row:
                        raise HTTPError(422, f"entity row {i} lacks join key `{k}` (expected {', '.join(jk)})")
                    if check is not None and not check[0](row[k]):
                        raise HTTPError(422, f"entity row {i}: join key `{k}` must be {check[1]}, got {_show(row[k])}")
                if len(row) != width:
                    extra = [k for k in row if k not in jk]
                    raise HTTPError(422, f"entity row {i} has unknown key(s) {', '.join(map(repr, extra))} (expected {', '.join(jk)})")
            return entities
        raise HTTPError(400, f"`entities` must be a list of objects or an object of columns, got {_jtype(entities)}")

    def _check_count(self, n: int) -> None:
        if n > self.max_entities:
            raise HTTPError(413, f"{n} entity rows in one request; the limit is {self.max_entities}")

    # the read
    def get(self, read: Read, rows: list[dict], at_us: int) -> dict[str, list]:
        """Columns: join keys, then the read's features by name (one EVALSHA per part)."""
        if not rows:
            return {k: [] for k in (*read.join_keys, *(f.name for f in read.features))}
        if len(read.parts) == 1:
            store, name = read.parts[0]
            return store.get(name, rows, at_us=at_us)
        out: dict[str, list] = {k: [r[k] for r in rows] for k in read.join_keys}
        for i, (store, name) in enumerate(read.parts):
            cols = store.get(name, rows, at_us=at_us)
            for k, v in cols.items():
                if k not in read.join_keys:
                    out[f"{i}\0{k}"] = v  # part-qualified: names may repeat across parts
        return out

    def feature_columns(self, read: Read, cols: dict[str, list]) -> list[list]:
        """The read's feature columns in request order."""
        if len(read.parts) == 1:
            return [cols[f.name] for f in read.features]
        where = {}
        for i, (store, name) in enumerate(read.parts):
            for ref in store.plan.services[name].features:
                where[ref] = i
        return [cols[f"{where[f.ref]}\0{f.name}"] for f in read.features]


def _jtype(v: Any) -> str:
    return _JSON_TYPES.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = msgspec.json.encode(v).decode() if type(v) in _JSON_TYPES else repr(v)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({_jtype(v)})"


def _feast_ts(us: int) -> str:
    """Feast's event timestamp text (protobuf JSON): RFC 3339, Z, adaptive sub-second digits."""
    secs, frac = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}Z"


# -- the app ---------------------------------------------------------------------------------


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "featureline_http_request_duration_seconds",
            "Time to answer a request, from routing to the response body (seconds)",
            ["endpoint"],
            buckets=(0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.requests = Counter(
            "featureline_http_requests", "Requests answered, by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.redis_errors = Counter(
            "featureline_redis_errors", "Redis errors while serving, by exception", ["error"], registry=self.registry
        )
        self.entities = Counter("featureline_entity_rows", "Entity rows read, by endpoint", ["endpoint"], registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = self.registry
        if self.multiprocess:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def create_app(project: str | Path | Plan = ".", *, client=None, max_entities: int = MAX_ENTITIES):
    """The Starlette app serving `project` (a path or a compiled plan)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    if isinstance(project, Plan):
        plan = project
    else:
        from .compiler import compile_project

        plan = compile_project(project)
    reader = Reader(plan, client, max_entities=max_entities)
    metrics = Metrics()
    from redis.exceptions import BusyLoadingError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    unavailable = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
    JSON = "application/json"

    def error(status: int, message: str) -> Response:
        return Response(_encode({"error": message}), status, media_type=JSON)

    async def body(request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY:
            raise HTTPError(413, f"request body of {int(size):,} bytes; the limit is {MAX_BODY:,}")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPError(413, f"request body of {len(raw):,} bytes; the limit is {MAX_BODY:,}")
        try:
            doc = _decode(raw)
        except msgspec.DecodeError as e:
            raise HTTPError(400, f"malformed JSON: {e}" if raw else "empty body: send a JSON object") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, f"the request body must be a JSON object, got {_jtype(doc)}")
        return doc

    def measured(endpoint: str, fn):
        hist = metrics.latency.labels(endpoint)
        by_status: dict[int, Any] = {}

        async def handler(request):
            t0 = time.perf_counter()
            try:
                resp = await fn(request)
            except HTTPError as e:
                resp = error(e.status, e.message)
            except OnlineError as e:  # the store's own checks (should be caught above)
                resp = error(422, str(e))
            except RedisError as e:
                metrics.redis_errors.labels(type(e).__name__).inc()
                if isinstance(e, unavailable):
                    resp = error(503, f"the online store is unavailable: {e}")
                else:
                    log.exception("redis error on %s", endpoint)
                    resp = error(500, f"online store error: {e}")
            except Exception as e:
                log.exception("error on %s", endpoint)
                resp = error(500, f"internal error: {type(e).__name__}: {e}")
            c = by_status.get(resp.status_code)
            if c is None:
                c = by_status[resp.status_code] = metrics.requests.labels(endpoint, str(resp.status_code))
            c.inc()
            hist.observe(time.perf_counter() - t0)
            return resp

        return handler

    def read_of(doc: dict, service_field: str) -> Read:
        if doc.get(service_field) is not None:
            return reader.for_service(doc[service_field])
        if doc.get("features") is not None:
            return reader.for_features(doc["features"])
        raise HTTPError(400, f'name a `{service_field}` or a list of `features` ("view:feature")')

    entity_rows = {e: metrics.entities.labels(e) for e in ENDPOINTS[:2]}

    def parse(doc: dict, service_field: str) -> tuple[Read, list[dict], list[str]]:
        """Everything checked before Redis is asked: what to read, the rows, the output names."""
        read = read_of(doc, service_field)
        if "entities" not in doc:
            raise HTTPError(400, "missing `entities`")
        rows = reader.rows(read, doc["entities"])
        full = doc.get("full_feature_names", False)
        if not isinstance(full, bool):
            raise HTTPError(400, f"`full_feature_names` must be a boolean, got {_jtype(full)}")
        names = [f"{f.view}__{f.name}" if full else f.name for f in read.features]
        if not full and len(read.parts) > 1:
            dup = sorted({x for x in names if names.count(x) > 1})
            raise HTTPError(400, f"feature name(s) {', '.join(dup)} come from more than one view: set full_feature_names")
        return read, rows, names

    async def features_online(request):
        doc = await body(request)
        read, rows, names = parse(doc, "service")
        at = doc.get("at")
        if at is None:
            t = time.time_ns() // 1000
        else:
            try:
                if isinstance(at, bool) or not isinstance(at, (str, int)):
                    raise ValueError(f"`at` must be an ISO 8601 string or epoch microseconds, got {_jtype(at)}")
                t = to_us(at)
            except ValueError as e:
                raise HTTPError(422, str(e)) from None
        cols = reader.get(read, rows, t)  # inline: see the module docstring
        entity_rows["/features/online"].inc(len(rows))
        keys = [*read.join_keys, *names]
        if len(read.parts) == 1 and keys == list(cols):
            values = cols.values()
        else:
            values = [*(cols[k] for k in read.join_keys), *reader.feature_columns(read, cols)]
        out_rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*values, strict=True)]
        out = {"service": read.service, "at": _feast_ts(t), "join_keys": list(read.join_keys), "features": names, "rows": out_rows}
        return Response(_encode(out), media_type=JSON)

    async def get_online_features(request):
        doc = await body(request)
        read, rows, names = parse(doc, "feature_service")
        t = time.time_ns() // 1000
        cols = reader.get(read, rows, t)
        entity_rows["/get-online-features"].inc(len(rows))
        n = len(rows)
        ts = _feast_ts(t)
        present, epoch = ["PRESENT"] * n, [EPOCH_TS] * n
        results = [{"values": cols[k], "statuses": present, "event_timestamps": epoch} for k in read.join_keys]
        for f, col in zip(read.features, reader.feature_columns(read, cols), strict=True):
            if f.dtype == "timestamp":  # Feast's unix_timestamp_val: epoch seconds
                col = [None if v is None else int(v.timestamp()) for v in col]
            if None in col:
                statuses = ["NOT_FOUND" if v is None else "PRESENT" for v in col]
                stamps = [EPOCH_TS if v is None else ts for v in col]
            else:
                statuses, stamps = present, [ts] * n
            results.append({"values": col, "statuses": statuses, "event_timestamps": stamps})
        out = {"results": results, "metadata": {"feature_names": [*read.join_keys, *names]}}
        return Response(_encode(out), media_type=JSON)

    async def health(request):
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def ready(request):
        from .online.state import read_state, where

        try:
            st = read_state(reader.client, plan.project.redis_key_prefix)
        except RedisError as e:
            metrics.redis_errors.labels(type(e).__name__).inc()
            return Response(_encode({"status": "unavailable", "error": f"redis at {where(reader.client)}: {type(e).__name__}"}), 503, media_type=JSON)
        if st is None or not st.id:
            why = (
                "the online store holds no featureline data: never bootstrapped, or Redis lost its data (restarted without "
                "persistence, flushed, or failed over to an empty replica); rebuild it with `featureline backfill --to online` "
                "then `featureline stream`"
            )
            return Response(_encode({"status": "unavailable", "error": why}), 503, media_type=JSON)
        if st.state == "building":
            why = "a backfill to online is writing the store (its values are incomplete until it finishes)"
            return Response(_encode({"status": "unavailable", "error": why}), 503, media_type=JSON)
        return Response(b'{"status":"ready"}', media_type=JSON)

    async def metrics_text(request):
        data, ctype = metrics.render()
        return Response(data, media_type=ctype)

    schema = _encode(openapi(plan, max_entities))

    async def openapi_json(request):
        return Response(schema, media_type=JSON)

    def warm_up() -> None:
        """Build each service's read and load its script, so the first request is not slower."""
        for name, read in reader._services.items():
            row = {k: {"integer": 0, "number": 0, "boolean": False}.get(reader.key_types.get(k, ""), "") for k in read.join_keys}
            try:
                reader.get(read, [row], time.time_ns() // 1000)
            except Exception as e:  # Redis may come up later: /ready says so
                log.warning("warm-up read of %s failed: %s", name, e)
                return

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        warm_up()
        yield
        try:
            reader.client.close()
        except Exception:
            pass

    routes = [
        Route("/features/online", measured("/features/online", features_online), methods=["POST"]),
        Route("/get-online-features", measured("/get-online-features", get_online_features), methods=["POST"]),
        Route("/health", measured("/health", health), methods=["GET"]),
        Route("/ready", measured("/ready", ready), methods=["GET"]),
        Route("/metrics", measured("/metrics", metrics_text), methods=["GET"]),
        Route("/openapi.json", measured("/openapi.json", openapi_json), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.reader = reader
    app.state.metrics = metrics
    app.state.plan = plan
    return app


def app_from_env():
    """The app factory uvicorn's worker processes call (`--workers N`): project from FEATURELINE_PROJECT."""
    return create_app(
        os.environ.get("FEATURELINE_PROJECT", "."), max_entities=int(os.environ.get("FEATURELINE_MAX_ENTITIES", MAX_ENTITIES))
    )


def run(
    project: str | Path = ".", *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, workers: int = 1, max_entities: int = MAX_ENTITIES
) -> None:
    """Serve until SIGINT/SIGTERM. uvicorn picks uvloop and httptools when installed; no access log."""
    import uvicorn

    from .compiler import compile_project

    plan = compile_project(project)  # fail fast, in the parent, on a broken project
    common = dict(host=host, port=port, access_log=False, log_level="info", server_header=False, date_header=False)
    if workers <= 1:
        uvicorn.run(create_app(plan, max_entities=max_entities), **common)
        return
    import shutil
    import tempfile

    os.environ["FEATURELINE_PROJECT"] = str(Path(plan.project.root).resolve())
    os.environ["FEATURELINE_MAX_ENTITIES"] = str(max_entities)
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one /metrics over every worker
        own_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="featureline-metrics-")
    try:
        uvicorn.run("featureline.serve:app_from_env", factory=True, workers=workers, **common)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


# -- OpenAPI ----------------------------------------------------------------------------------


def openapi(plan: Plan, max_entities: int = MAX_ENTITIES) -> dict:
    err = {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    key_props = {}
    for e in plan.entities.values():
        for k, t in zip(e.join_keys, e.key_types, strict=False):
            key_props[k] = {"type": {"integer": "integer", "string": "string", "number": "number", "boolean": "boolean"}.get(t, "string")}
    services = list(plan.services)
    entities = {
        "description": f"Entity rows (a list of objects of join keys) or columns (an object of lists); at most {max_entities} rows.",
        "oneOf": [
            {"type": "array", "maxItems": max_entities, "items": {"type": "object", "properties": key_props}},
            {"type": "object", "properties": {k: {"type": "array", "items": v} for k, v in key_props.items()}},
        ],
    }
    features = {
        "type": "array",
        "items": {"type": "string", "pattern": "^[^:]+:[^:]+$"},
        "description": 'Feature refs "view:feature" (instead of a service).',
    }

    def post(summary, req, resp_ref):
        return {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "content": {"application/json": {"schema": req}}},
                "responses": {
                    "200": {"description": "Feature values", "content": {"application/json": {"schema": {"$ref": resp_ref}}}},
                    "400": err,
                    "404": err,
                    "413": err,
                    "422": err,
                    "503": err,
                },
            }
        }

    def get(summary, ok, ctype="application/json", extra=None):
        responses = {"200": {"description": ok, "content": {ctype: {}}}}
        responses.update(extra or {})
        return {"get": {"summary": summary, "responses": responses}}

    return {
        "openapi": "3.1.0",
        "info": {"title": f"featureline online features: {plan.project.name}", "version": "1"},
        "paths": {
            "/features/online": post(
                "A feature service's (or a feature list's) values for entity rows, as of now",
                {
                    "type": "object",
                    "properties": {
                        "service": {"type": "string", "enum": services},
                        "features": features,
                        "entities": entities,
                        "full_feature_names": {"type": "boolean", "default": False, "description": "Name features view__feature"},
                        "at": {
                            "type": ["string", "integer"],
                            "description": "Read time (ISO 8601 or epoch microseconds); default now. For debugging.",
                        },
                    },
                    "required": ["entities"],
                },
                "#/components/schemas/FeaturesOnlineResponse",
            ),
            "/get-online-features": post(
                "Feast's feature server endpoint: same request and response shape",
                {
                    "type": "object",
                    "properties": {
                        "feature_service": {"type": "string", "enum": services},
                        "features": features,
                        "entities": {"type": "object", "properties": {k: {"type": "array", "items": v} for k, v in key_props.items()}},
                        "full_feature_names": {"type": "boolean", "default": False},
                    },
                    "required": ["entities"],
                },
                "#/components/schemas/FeastResponse",
            ),
            "/health": get("The process is up", "Up"),
            "/ready": get("The online store holds featureline's data (a backfill or the stream wrote it, Redis did not lose it)", "Ready", extra={"503": err}),
            "/metrics": get("Prometheus metrics", "Prometheus text format", "text/plain"),
            "/openapi.json": get("This document", "OpenAPI 3.1"),
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "FeaturesOnlineResponse": {
                    "type": "object",
                    "properties": {
                        "service": {"type": ["string", "null"]},
                        "at": {"type": "string", "format": "date-time", "description": "The read time: windowed values are exact as of it"},
                        "join_keys": {"type": "array", "items": {"type": "string"}},
                        "features": {"type": "array", "items": {"type": "string"}},
                        "rows": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "description": "join keys, then features by name; timestamps ISO 8601; null = no value",
                            },
                        },
                    },
                },
                "FeastResponse": {
                    "type": "object",
                    "properties": {
                        "metadata": {"type": "object", "properties": {"feature_names": {"type": "array", "items": {"type": "string"}}}},
                        "results": {
                            "type": "array",
                            "description": "One per name in metadata.feature_names (join keys first), each with one entry per entity row",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "values": {"type": "array"},
                                    "statuses": {"type": "array", "items": {"type": "string", "enum": ["PRESENT", "NOT_FOUND"]}},
                                    "event_timestamps": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
