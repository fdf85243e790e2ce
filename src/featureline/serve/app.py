"""The app of `featureline serve`: the routes (endpoints.py answers them), bearer tokens,
error answers, metrics, the lifespan.

Answers never carry credentials, hosts or tracebacks; an unexpected error is a 500 saying only
that, logged with its traceback at most once a minute per kind (one line otherwise).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any

import msgspec

from ..errors import FeaturelineError
from ..online.store import OnlineError
from ..plan import Plan, ServePlan
from .metrics import Metrics
from .reader import HTTPError, Reader

log = logging.getLogger("featureline.serve")

OPEN = ("/health", "/ready")  # never behind a token: load balancers probe them
POOL = 64  # Redis connections per worker; a request waits at most `timeout` for one
CLOSE = ((b"connection", b"close"),)  # after a refused body: do not read the rest of it

_encode = msgspec.json.Encoder().encode


class ServeError(FeaturelineError):
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
    from contextlib import asynccontextmanager

    from ..online.store import connect_async
    from .asgi import Answer, App
    from .endpoints import Endpoints
    from .http import configure
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

    def error(status: int, message: str, headers: tuple = ()) -> Answer:
        return Answer(status, _encode({"error": message}), headers)

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

    schema = _encode(openapi(plan, cfg.max_entities, max_features=cfg.max_features, auth=bool(accepted)))
    ep = Endpoints(plan, cfg, reader, metrics, schema)

    @asynccontextmanager
    async def lifespan(app):
        ep.client = connect_async(plan, timeout=cfg.timeout_s, max_connections=POOL)
        await ep.warm_up()
        yield
        await ep.client.aclose()

    routes = {
        "/features/online": {"POST": measured("/features/online", ep.features_online)},
        "/get-online-features": {"POST": measured("/get-online-features", ep.get_online_features)},
        "/health": {"GET": measured("/health", ep.health)},
        "/ready": {"GET": measured("/ready", ep.ready)},
        "/openapi.json": {"GET": measured("/openapi.json", ep.openapi_json)},
    }
    if cfg.metrics_port is None:
        routes["/metrics"] = {"GET": measured("/metrics", ep.metrics_text)}

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
