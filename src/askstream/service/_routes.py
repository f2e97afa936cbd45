"""The HTTP routes: thin, each one a few calls into history, generation and the store."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from ..http import EventStreamResponse
from ..streams import InvalidEventId, Store, StreamExpired, StreamNotFound
from ._errors import ServiceError
from ._fanout import Fanout
from ._generation import Generations
from ._guards import USER_KEY
from ._health import Dependencies
from ._history import ChatHistory
from ._logs import bind_answer
from ._metrics import Metrics
from ._model import ModelPolicy
from ._openapi import EVENT_STREAM, LAST_EVENT_ID
from ._schemas import (
    AskRequest,
    ChatDetail,
    ChatList,
    ChatSummary,
    ErrorBody,
    MessageOut,
    decode_cursor,
    encode_cursor,
    parse_ask,
)
from ._settings import Settings
from ._text import shown

__all__ = ["Services", "router"]


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, made and closed by the app's lifespan."""

    settings: Settings
    store: Store
    history: ChatHistory
    generations: Generations
    fanout: Fanout
    dependencies: Dependencies | None = None
    metrics: Metrics | None = None


# Both dependencies are `async def`: FastAPI runs a plain `def` one in a worker
# thread, a hop per request for a dictionary lookup.
async def services(request: Request) -> Services:
    """The one dependency every route takes: later auth and limits hook in here."""
    return cast("Services", request.app.state.askstream)


async def caller(request: Request) -> str:
    """The user a request acts as: ``Identify`` (the front gate) put it in the scope
    of every API call, from a token or a session; the routes only read it."""
    return cast("str", request.scope[USER_KEY])


Deps = Annotated[Services, Depends(services)]
User = Annotated[str, Depends(caller)]

#: A page of the chat list, unless the caller asks for fewer; never more than MAX_PAGE.
DEFAULT_PAGE = 50
MAX_PAGE = 200


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


# Any request may be 422 (a NUL in its path, query or headers, a bad query
# value), and ours is ErrorBody: FastAPI's own 422 model would be a lie.
router = APIRouter(prefix="/api", responses=_errors(422))


@router.post(
    "/ask",
    summary="Ask a question; the answer streams back as server-sent events",
    response_class=Response,
    responses={200: EVENT_STREAM, **_errors(400, 401, 403, 404, 413, 422, 429, 500, 502, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": AskRequest.model_json_schema(by_alias=True)}
            },
        }
    },
)
async def ask(request: Request, deps: Deps, user: User) -> Response:
    body = parse_ask(await request.body())
    policy = ModelPolicy.of(deps.settings)
    policy.refuse(temperature=body.temperature, maxTokens=body.max_tokens, system=body.system)
    if body.chat_id is None:
        history = []
    else:
        found = await deps.history.context(body.chat_id, user, deps.settings.context_messages)
        if found is None:  # also another user's chat: 404, never a 403 that confirms it
            raise ServiceError(404, f"no chat {shown(body.chat_id)}")
        history = found
    answer = await deps.generations.start(
        body.chat_id,
        body.question,
        policy.context(history, body.question, system=body.system),
        owner=user,
        options=policy.options(temperature=body.temperature, max_tokens=body.max_tokens),
    )
    return EventStreamResponse(
        deps.fanout.follow(answer.message_id),
        ping=deps.settings.heartbeat,
        headers={"Content-Location": f"/api/streams/{answer.message_id}"},
    )


@router.get(
    "/streams/{message_id}",
    summary="Follow an answer's stream: replay after Last-Event-ID, then live",
    response_class=Response,
    responses={200: EVENT_STREAM, **_errors(400, 401, 404, 410, 422, 503)},
)
async def follow_stream(
    message_id: str,
    deps: Deps,
    user: User,
    last_event_id_header: Annotated[
        str, Header(alias="Last-Event-ID", description=LAST_EVENT_ID, examples=["7"])
    ] = "",
    last_event_id: Annotated[
        str,
        Query(
            alias="lastEventId",
            description="`Last-Event-ID` for a client that cannot set headers; "
            "the header wins when both are set.",
        ),
    ] = "",
) -> Response:
    after = last_event_id_header or last_event_id or None
    await _own_stream(deps, message_id, user)
    try:
        # Checks the stream and `after` before the 200 goes out.
        await deps.store.read(message_id, after)
    except StreamNotFound:
        raise ServiceError(404, f"no stream {shown(message_id)}") from None
    except StreamExpired:
        raise ServiceError(410, _expired(message_id)) from None
    except InvalidEventId:
        raise ServiceError(
            400, f"stream {shown(message_id)} has no event id {shown(after or '')}"
        ) from None
    if after is not None and deps.metrics is not None:
        deps.metrics.resumes.inc()
    return EventStreamResponse(
        deps.fanout.follow(message_id, after),
        ping=deps.settings.heartbeat,
        headers={"Content-Location": f"/api/streams/{message_id}"},
    )


@router.post(
    "/streams/{message_id}/cancel",
    summary="Cancel an answer: it ends with `done` (finishReason cancelled) and its text so far",
    status_code=204,
    response_class=Response,
    responses={
        202: {"description": "Passed on; the instance generating it has not confirmed yet"},
        **_errors(401, 403, 404, 409, 410),
    },
)
async def cancel_stream(message_id: str, deps: Deps, user: User) -> Response:
    response = await _cancel(message_id, deps, user)
    if deps.metrics is not None:
        result = "cancelled" if response.status_code == 204 else "passed_on"
        deps.metrics.cancels.labels(result).inc()  # a 409 is counted where it is raised
    return response


async def _cancel(message_id: str, deps: Deps, user: str) -> Response:
    await _own_stream(deps, message_id, user)
    if await deps.generations.cancel(message_id):  # generated here: stopped and saved
        return Response(status_code=204)
    try:
        # Generated by another instance (or already over): the store tells its producer.
        status = await deps.store.cancel(message_id)
    except StreamNotFound:
        raise ServiceError(404, f"no stream {shown(message_id)}") from None
    except StreamExpired:
        raise ServiceError(410, _expired(message_id)) from None
    if status == "open":
        # Pub/sub reaches its instance at once, the lease renewal within
        # lease_renew; a dead instance's stream is reaped within lease_ttl.
        wait = deps.settings.lease_ttl + 2 * deps.settings.lease_renew
        with suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for _ in deps.store.follow(message_id):
                    pass
        final = await deps.store.status(message_id)
        if final == "open":
            return Response(status_code=202)
        status = final or status
    if status == "cancelled":
        return Response(status_code=204)
    if deps.metrics is not None:
        deps.metrics.cancels.labels("already_ended").inc()
    raise ServiceError(409, f"the answer has already ended ({status})")


def _expired(message_id: str) -> str:
    return f"stream {shown(message_id)} has expired; its answer is in the chat's history"


async def _own_stream(deps: Services, message_id: str, user: str) -> None:
    # The store keeps each stream's owner: any instance refuses a stranger
    # without the database, with the same 404 as for an id that never existed.
    if await deps.store.owner(message_id) != user:
        raise ServiceError(404, f"no stream {shown(message_id)}")
    # Named in the log from here on: a stream that exists, so an id we made,
    # never a client's text (a newline in it would forge a line).
    bind_answer(message_id=message_id)


@router.get(
    "/chats",
    summary="Your chats, newest first, a page at a time",
    response_model=ChatList,
    responses=_errors(400, 401),
)
async def list_chats(
    deps: Deps,
    user: User,
    limit: Annotated[int, Query(ge=1, description=f"at most {MAX_PAGE}")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(description="`nextCursor` of the previous page", max_length=300)
    ] = None,
) -> ChatList:
    after = None
    if cursor is not None:
        after = decode_cursor(cursor)
    limit = min(limit, MAX_PAGE)
    # One more than the page: whether there is a next one, without a count.
    chats = await deps.history.list_chats(user, limit=limit + 1, after=after)
    page = chats[:limit]
    next_cursor = encode_cursor(page[-1]) if len(chats) > limit else None
    return ChatList(chats=[ChatSummary.of(chat) for chat in page], next_cursor=next_cursor)


@router.get(
    "/chats/{chat_id}",
    summary="A chat and its messages",
    response_model=ChatDetail,
    responses=_errors(401, 404),
)
async def get_chat(chat_id: str, deps: Deps, user: User) -> ChatDetail:
    chat = await deps.history.chat(chat_id, user)
    if chat is None:
        raise ServiceError(404, f"no chat {shown(chat_id)}")
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
    responses=_errors(401, 403, 404),
)
async def delete_chat(chat_id: str, deps: Deps, user: User) -> Response:
    if await deps.history.chat(chat_id, user) is None:
        raise ServiceError(404, f"no chat {shown(chat_id)}")
    bind_answer(chat_id=chat_id)  # a chat that exists (see _own_stream)
    await deps.generations.cancel_chat(chat_id)
    await deps.history.delete_chat(chat_id, user)
    return Response(status_code=204)


@router.get("/health", summary="Liveness: 200 while the service runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: 503 while the database or the stream store is unreachable, "
    "or the server is stopping",
    response_class=Response,
    responses={200: {"description": '`{"status": "ready"}`'}, **_errors(503)},
)
async def ready(deps: Deps) -> Response:
    assert deps.dependencies is not None
    return await deps.dependencies.ready()
