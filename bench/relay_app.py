"""The rivals of ``bench_service.py``: relays a user could write in front of the upstream.

Each answers ``POST /v1/chat/completions`` by streaming the same request to the
upstream (``ASKSTREAM_RELAY_UPSTREAM``, its base URL) and writing every
``data:`` line it gets back as one event, the bytes unchanged: no history, no
log, no resume, no cancel.

* ``relay_app:httpx_relay``: the endpoint people write by hand, FastAPI with a
  shared ``httpx.AsyncClient``, ``client.stream`` and ``aiter_lines``, and a
  ``StreamingResponse`` yielding ``data: ...\\n\\n`` per chunk;
* ``relay_app:sse_starlette_relay``: the same with sse-starlette's
  ``EventSourceResponse`` writing the events.

    uvicorn --factory relay_app:httpx_relay           # from bench/, with the variable set
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


def _app(kind: str) -> FastAPI:
    upstream = os.environ["ASKSTREAM_RELAY_UPSTREAM"].rstrip("/") + "/v1/chat/completions"
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            clients.append(client)
            yield

    app = FastAPI(lifespan=lifespan)

    async def lines(body: bytes) -> AsyncIterator[str]:
        headers = {"content-type": "application/json"}
        async with clients[0].stream("POST", upstream, content=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield line[6:]

    if kind == "httpx":

        @app.post("/v1/chat/completions")
        async def relay(request: Request) -> StreamingResponse:
            body = await request.body()

            async def events() -> AsyncIterator[str]:
                async for data in lines(body):
                    yield f"data: {data}\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

    else:
        from sse_starlette import EventSourceResponse

        @app.post("/v1/chat/completions")
        async def relay_sse(request: Request) -> Any:
            body = await request.body()

            async def events() -> AsyncIterator[dict[str, str]]:
                async for data in lines(body):
                    yield {"data": data}

            return EventSourceResponse(events())

    return app


def httpx_relay() -> FastAPI:
    """FastAPI + httpx ``client.stream`` + ``StreamingResponse``, written by hand."""
    return _app("httpx")


def sse_starlette_relay() -> FastAPI:
    """FastAPI + httpx ``client.stream`` + sse-starlette's ``EventSourceResponse``."""
    return _app("sse-starlette")
