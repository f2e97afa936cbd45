"""sse-starlette serving the interop events (kept apart: importing it patches uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.http.apps import INTEROP_EVENTS


async def interop(request: Request) -> Response:
    async def source() -> AsyncIterator[ServerSentEvent]:
        for event in INTEROP_EVENTS:
            yield ServerSentEvent(
                data=event.data,
                event=None if event.event == "message" else event.event,
                id=event.id,
                retry=event.retry,
            )

    return EventSourceResponse(source(), ping=600)


app = Starlette(routes=[Route("/interop", interop)])
