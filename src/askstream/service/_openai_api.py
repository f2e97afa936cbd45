"""The OpenAI-compatible door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A thin adapter (ARCHITECTURE.md, "Several front doors, one log"): the request is
translated into the same generation task as ``POST /api/ask`` (a new chat of
the caller's, the last user message its question, the earlier messages its
context), and the response reads the same answer log, written out as OpenAI's
``chat.completion.chunk`` events (or, with ``stream: false``, one
``chat.completion`` once the answer is done). So the answer is recorded, a
dropped client resumes at ``X-Askstream-Resume`` (``/api/streams/{messageId}``),
and cancel, limits and isolation hold as for every door.

Errors keep the service's ``{"code", "message"}`` and add OpenAI's
``{"error": {"message", "type", "param", "code"}}``, which the ``openai`` SDKs
read (:class:`OpenAIErrors`, for every response under ``/v1/``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..http import EventStreamResponse
from ..streams import StoreUnavailable, StreamExpired, StreamNotFound
from ._backend import ChatMessage
from ._demo import DEMO_MODEL
from ._errors import ServiceError
from ._fanout import Fanout
from ._model import ModelPolicy
from ._routes import Deps, User
from ._schemas import validation_message
from ._settings import Settings
from ._text import Text, loads, shown

__all__ = [
    "RESUME_HEADER",
    "CompletionRequest",
    "OpenAIErrors",
    "models",
    "openai_error",
    "router",
]

logger = logging.getLogger("askstream.service")

#: The response header naming where a dropped client resumes the answer.
RESUME_HEADER = "X-Askstream-Resume"

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# OpenAI's finish reasons; ours has one more ("cancelled": POST .../cancel),
# which an OpenAI client knows as a normal stop.
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def models(settings: Settings) -> list[str]:
    """The model names this service answers to: the configured back end's, or the demo's.

    >>> models(Settings(llm_url="http://localhost:11434/v1", llm_model="llama3.2"))
    ['llama3.2']
    """
    return [settings.llm_model] if settings.llm_model and settings.llm_url else [DEMO_MODEL]


# -- the request ---------------------------------------------------------------


class _Strict(BaseModel):
    # strict: no "0.5" for a number or 1 for a string; unknown fields (tools,
    # top_p, ...) are ignored, as OpenAI-compatible servers commonly do.
    model_config = ConfigDict(strict=True, extra="ignore")


class _TextPart(_Strict):
    type: Literal["text"] = Field(description="Only text parts: no images or audio.")
    text: Text


class _Message(_Strict):
    # "developer" is OpenAI's new name for "system" (o1 and later).
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[_TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _StreamOptions(_Strict):
    include_usage: bool = False


class CompletionRequest(_Strict):
    """``POST /v1/chat/completions``'s body: the part of OpenAI's we honour."""

    model: Text
    messages: list[_Message] = Field(min_length=1)
    stream: bool | None = None  # some clients send null for "not set"
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="One choice only.")


def _parse(body: bytes) -> CompletionRequest:
    payload = loads(body)  # 400: not JSON, or nested too deep
    if not isinstance(payload, dict):
        raise ServiceError(422, "the body must be a JSON object")
    try:
        return CompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise ServiceError(422, validation_message(exc)) from None


# -- the response's shapes ----------------------------------------------------------


def _usage(data: dict[str, Any]) -> dict[str, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    return {
        "prompt_tokens": usage["promptTokens"],
        "completion_tokens": usage["completionTokens"],
        "total_tokens": usage["totalTokens"],
    }


def _message(done: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": done["answer"], "refusal": None}
    if done.get("reasoning") is not None:
        message["reasoning_content"] = done["reasoning"]
    return message


def _finish_reason(data: dict[str, Any]) -> str:
    reason = data.get("finishReason")
    return reason if reason in _FINISH_REASONS else "stop"


def _error_type(status: int) -> str:
    # The types OpenAI's own API answers with, by status.
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error(code: int, message: str) -> dict[str, Any]:
    """The body of an error under ``/v1/``: ours and OpenAI's in one object."""
    return {
        "code": code,
        "message": message,
        "error": {"message": message, "type": _error_type(code), "param": None, "code": None},
    }


class _Chunks:
    """Writes ``chat.completion.chunk`` events for one answer."""

    def __init__(self, completion_id: str, created: int, model: str, usage: bool) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self._usage = usage
        self._role_sent = False

    def chunk(
        self, content: str | None, finish_reason: str | None = None, *, reasoning: str | None = None
    ) -> str:
        delta: dict[str, str] = {}
        if not self._role_sent:
            # The role rides on the first chunk, content and all: one chunk per
            # event of the log, so the n-th chunk with content or
            # reasoning_content is event n.
            delta["role"] = "assistant"
            self._role_sent = True
        if content is not None:
            delta["content"] = content
        if reasoning is not None:
            delta["reasoning_content"] = reasoning
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        payload: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._usage:
            payload["usage"] = None  # as OpenAI: null on every chunk but the last
        return _json(payload)

    def usage(self, usage: dict[str, int] | None) -> str:
        return _json({**self._head, "choices": [], "usage": usage})


async def _stream(
    fanout: Fanout, message_id: str, chunks: _Chunks, *, include_usage: bool
) -> AsyncGenerator[str, None]:
    """The answer's log as OpenAI chunks, then ``[DONE]``; a failure is OpenAI's
    error chunk (which the SDKs raise as ``APIError``) and no ``[DONE]``.

    No event carries an ``id:``: the SDKs' decoders keep the last id and would
    turn every later heartbeat comment into an empty event, which they cannot
    parse. A client counts the chunks with content or reasoning_content instead.
    """
    try:
        async with aclosing(fanout.events(message_id)) as events:
            async for event in events:
                data = json.loads(event.data)
                if event.event == "message":
                    yield chunks.chunk(data["delta"])
                elif event.event == "reasoning":
                    # DeepSeek's field, which the openai SDKs pass through.
                    yield chunks.chunk(None, reasoning=data["delta"])
                elif event.event == "done":
                    yield chunks.chunk(None, _finish_reason(data))
                    if include_usage:
                        yield chunks.usage(_usage(data))
                    yield "[DONE]"
                    return
                else:  # error: the answer failed after it began
                    yield _json(openai_error(data["code"], data["message"]))
                    return
    except (StreamNotFound, StreamExpired, StoreUnavailable):
        yield _json(openai_error(503, "the stream store lost this answer; ask again"))
    except Exception:  # one reader's bug: logged, and this reader told; nobody else
        logger.exception("the OpenAI stream of answer %s failed", message_id)
        yield _json(openai_error(500, "reading the answer failed"))


async def _whole(fanout: Fanout, message_id: str) -> dict[str, Any]:
    """The answer's ``done`` data, once it is there, with the model's ``reasoning``
    (``None`` if it sent none); its ``error`` as a ServiceError."""
    thoughts: list[str] = []
    async with aclosing(fanout.events(message_id)) as events:
        async for event in events:
            if event.event == "reasoning":
                thoughts.append(json.loads(event.data)["delta"])
            elif event.event == "done":
                done: dict[str, Any] = json.loads(event.data)
                done["reasoning"] = "".join(thoughts) if thoughts else None
                return done
            if event.event == "error":
                error = json.loads(event.data)
                raise ServiceError(error["code"], error["message"])
    raise ServiceError(500, "the answer ended without its last event")


# -- the routes -------------------------------------------------------------------

router = APIRouter(prefix="/v1", include_in_schema=False)


@router.get("/models")
async def list_models(deps: Deps, user: User) -> dict[str, Any]:
    return {"object": "list", "data": [_model(name) for name in models(deps.settings)]}


@router.get("/models/{model:path}")
async def get_model(model: str, deps: Deps, user: User) -> dict[str, Any]:
    if model not in models(deps.settings):
        raise ServiceError(404, f"the model {shown(model)} does not exist")
    return _model(model)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "askstream"}


@router.post("/chat/completions")
async def chat_completions(request: Request, deps: Deps, user: User) -> Response:
    body = _parse(await request.body())
    known = models(deps.settings)
    if body.model not in known:
        raise ServiceError(
            404, f"the model {shown(body.model)} does not exist; this service has {known[0]!r}"
        )
    *earlier, last = body.messages
    if last.role != "user":
        raise ServiceError(422, "messages: the last message must be the user's")
    history: list[ChatMessage] = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in earlier
    ]
    # The operator's settings hold here too; what a request may not set is ignored.
    policy = ModelPolicy.of(deps.settings)
    context = policy.context(history, last.text())
    options = policy.options(
        temperature=body.temperature, max_tokens=body.max_completion_tokens or body.max_tokens
    )
    created = int(time.time())
    answer = await deps.generations.start(None, last.text(), context, owner=user, options=options)
    mid = answer.message_id
    headers = {RESUME_HEADER: f"/api/streams/{mid}"}
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = _Chunks(f"chatcmpl-{mid}", created, body.model, include_usage)
        # Through the fan-out: a reader the graceful stop waits for, sharing
        # one follower of the log with the answer's other readers at this door.
        return EventStreamResponse(
            _stream(deps.fanout, mid, chunks, include_usage=include_usage),
            ping=deps.settings.heartbeat,
            headers=headers,
        )
    done = await _whole(deps.fanout, mid)
    completion = {
        "id": f"chatcmpl-{mid}",
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": _message(done),
                "logprobs": None,
                "finish_reason": _finish_reason(done),
            }
        ],
        "usage": _usage(done),
    }
    return JSONResponse(completion, headers=headers)


# -- errors in OpenAI's shape ---------------------------------------------------------


_PREFIX = "/v1/"
#: Bigger than any error the service writes: a body past it passes unchanged.
_MAX_ERROR = 64 * 1024


class OpenAIErrors:
    """Give every JSON error under ``/v1/`` OpenAI's ``error`` object beside our
    ``code`` and ``message`` (whichever layer wrote it: the token check, the body
    limit, a route), so that the ``openai`` SDKs fill ``.type`` and ``.body``.

    The errors are small and whole; they are held back, rewritten and sent on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(
                    b"application/json"
                ):
                    start = message  # held until the body is whole
                    return
            elif message["type"] == "http.response.body" and start is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _with_error(b"".join(parts))
                sized = [
                    (name, str(len(body)).encode() if name == b"content-length" else value)
                    for name, value in start.get("headers", ())
                ]
                await send({**start, "headers": sized})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)


def _with_error(body: bytes) -> bytes:
    if len(body) > _MAX_ERROR:
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if (
        not isinstance(payload, dict)
        or "error" in payload
        or not isinstance(payload.get("code"), int)
        or not isinstance(payload.get("message"), str)
    ):
        return body
    return json.dumps(openai_error(payload["code"], payload["message"])).encode()
