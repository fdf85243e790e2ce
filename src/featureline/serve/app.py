"""The app of `featureline serve`: routes, limits, authentication, errors.

Every request is bounded before it costs anything: the body is read in chunks up to `max_body`
within `body_timeout` (413/408), then decoded and validated (`reader.py`, 4xx); a read waits on
Redis through `redis.asyncio` for at most `timeout` (then 503), so a slow or dead Redis never
holds up the event loop (`/health` answers meanwhile). Answers never carry credentials, hosts or
tracebacks; an unexpected error is a 500 saying only that, logged with its traceback at most once a
minute per kind (one line otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from typing import Any

import msgspec

from ..online.store import OnlineError
from ..plan import Plan, ServePlan
from .metrics import Metrics
from .reader import HTTPError, Read, Reader, _feast_ts, _jtype, read_time

log = logging.getLogger("featureline.serve")

EPOCH_TS = "1970-01-01T00:00:00Z"  # Feast's event timestamp of a value it did not find (and of join keys)
ENDPOINTS = ("/features/online", "/get-online-features", "/health", "/ready", "/metrics", "/openapi.json")
OPEN = ("/health", "/ready")  # never behind a token: load balancers probe them
POOL = 64  # Redis connections per worker; a request waits at most `timeout` for one
CLOSE = ((b"connection", b"close"),)  # after a refused body: do not read the rest of it

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class ServeError(Exception):
    """The server cannot start (e.g. a token's environment variable is not set)."""


def tokens(settings: ServePlan, env=os.environ) -> list[bytes]:
    """The bearer tokens, from their environment variables (the plan holds only the names)."""
    out = []
    for name in settings.auth_token_envs:
        value = env.get(name, "")
        if len(value) < 16:
            what = "is not set" if not value else f"holds {len(value)} characters"
            raise ServeError(f"serve.auth_tokens: environment variable {name} {what}; a token needs at least 16")
        out.append(value.encode())
    return out


def authorized(header: str | None, accepted: list[bytes]) -> bool:
    """Constant time in the token: every accepted token is compared, whatever matched."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header[7:].strip().encode()
    ok = False
    for t in accepted:
        ok |= hmac.compare_digest(given, t)
    return ok


class _Limited:
    """Log a traceback at most once per `every` seconds per kind, a line otherwise."""

    def __init__(self, every: float = 60.0):
        self.every = every
        self.last: dict[str, float] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) >= self.every:
            self.last[kind] = now
            log.exception("%s (tracebacks of %s: at most one a minute)", message, kind)
        else:
            log.error("%s", message)


def create_app(project: Any = ".", *, max_entities: int | None = None, settings: ServePlan | None = None):
    """The ASGI app serving `project` (a path or a compiled plan)."""
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeout

    from ..online.store import connect_async
    from .asgi import Answer, App, Disconnected
    from .http import configure, too_large
    from .openapi import openapi

    if isinstance(project, Plan):
        plan = project
    else:
        from ..compiler import compile_project

        plan = compile_project(project)
    cfg = settings or plan.project.serve
    if max_entities is not None:
        cfg = ServePlan(**{**cfg.__dict__, "max_entities": max_entities})
    configure(cfg.header_timeout_s, cfg.max_body, cfg.body_timeout_s, cfg.refusal_delay_s)
    accepted = tokens(cfg)
    reader = Reader(plan, max_entities=cfg.max_entities, max_features=cfg.max_features)
    metrics = Metrics()
    limited = _Limited()
    redis: dict[str, Any] = {}  # the redis.asyncio client, made on the event loop (lifespan)

    def error(status: int, message: str, headers: tuple = ()) -> Answer:
        return Answer(status, _encode({"error": message}), headers)

    async def body(request) -> dict:
        size = request.header("content-length")
        if size is not None:
            if not size.isdigit():
                raise HTTPError(400, "Content-Length must be a number of bytes")
            why = too_large(size, cfg.max_body)  # the protocol refuses these first; another server may not
            if why:
                raise HTTPError(413, why)
        try:
            raw = request.body  # http.py's protocol passes a body on once complete, within its limits
            if raw is None:  # another ASGI server's chunks: bounded here
                chunks, n = [], 0
                async with asyncio.timeout(cfg.body_timeout_s):
                    async for chunk in request.chunks():
                        n += len(chunk)
                        if n > cfg.max_body:
                            raise HTTPError(413, f"request body over {cfg.max_body:,} bytes (the limit)")
                        chunks.append(chunk)
                raw = b"".join(chunks)
        except TimeoutError:
            raise HTTPError(408, f"request body not received within {cfg.body_timeout_s:g}s") from None
        except Disconnected:  # nobody will read the answer; nothing to log
            raise HTTPError(400, "the client left before sending its whole body") from None
        try:
            doc = _decode(raw)
        except msgspec.DecodeError as e:
            raise HTTPError(400, f"malformed JSON: {str(e)[:120]}" if raw else "empty body: send a JSON object") from None
        except RecursionError:
            raise HTTPError(400, "malformed JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, f"the request body must be a JSON object, got {_jtype(doc)}")
        return doc

    async def store_call(coro):
        """A Redis call (bounded by `timeout`: `AsyncRedis` bounds its reads, `ready` its own
        command): late or failed -> 503 naming only the kind of error."""
        try:
            return await coro
        except (TimeoutError, RedisTimeout):
            metrics.redis_errors.labels("TimeoutError").inc()
            raise HTTPError(503, f"the online store did not answer within {cfg.timeout_s:g}s") from None
        except RedisError as e:
            kind = type(e).__name__
            metrics.redis_errors.labels(kind).inc()
            raise HTTPError(503, f"the online store is unavailable ({kind})") from None

    def measured(endpoint: str, fn):
        hist = metrics.latency.labels(endpoint)
        by_status: dict[int, Any] = {}
        guarded = bool(accepted) and endpoint not in OPEN

        async def handler(request):
            t0 = time.perf_counter()
            try:
                if guarded and not authorized(request.header("authorization"), accepted):
                    resp = error(401, "missing or wrong bearer token", ((b"www-authenticate", b"Bearer"),))
                else:
                    resp = await fn(request)
            except HTTPError as e:
                resp = error(e.status, e.message, CLOSE if e.status in (408, 413) else ())
            except OnlineError as e:  # the store's own checks (the reader's should catch them first)
                resp = error(422, str(e)[:200])
            except Exception as e:
                limited(type(e).__name__, f"internal error on {endpoint}: {type(e).__name__}")
                resp = error(500, "internal error")
            c = by_status.get(resp.status)
            if c is None:
                c = by_status[resp.status] = metrics.requests.labels(endpoint, str(resp.status))
            c.inc()
            hist.observe(time.perf_counter() - t0)
            return resp

        return handler

    def read_of(doc: dict, service_field: str) -> Read:
        service, features = doc.get(service_field), doc.get("features")
        if service is not None:
            if features is not None:
                if service_field == "service":
                    raise HTTPError(400, "name a `service` or a list of `features`, not both")
                reader.for_features(features)  # Feast's shape: the service wins, but the list must be valid
            return reader.for_service(service)
        if features is not None:
            return reader.for_features(features)
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
        t = read_time(doc.get("at"))
        cols = await store_call(reader.get(redis["client"], read, rows, t))
        entity_rows["/features/online"].inc(len(rows))
        keys = [*read.join_keys, *names]
        if len(read.parts) == 1 and keys == list(cols):
            values = cols.values()
        else:
            values = [*(cols[k] for k in read.join_keys), *reader.feature_columns(read, cols)]
        out_rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*values, strict=True)]
        out = {"service": read.service, "at": _feast_ts(t), "join_keys": list(read.join_keys), "features": names, "rows": out_rows}
        return Answer(200, _encode(out))

    async def get_online_features(request):
        doc = await body(request)
        read, rows, names = parse(doc, "feature_service")
        t = time.time_ns() // 1000
        cols = await store_call(reader.get(redis["client"], read, rows, t))
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
        return Answer(200, _encode(out))

    async def health(request):
        return Answer(200, b'{"status":"ok"}')

    async def ready(request):
        from ..online.state import marker_key, state_from

        try:
            hgetall = redis["client"].client.hgetall(marker_key(plan.project.redis_key_prefix))
            st = state_from(await store_call(asyncio.wait_for(hgetall, cfg.timeout_s)))
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
        return Answer(200, b'{"status":"ready"}')

    async def metrics_text(request):
        data, ctype = metrics.render()
        return Answer(200, data, (), ctype.encode())

    schema = _encode(openapi(plan, cfg.max_entities, max_features=cfg.max_features, auth=bool(accepted)))

    async def openapi_json(request):
        return Answer(200, schema)

    async def warm_up() -> None:
        """Read each service once (connections open, read plans built), so the first request is not slower."""
        for name, read in reader._services.items():
            row = {k: {"integer": 0, "number": 0, "boolean": False}.get(reader.key_types.get(k, ""), "") for k in read.join_keys}
            try:
                await store_call(reader.get(redis["client"], read, [row], time.time_ns() // 1000))
            except HTTPError as e:  # Redis may come up later: /ready says so
                log.warning("warm-up read of %s: %s", name, e.message)
                return

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        redis["client"] = connect_async(plan, timeout=cfg.timeout_s, max_connections=POOL)
        await warm_up()
        yield
        await redis["client"].aclose()

    routes = {
        "/features/online": {"POST": measured("/features/online", features_online)},
        "/get-online-features": {"POST": measured("/get-online-features", get_online_features)},
        "/health": {"GET": measured("/health", health)},
        "/ready": {"GET": measured("/ready", ready)},
        "/openapi.json": {"GET": measured("/openapi.json", openapi_json)},
    }
    if cfg.metrics_port is None:
        routes["/metrics"] = {"GET": measured("/metrics", metrics_text)}

    def not_routed(status: int, allowed: str) -> Answer:  # unknown path, wrong method: JSON like every answer
        if status == 404:
            return error(404, "no such endpoint")
        return error(405, "method not allowed", ((b"allow", allowed.encode()),))

    app = App(routes, lifespan, not_routed)
    app.state.reader = reader
    app.state.metrics = metrics
    app.state.plan = plan
    app.state.settings = cfg
    return app
