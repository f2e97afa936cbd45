"""The Vercel AI SDK's door: ``POST /api/chat`` and ``GET /api/chat/{id}/stream``.

A ``useChat`` front end (the ``ai`` package 5 and 6: UI message stream protocol
``v1``, docs/api.md) posts ``{id, messages, trigger, messageId}`` and reads a
*UI message stream*; with ``useChat({resume: true})`` it asks
``GET /api/chat/{id}/stream`` when it loads, for the answer still being generated
in that chat (204: none). Both are adapters (ARCHITECTURE.md, "Several front
doors, one log"): the request starts the same generation task ``/api/ask``
starts, in the same chats, and the response is the answer's log, read from its
start and translated event by event into the SDK's chunks, each a ``data:``
line of JSON (:class:`UIMessageChunks`)::

    the answer's log             the UI message stream
    (the response begins)        {"type": "start", "messageId": <messageId>}
    message {delta}              {"type": "text-start", "id": "text-0"} before the first,
                                 {"type": "text-delta", "id": "text-0", "delta": ...}
    done {finishReason}          {"type": "text-end", ...}, {"type": "finish", "finishReason": ...}
                                 (cancelled: {"type": "abort", "reason": "cancelled"} instead)
    error {code, message}        {"type": "text-end", ...}, {"type": "error", "errorText": ...}
    (the response ends)          [DONE]

The chat's id is the client's (the SDK makes one per chat): an id nobody has
used makes a new chat of the caller's, the caller's own continues it, and
another user's is 404, as every route answers for a stranger's chat. The
server keeps the conversation: the model gets the chat's history, as for
``/api/ask``, and of the messages posted only the last one, the user's
question, is read. A cancel is ``POST /api/streams/{messageId}/cancel`` with
the ``start`` chunk's ``messageId``, the answer's id everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.types import Receive, Scope, Send

from ..http import EventStreamResponse
from ..http._shutdown import SCOPE_KEY, Shutdown
from ..sse import Event
from ..streams import Store, StoreUnavailable, StreamExpired, StreamNotFound
from ._errors import ServiceError
from ._health import unavailable
from ._routes import Deps, Services, User
from ._schemas import ErrorBody, validation_message
from ._text import Text, loads, shown

__all__ = ["CHAT_ID", "ChatRequest", "UIMessage", "UIMessageChunks", "parse_chat", "router"]

logger = logging.getLogger("askstream.service")

#: A chat id the client may choose: the AI SDK's ids (16 letters and digits by
#: default), our own (32 hex digits) or a UUID. Generation writes ids into its
#: events' JSON unescaped, and the database keeps 64 characters.
CHAT_ID = r"^[A-Za-z0-9_-]{1,64}$"

#: The protocol's version header, as the ``ai`` package's ``UI_MESSAGE_STREAM_HEADERS``.
PROTOCOL_HEADER = {"x-vercel-ai-ui-message-stream": "v1"}

_TEXT_ID = "text-0"  # one text part per answer: its id within the message

# The log's finish reasons (OpenAI's) as the SDK's FinishReason spells them;
# any other is "other". "cancelled" becomes an `abort` chunk instead.
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- the request ------------------------------------------------------------------


class _Part(BaseModel):
    """A part of a UIMessage; only ``text`` parts are read, the others let through."""

    model_config = ConfigDict(strict=True, extra="allow")

    type: Text = Field(
        min_length=1, description='"text", or any other part type (read only when "text")'
    )
    text: Text | None = None


class UIMessage(BaseModel):
    """A message as the AI SDK sends it: ``{id, role, parts}``."""

    model_config = ConfigDict(strict=True, extra="ignore")

    id: Text
    role: Literal["system", "user", "assistant"]
    parts: list[_Part]


class ChatRequest(BaseModel):
    """``POST /api/chat``'s body, as the AI SDK's ``DefaultChatTransport`` sends it."""

    # Other fields (the transport's `body` option adds its own) are ignored.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="ignore"
    )

    id: str = Field(
        pattern=CHAT_ID,
        description="The chat: a new id starts a chat, one of yours continues it.",
    )
    messages: list[UIMessage] = Field(
        min_length=1,
        description="The conversation as the client has it; its last message, the "
        "user's, is the question. The earlier ones are not read: the server keeps "
        "the chat's history.",
    )
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: Text | None = Field(
        default=None, description="The message regenerated or edited; not read."
    )

    @property
    def question(self) -> str:
        """The text of the last message, which must be the user's (422 if it is not)."""
        last = self.messages[-1]
        if last.role != "user":
            raise ServiceError(
                422, f"messages: the last message is the {last.role}'s; it must be the user's"
            )
        text = "".join(part.text or "" for part in last.parts if part.type == "text")
        if not text.strip():
            raise ServiceError(422, "messages: the last message has no text to answer")
        return text


def parse_chat(body: bytes) -> ChatRequest:
    """Parse and check a chat request: 400 if it is not JSON, 422 if it is the wrong JSON.

    >>> parse_chat(b'{"id": "c1", "messages": [{"id": "m1", "role": "user",'
    ...            b' "parts": [{"type": "text", "text": "Hi?"}]}]}').question
    'Hi?'
    """
    payload = loads(body)  # 400: not JSON, or nested too deep
    if not isinstance(payload, dict):
        raise ServiceError(422, "the body must be a JSON object")
    try:
        return ChatRequest.model_validate(payload)
    except ValidationError as exc:
        raise ServiceError(422, validation_message(exc)) from None


# -- the response ------------------------------------------------------------------


class UIMessageChunks:
    """The translation of one answer's log into UI message stream chunks (JSON text).

    >>> chunks = UIMessageChunks("m1")
    >>> chunks.start()
    '{"type":"start","messageId":"m1"}'
    >>> chunks.feed(Event('{"chatId":"c1","messageId":"m1","delta":"Hi"}'))
    ['{"type":"text-start","id":"text-0"}', '{"type":"text-delta","id":"text-0","delta":"Hi"}']
    >>> chunks.feed(Event('{"answer":"Hi","finishReason":"stop"}', event="done"))
    ['{"type":"text-end","id":"text-0"}', '{"type":"finish","finishReason":"stop"}']
    """

    __slots__ = ("_message_id", "_text_open")

    def __init__(self, message_id: str) -> None:
        self._message_id = message_id
        self._text_open = False

    def start(self) -> str:
        """The first chunk: the answer's id becomes the UI message's."""
        return _json({"type": "start", "messageId": self._message_id})

    def feed(self, event: Event) -> list[str]:
        """The chunks for one event of the log (none for a kind this door does not know)."""
        if event.event == "message":
            delta: str = json.loads(event.data)["delta"]
            chunk = f'{{"type":"text-delta","id":"{_TEXT_ID}","delta":{_json(delta)}}}'
            if self._text_open:
                return [chunk]
            self._text_open = True
            return [_json({"type": "text-start", "id": _TEXT_ID}), chunk]
        if event.event == "done":
            reason = json.loads(event.data).get("finishReason")
            if reason == "cancelled":
                return [*self._end_text(), _json({"type": "abort", "reason": "cancelled"})]
            finish = _FINISH_REASONS.get(reason, "other")
            return [*self._end_text(), _json({"type": "finish", "finishReason": finish})]
        if event.event == "error":
            return self.fail(json.loads(event.data).get("message", "the answer failed"))
        return []

    def fail(self, message: str) -> list[str]:
        """The chunks that end the answer with an error."""
        return [*self._end_text(), _json({"type": "error", "errorText": message})]

    def _end_text(self) -> list[str]:
        if not self._text_open:
            return []
        self._text_open = False
        return [_json({"type": "text-end", "id": _TEXT_ID})]


async def _ui_stream(store: Store, message_id: str) -> AsyncIterator[str]:
    # The store's own follower, not the Fanout's: a hub writes askstream's
    # frames straight to the socket, and each event must be translated here.
    chunks = UIMessageChunks(message_id)
    yield chunks.start()
    try:
        async with aclosing(store.follow(message_id)) as events:
            async for event in events:
                for chunk in chunks.feed(event):
                    yield chunk
    except (StoreUnavailable, StreamNotFound, StreamExpired) as exc:
        # The route saw the stream before the 200: the store is away or lost it.
        logger.warning("answer %s: the AI SDK stream could not go on: %s", message_id, exc)
        for chunk in chunks.fail(
            "the stream store is unreachable; resume later with GET /api/chat/{id}/stream"
        ):
            yield chunk
    except Exception as exc:
        if unavailable(exc) is None:
            logger.exception("answer %s: the AI SDK stream failed", message_id)
        for chunk in chunks.fail("reading the answer failed"):
            yield chunk
    yield "[DONE]"


#: What a reader whose stream this instance ends on shutdown reads last (the
#: app's RESUME_EVENT is askstream's ``event: error``, no chunk to the SDK).
RESUME = "the server is shutting down; resume with GET /api/chat/{id}/stream"
_RESUME_FINAL = f"data: {_json({'type': 'error', 'errorText': RESUME})}\n\ndata: [DONE]\n\n"


class _FinalSaid(Shutdown):
    """The server's shutdown signal, with this door's own last words."""

    __slots__ = ("_signal",)

    def __init__(self, signal: Shutdown, final: bytes) -> None:
        super().__init__(final)
        self._signal = signal

    @property
    def is_set(self) -> bool:
        return self._signal.is_set

    def subscribe(self, callback: Callable[[], object]) -> bool:
        return self._signal.subscribe(callback)

    def unsubscribe(self, callback: Callable[[], object]) -> None:
        self._signal.unsubscribe(callback)


class _UIMessageStreamResponse(EventStreamResponse):
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        signal = scope.get(SCOPE_KEY)
        if isinstance(signal, Shutdown):
            scope = {**scope, SCOPE_KEY: _FinalSaid(signal, _RESUME_FINAL.encode())}
        return super().__call__(scope, receive, send)


def _response(deps: Services, message_id: str) -> EventStreamResponse:
    return _UIMessageStreamResponse(
        _ui_stream(deps.store, message_id),
        ping=deps.settings.heartbeat,
        headers={**PROTOCOL_HEADER, "Content-Location": f"/api/streams/{message_id}"},
    )


# -- OpenAPI ---------------------------------------------------------------------


def _chunk(kind: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": kind}, **fields},
        "required": ["type", *fields],
    }


_STRING = {"type": "string"}
_CHUNK = {
    "oneOf": [
        _chunk("start", messageId=_STRING),
        _chunk("text-start", id=_STRING),
        _chunk("text-delta", id=_STRING, delta=_STRING),
        _chunk("text-end", id=_STRING),
        _chunk(
            "finish",
            finishReason={"enum": ["stop", "length", "content-filter", "tool-calls", "other"]},
        ),
        _chunk("abort", reason={"const": "cancelled"}),
        _chunk("error", errorText=_STRING),
    ]
}

UI_MESSAGE_STREAM: dict[str, Any] = {
    "description": "The answer as the AI SDK's UI message stream (protocol v1): `data:` "
    "lines of JSON chunks, `start`, `text-start`, `text-delta`..., `text-end`, then "
    "`finish`, `abort` (cancelled) or `error`; the last is `data: [DONE]`. No ids: "
    "a reader that lost it asks `GET /api/chat/{id}/stream` for all of it again. "
    "See docs/api.md.",
    "content": {
        "text/event-stream": {
            "itemSchema": {
                "type": "object",
                "properties": {
                    "event": {"const": "message"},
                    "data": {
                        "anyOf": [
                            {"const": "[DONE]"},
                            {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": _CHUNK,
                            },
                        ]
                    },
                },
                "required": ["data"],
            }
        }
    },
    "headers": {
        "x-vercel-ai-ui-message-stream": {
            "description": "`v1`: the protocol's version.",
            "schema": {"const": "v1"},
        },
        "Content-Location": {
            "description": "`/api/streams/{messageId}`: the same answer in askstream's "
            "own events; `POST` `.../cancel` there cancels it.",
            "schema": {"type": "string"},
        },
    },
}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema with its ``$defs`` put in place: inside an operation
    of the OpenAPI document, ``#/$defs/...`` would point at the document's root."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


# -- the routes ------------------------------------------------------------------

router = APIRouter(prefix="/api", responses=_errors(422))


@router.post(
    "/chat",
    summary="Ask as the AI SDK's useChat does; the answer streams as its UI message stream",
    response_class=Response,
    responses={
        200: UI_MESSAGE_STREAM,
        **_errors(400, 401, 403, 404, 413, 422, 429, 500, 502, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _inlined(ChatRequest.model_json_schema(by_alias=True))
                }
            },
        }
    },
)
async def post_chat(request: Request, deps: Deps, user: User) -> Response:
    body = parse_chat(await request.body())
    question = body.question
    owner = await deps.history.owner(body.id)
    if owner is None:
        context = []
    else:
        found = None
        if owner == user:
            found = await deps.history.context(body.id, user, deps.settings.context_messages)
        if found is None:  # another user's chat: 404, never a 403 that confirms it
            raise ServiceError(404, f"no chat {shown(body.id)}")
        context = found
    answer = await deps.generations.start(
        body.id, question, context, owner=user, new_chat=owner is None
    )
    return _response(deps, answer.message_id)


@router.get(
    "/chat/{chat_id}/stream",
    summary="The answer being generated in a chat, from its start (useChat's resume); "
    "204 when there is none",
    response_class=Response,
    responses={
        200: UI_MESSAGE_STREAM,
        204: {"description": "No answer is being generated in this chat."},
        **_errors(401, 404, 422, 503),
    },
)
async def resume_chat(
    chat_id: Annotated[str, Path(pattern=CHAT_ID)], deps: Deps, user: User
) -> Response:
    if await deps.history.chat(chat_id, user) is None:
        raise ServiceError(404, f"no chat {shown(chat_id)}")
    message_id = await deps.history.streaming_answer(chat_id)
    # A row still "streaming" whose stream has ended (or that the store lost,
    # until the reaper marks it) has nothing to resume either.
    if message_id is None or await deps.store.status(message_id) != "open":
        return Response(status_code=204)
    return _response(deps, message_id)
