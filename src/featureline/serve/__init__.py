"""`featureline serve`: online features over HTTP (an ASGI app on uvicorn), on top of `OnlineStore`.

    POST /features/online     {"service": "fraud_detection", "entities": [{"user_id": 42, "merchant_id": 7}]}
    POST /get-online-features Feast's request and response shape, so a Feast client can switch servers
    GET  /health              the process is up
    GET  /ready               the store holds featureline's data (online/state.py marker), 503 with the reason otherwise
    GET  /metrics             Prometheus text (or on `serve.metrics_port`)
    GET  /openapi.json        the OpenAPI 3.1 document of the endpoints above

Parts: `http.py` is the HTTP protocol uvicorn runs (every bound on a request); `asgi.py` the
routes' plumbing (`App`, `Request`, `Answer`); `app.py` wires the routes with bearer tokens,
error answers and metrics; `endpoints.py` answers each; `reader.py` validates a request
against the plan; `metrics.py`; `openapi.py`. Limits, tokens and timeouts come from featureline.yaml's `serve:` section
(docs/security.md); docs/online.md, section HTTP, has the shapes and the numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

from .app import ServeError, create_app
from .reader import HTTPError, Reader

DEFAULT_PORT = 6566  # Feast's

__all__ = ["DEFAULT_PORT", "HTTPError", "Reader", "ServeError", "create_app", "app_from_env", "run", "uvicorn_settings"]


def app_from_env():
    """The app factory uvicorn's worker processes call (`--workers N`): project from FEATURELINE_PROJECT."""
    return create_app(os.environ.get("FEATURELINE_PROJECT", "."))


def uvicorn_settings(settings) -> dict:
    """uvicorn's keyword arguments (`uvicorn.run`, `uvicorn.Config`) under `settings` (a ServePlan)."""
    from .http import HttpProtocol

    return dict(
        http=HttpProtocol,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        proxy_headers=False,  # no client address is used (no access log): X-Forwarded-* need no parsing
        server_header=False,
        date_header=False,
    )


def run(project: str | Path = ".", *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM. uvicorn picks uvloop when installed; no access log."""
    import uvicorn

    from ..compiler import compile_project
    from .app import tokens
    from .metrics import serve_metrics

    plan = compile_project(project)  # fail fast, in the parent, on a broken project
    settings = plan.project.serve
    common = dict(host=host, port=port, log_level="info", **uvicorn_settings(settings))
    if workers <= 1:
        app = create_app(plan)
        if settings.metrics_port is not None:
            serve_metrics(settings.metrics_port, host, app.state.metrics)
        uvicorn.run(app, **common)
        return
    import shutil
    import tempfile

    tokens(settings)  # fail here, not in every worker, on a token that is not set
    os.environ["FEATURELINE_PROJECT"] = str(Path(plan.project.root).resolve())
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one /metrics over every worker
        own_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="featureline-metrics-")
    try:
        if settings.metrics_port is not None:
            serve_metrics(settings.metrics_port, host)
        uvicorn.run("featureline.serve:app_from_env", factory=True, workers=workers, **common)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
