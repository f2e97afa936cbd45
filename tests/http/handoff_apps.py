"""An app behind ``Handoff`` (http/_handoff.py), served by tests/http/test_handoff.py.

``Marks``, a pure ASGI middleware inside the handoff, adds a header, sets a
context variable for the request and resets it on its way out, and records
when its call returned. A stream named ``{name}`` sends the context variable
as it sees it, then waits for ever, and records when its ``finally`` ran;
``GET /state/{name}`` tells the tests.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from askstream import EventStreamResponse, ShutdownMiddleware
from askstream.http._handoff import Handoff

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")
returned: dict[str, float] = {}
closed: dict[str, float] = {}


class Marks:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = scope["path"].rsplit("/", 1)[-1]

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-marked", name.encode())]
            await send(message)

        token = REQUEST.set(name)
        try:
            await self.app(scope, receive, marked)
        finally:
            REQUEST.reset(token)
            returned[name] = time.monotonic()


async def stream(request: Request) -> Response:
    name = request.path_params["name"]

    async def source() -> AsyncIterator[str]:
        try:
            yield f"request={REQUEST.get()}"
            await asyncio.Event().wait()
        finally:
            closed[name] = time.monotonic()

    return EventStreamResponse(source(), ping=None)


async def state(request: Request) -> Response:
    name = request.path_params["name"]
    return JSONResponse({"returned": name in returned, "closed": name in closed})


async def _pass_through(request: Request, call_next: RequestResponseEndpoint) -> Response:
    return await call_next(request)


# BaseHTTPMiddleware relays the response from a task of its own and ends it
# when the handler returns: no place for a handoff.
wrapped = Starlette(
    routes=[Route("/stream/{name}", stream)],
    middleware=[Middleware(BaseHTTPMiddleware, dispatch=_pass_through)],
)

app = Handoff(
    Starlette(
        routes=[
            Mount("/wrapped", wrapped),
            Route("/stream/{name}", stream),
            Route("/state/{name}", state),
        ],
        middleware=[Middleware(Marks), Middleware(ShutdownMiddleware)],
    )
)
