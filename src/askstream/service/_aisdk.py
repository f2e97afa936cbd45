"""The Vercel AI SDK's door: ``POST /api/chat`` and ``GET /api/chat/{id}/stream``.

A ``useChat`` front end (the ``ai`` package 5 and 6: UI message stream protocol
``v1``, docs/api.md) posts ``{id, messages, trigger, messageId}`` and reads a
*UI message stream*; with ``useChat({resume: true})`` it asks
``GET /api/chat/{id}/stream`` when it loads, for the answer still being generated
in that chat (204: none). Both are adapters (ARCHITECTURE.md, "Several front
doors, one log"): the request starts the same generation task ``/api/ask``
starts, in the same chats, and the response is the answer's log, read from its
start and translated into the SDK's chunks (``_ui_stream.py``).

The chat's id is the client's (the SDK makes one per chat): an id nobody has
used makes a new chat of the caller's, the caller's own continues it, and
another user's is 404, as every route answers for a stranger's chat. The
server keeps the conversation: the model gets the chat's history, as for
``/api/ask``, and of the messages posted only the last one, the user's
question, is read. A cancel is ``POST /api/streams/{messageId}/cancel`` with
the ``start`` chunk's ``messageId``, the answer's id everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ._errors import ServiceError
from ._model import ModelPolicy
from ._routes import Deps, Services, User
from ._schemas import _NOT_BLANK_CHAR, ErrorBody, validation_message
from ._text import Text, loads, shown
from ._ui_stream import UI_MESSAGE_STREAM, ui_message_stream

__all__ = ["CHAT_ID", "ChatRequest", "UIMessage", "parse_chat", "router"]

#: A chat id the client may choose: the AI SDK's ids (16 letters and digits by
#: default), our own (32 hex digits) or a UUID. Generation writes ids into its
#: events' JSON unescaped, and the database keeps 64 characters.
CHAT_ID = r"^[A-Za-z0-9_-]{1,64}$"


# -- the request ------------------------------------------------------------------


class _TextPart(BaseModel):
    """A UIMessage's text: the parts the question is made of."""

    model_config = ConfigDict(strict=True, extra="allow")

    type: Literal["text"]
    # The pattern tells a generator of examples (schemathesis) what text asks
    # something; blank text is refused by ChatRequest.question, with 422.
    text: Text = Field(json_schema_extra={"pattern": _NOT_BLANK_CHAR})


class _Part(BaseModel):
    """Any other part of a UIMessage (a file, a tool call, data): let through, not read."""

    model_config = ConfigDict(strict=True, extra="allow")

    type: Text = Field(min_length=1)
    text: Text | None = None


class UIMessage(BaseModel):
    """A message as the AI SDK sends it: ``{id, role, parts}``."""

    model_config = ConfigDict(strict=True, extra="ignore")

    id: Text
    role: Literal["system", "user", "assistant"]
    parts: list[_TextPart | _Part]


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


def _response(deps: Services, message_id: str) -> Response:
    return ui_message_stream(deps.fanout, message_id, ping=deps.settings.heartbeat)


# -- the routes ------------------------------------------------------------------

router = APIRouter(prefix="/api", responses=_errors(422))


@router.post(
    "/chat",
    summary="Ask as the AI SDK's useChat does; the answer streams as its UI message stream",
    response_class=Response,
    responses={
        200: UI_MESSAGE_STREAM,
        **_errors(400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503),
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
    policy = ModelPolicy.of(deps.settings)  # the operator's prompt and defaults hold here too
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
        body.id,
        question,
        policy.context(context, question),
        owner=user,
        new_chat=owner is None,
        options=policy.options(),
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
    if deps.metrics is not None:
        deps.metrics.resumes.inc()  # useChat's resume, as a Last-Event-ID is askstream's
    return _response(deps, message_id)
