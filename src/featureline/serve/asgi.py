"""The ASGI layer of `featureline serve`: exact-path routes, a request's head and body, answers.

Six fixed routes need no framework: Starlette's middleware stack, router and Request/Response
objects were ~13% of the server's py-spy samples at 200 req/s, ~45 us of a feature request
in process. A handler gets a `Request` and returns an `Answer`. `App.dispatch` is what http.py's
protocol calls; `App` is also an ASGI app (the lifespan, and any other ASGI server). HEAD is
served wherever GET is (without a body); an unknown path is a 404, a known one with another
method a 405 naming the allowed ones, both JSON.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable
from typing import NamedTuple

log = logging.getLogger("featureline.serve")

JSON = b"application/json"


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes = JSON


class Disconnected(Exception):
    """The client left before its body was complete."""


class Request:
    """A request as the routes see it: from http.py's protocol (`body` complete) or from any ASGI
    server (`body` None: read `chunks`, bounded by the caller)."""

    __slots__ = ("method", "path", "headers", "body", "receive", "_headers")

    def __init__(self, method: str, path: str, headers: list, body: bytes | None = None, receive=None):
        self.method = method
        self.path = path
        self.headers = headers  # [(lower-case name, value)] as bytes
        self.body = body
        self.receive = receive
        self._headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """A header's first value (`name` in lower case), as Latin-1 text."""
        if self._headers is None:
            h: dict[str, str] = {}
            for k, v in self.headers:
                h.setdefault(k.decode("latin-1"), v.decode("latin-1"))
            self._headers = h
        return self._headers.get(name)

    async def chunks(self):
        """The body's chunks as an ASGI server passes them on."""
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise Disconnected
            body = msg.get("body", b"")
            if body:
                yield body
            if not msg.get("more_body", False):
                return


Handler = Callable[[Request], Awaitable[Answer]]


class App:
    """An ASGI 3 app: `routes` maps a path to {method: handler}; `lifespan` is an async context
    manager factory run around serving; `not_routed(status, allowed)` answers 404/405."""

    def __init__(self, routes: dict[str, dict[str, Handler]], lifespan, not_routed: Callable[[int, str], Answer]):
        self.routes = {p: {**m, **({"HEAD": m["GET"]} if "GET" in m and "HEAD" not in m else {})} for p, m in routes.items()}
        self.lifespan = lifespan
        self.not_routed = not_routed
        self.state = types.SimpleNamespace()

    async def dispatch(self, request: Request) -> Answer:
        methods = self.routes.get(request.path)
        if methods is None:
            return self.not_routed(404, "")
        fn = methods.get(request.method)
        if fn is None:
            return self.not_routed(405, ", ".join(methods))
        return await fn(request)

    async def __call__(self, scope, receive, send) -> None:
        """ASGI, for the lifespan (uvicorn runs it) and for other servers than http.py's."""
        kind = scope["type"]
        if kind == "http":
            answer = await self.dispatch(Request(scope["method"], scope["path"], scope["headers"], None, receive))
            headers = [(b"content-type", answer.content_type), (b"content-length", b"%d" % len(answer.body)), *answer.headers]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket: not served (uvicorn refuses the upgrade when the app returns)

    async def _lifespan(self, receive, send) -> None:
        msg = await receive()
        if msg["type"] != "lifespan.startup":
            return
        try:
            ctx = self.lifespan(self)
            await ctx.__aenter__()
        except BaseException as e:
            from ..secrets import redact

            log.error("startup failed: %s: %s", type(e).__name__, redact(str(e)))
            await send({"type": "lifespan.startup.failed", "message": f"{type(e).__name__}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await ctx.__aexit__(None, None, None)
        except Exception as e:
            await send({"type": "lifespan.shutdown.failed", "message": f"{type(e).__name__}"})
            return
        await send({"type": "lifespan.shutdown.complete"})
