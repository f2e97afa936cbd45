"""A FastAPI app whose event stream is described by ``openapi_event_stream``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pydantic
from fastapi import FastAPI
from fastapi.responses import Response

from askstream import Event, EventStreamResponse, openapi_event_stream


class Word(pydantic.BaseModel):
    text: str


class Delta(pydantic.BaseModel):
    """A model that nests another: its JSON schema has $defs."""

    words: list[Word]
    final: bool


app = FastAPI()


@app.get(
    "/feed",
    response_class=Response,
    responses={200: openapi_event_stream({"message": Delta, "done": None})},
)
async def feed() -> EventStreamResponse:
    async def source() -> AsyncIterator[Event | Delta]:
        yield Delta(words=[Word(text="Hello")], final=False)  # sent as its JSON
        yield Delta(words=[Word(text="world")], final=True)
        yield Event("bye", event="done")

    return EventStreamResponse(source())
