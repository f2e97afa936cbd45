"""The HTTP routes: thin, each one a few calls into history, generation and the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from ..http import EventStreamResponse
from ..streams import InvalidEventId, Store
from ._errors import ServiceError
from ._generation import Generations
from ._history import ChatHistory
from ._schemas import (
    AskRequest,
    ChatDetail,
    ChatList,
    ChatSummary,
    ErrorBody,
    MessageOut,
    parse_ask,
)
from ._settings import Settings

__all__ = ["Services", "router"]


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, made and closed by the app's lifespan."""

    settings: Settings
    store: Store
    history: ChatHistory
    generations: Generations


def services(request: Request) -> Services:
    """The one dependency every route takes: later auth and limits hook in here."""
    return cast("Services", request.app.state.askstream)


Deps = Annotated[Services, Depends(services)]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


router = APIRouter(prefix="/api")

_SSE_DOC = {
    "description": "The answer as `text/event-stream`: `message` events with "
    '`{"chatId", "messageId", "delta"}`, then `done` (or `error`). See docs/api.md.',
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
    "headers": {
        "Content-Location": {
            "description": "`/api/streams/{messageId}`: where to resume this answer.",
            "schema": {"type": "string"},
        }
    },
}


@router.post(
    "/ask",
    summary="Ask a question; the answer streams back as server-sent events",
    response_class=Response,
    responses={200: _SSE_DOC, **_errors(400, 404, 413, 422, 500, 502)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": AskRequest.model_json_schema(by_alias=True)}
            },
        }
    },
)
async def ask(request: Request, deps: Deps) -> Response:
    body = parse_ask(await request.body())
    if body.chat_id is None:
        context = []
    else:
        found = await deps.history.context(body.chat_id, deps.settings.context_messages)
        if found is None:
            raise ServiceError(404, f"no chat {body.chat_id!r}")
        context = found
    answer = await deps.generations.start(body.chat_id, body.question, context)
    return EventStreamResponse(
        deps.store.follow(answer.message_id),
        ping=deps.settings.heartbeat,
        headers={"Content-Location": f"/api/streams/{answer.message_id}"},
    )


@router.get(
    "/streams/{message_id}",
    summary="Follow an answer's stream: replay after Last-Event-ID, then live",
    response_class=Response,
    responses={200: _SSE_DOC, **_errors(400, 404)},
)
async def follow_stream(
    message_id: str,
    deps: Deps,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> Response:
    after = last_event_id_header or last_event_id or None
    if await deps.store.status(message_id) is None:
        raise ServiceError(404, f"no stream {message_id!r}")
    try:
        await deps.store.read(message_id, after)  # checks `after` before the 200 goes out
    except InvalidEventId:
        raise ServiceError(400, f"stream {message_id!r} has no event id {after!r}") from None
    return EventStreamResponse(
        deps.store.follow(message_id, after),
        ping=deps.settings.heartbeat,
        headers={"Content-Location": f"/api/streams/{message_id}"},
    )


@router.post(
    "/streams/{message_id}/cancel",
    summary="Cancel an answer: it ends with `done` (finishReason cancelled) and its text so far",
    status_code=204,
    response_class=Response,
    responses=_errors(404, 409),
)
async def cancel_stream(message_id: str, deps: Deps) -> Response:
    status = await deps.store.status(message_id)
    if status is None:
        raise ServiceError(404, f"no stream {message_id!r}")
    if status == "cancelled" or await deps.generations.cancel(message_id):
        return Response(status_code=204)
    raise ServiceError(409, f"the answer has already ended ({status})")


@router.get("/chats", summary="Every chat, newest first", response_model=ChatList)
async def list_chats(deps: Deps) -> ChatList:
    chats = await deps.history.list_chats()
    return ChatList(chats=[ChatSummary.of(chat) for chat in chats])


@router.get(
    "/chats/{chat_id}",
    summary="A chat and its messages",
    response_model=ChatDetail,
    responses=_errors(404),
)
async def get_chat(chat_id: str, deps: Deps) -> ChatDetail:
    chat = await deps.history.chat(chat_id)
    if chat is None:
        raise ServiceError(404, f"no chat {chat_id!r}")
    messages = await deps.history.messages(chat_id)
    summary = ChatSummary.of(chat)
    return ChatDetail(
        **summary.model_dump(), messages=[MessageOut.of(message) for message in messages]
    )


@router.delete(
    "/chats/{chat_id}",
    summary="Delete a chat; answers still streaming in it are cancelled",
    status_code=204,
    response_class=Response,
    responses=_errors(404),
)
async def delete_chat(chat_id: str, deps: Deps) -> Response:
    if await deps.history.chat(chat_id) is None:
        raise ServiceError(404, f"no chat {chat_id!r}")
    await deps.generations.cancel_chat(chat_id)
    await deps.history.delete_chat(chat_id)
    return Response(status_code=204)


@router.get("/health", summary="Liveness: 200 while the service runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}
