"""The UI message stream: an answer's log as the Vercel AI SDK reads it (protocol ``v1``).

:func:`ui_message_stream` answers with the log of one answer, from its start,
translated event by event (:class:`UIMessageChunks`) into the SDK's chunks,
each a ``data:`` line of JSON, and ``data: [DONE]`` last (docs/api.md)::

    the answer's log             the UI message stream
    (the response begins)        {"type": "start", "messageId": <messageId>}
    reasoning {delta}            {"type": "reasoning-start", "id": "reasoning-0"} before the
                                 first, {"type": "reasoning-delta", "id": "reasoning-0",
                                 "delta": ...}; {"type": "reasoning-end", ...} before the
                                 answer's first chunk (or its end)
    message {delta}              {"type": "text-start", "id": "text-0"} before the first,
                                 {"type": "text-delta", "id": "text-0", "delta": ...}
    done {finishReason, usage}   {"type": "text-end", ...}, {"type": "finish", "finishReason": ...,
                                 "messageMetadata": {"usage": {"inputTokens", "outputTokens",
                                 "totalTokens"}}} (no messageMetadata when the model counted
                                 nothing; cancelled: {"type": "abort", "reason": "cancelled"})
    error {code, message}        {"type": "text-end", ...}, {"type": "error", "errorText": ...}
    (the response ends)          [DONE]

The chunks and their fields are those of the ``ai`` package's
``uiMessageChunkSchema`` (6.0.333, tests/node/package.json), which its parser
checks. A stream the server stops ends with an ``error`` chunk and ``[DONE]``
too, not with the app's own final event, which the SDK's parser would refuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from starlette.types import Receive, Scope, Send

from ..http import EventStreamResponse
from ..http._shutdown import SCOPE_KEY, Shutdown
from ..sse import Event
from ..streams import StoreUnavailable, StreamExpired, StreamNotFound
from ._fanout import Fanout
from ._health import unavailable

__all__ = ["PROTOCOL_HEADER", "RESUME", "UI_MESSAGE_STREAM", "UIMessageChunks", "ui_message_stream"]

logger = logging.getLogger("askstream.service")

#: The protocol's version header, as the ``ai`` package's ``UI_MESSAGE_STREAM_HEADERS``.
PROTOCOL_HEADER = {"x-vercel-ai-ui-message-stream": "v1"}

_TEXT_ID = "text-0"  # one text part per answer: its id within the message
_REASONING_ID = "reasoning-0"  # and one reasoning part, before it

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


class UIMessageChunks:
    """The translation of one answer's log into UI message stream chunks (JSON text).

    >>> chunks = UIMessageChunks("m1")
    >>> chunks.start()
    '{"type":"start","messageId":"m1"}'
    >>> chunks.feed(Event('{"chatId":"c1","messageId":"m1","delta":"Hi"}'))
    ['{"type":"text-start","id":"text-0"}', '{"type":"text-delta","id":"text-0","delta":"Hi"}']
    >>> chunks.feed(Event('{"answer":"Hi","finishReason":"stop"}', event="done"))
    ['{"type":"text-end","id":"text-0"}', '{"type":"finish","finishReason":"stop"}']

    A thinking model's reasoning is a reasoning part before the text:

    >>> chunks = UIMessageChunks("m2")
    >>> chunks.feed(Event('{"delta":"Hmm"}', event="reasoning"))[0]
    '{"type":"reasoning-start","id":"reasoning-0"}'
    >>> chunks.feed(Event('{"delta":"Hi"}'))[0]
    '{"type":"reasoning-end","id":"reasoning-0"}'
    """

    __slots__ = ("_message_id", "_reasoning_open", "_text_open")

    def __init__(self, message_id: str) -> None:
        self._message_id = message_id
        self._text_open = False
        self._reasoning_open = False

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
            return [*self._end_reasoning(), _json({"type": "text-start", "id": _TEXT_ID}), chunk]
        if event.event == "reasoning":
            return self._reasoning(json.loads(event.data)["delta"])
        if event.event == "done":
            done = json.loads(event.data)
            return self._done(done.get("finishReason"), done.get("usage"))
        if event.event == "error":
            return self.fail(json.loads(event.data).get("message", "the answer failed"))
        return []

    def _done(self, reason: str | None, usage: dict[str, int] | None) -> list[str]:
        if reason == "cancelled":
            return [*self._end_text(), _json({"type": "abort", "reason": "cancelled"})]
        finish: dict[str, Any] = {
            "type": "finish",
            "finishReason": _FINISH_REASONS.get(reason or "", "other"),
        }
        if usage is not None:
            # The SDK's own names (LanguageModelUsage), where useChat's
            # message.metadata shows them.
            finish["messageMetadata"] = {
                "usage": {
                    "inputTokens": usage["promptTokens"],
                    "outputTokens": usage["completionTokens"],
                    "totalTokens": usage["totalTokens"],
                }
            }
        return [*self._end_text(), _json(finish)]

    def fail(self, message: str) -> list[str]:
        """The chunks that end the answer with an error."""
        return [*self._end_text(), _json({"type": "error", "errorText": message})]

    def _end_text(self) -> list[str]:
        if not self._text_open:
            return self._end_reasoning()
        self._text_open = False
        return [_json({"type": "text-end", "id": _TEXT_ID})]

    def _reasoning(self, thought: str) -> list[str]:
        if self._text_open:
            return []  # the text began: a late thought has no part to go in
        chunk = _json({"type": "reasoning-delta", "id": _REASONING_ID, "delta": thought})
        if self._reasoning_open:
            return [chunk]
        self._reasoning_open = True
        return [_json({"type": "reasoning-start", "id": _REASONING_ID}), chunk]

    def _end_reasoning(self) -> list[str]:
        if not self._reasoning_open:
            return []
        self._reasoning_open = False
        return [_json({"type": "reasoning-end", "id": _REASONING_ID})]


async def _ui_stream(fanout: Fanout, message_id: str) -> AsyncGenerator[str, None]:
    # Decoded events (Fanout.events), not a hub's: a hub writes askstream's
    # frames straight to the socket, and each event must be translated here.
    chunks = UIMessageChunks(message_id)
    yield chunks.start()
    try:
        async with aclosing(fanout.events(message_id)) as events:
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
        outage = unavailable(exc)  # the store's client failing: no bug, no traceback
        if outage is None:
            logger.exception("answer %s: the AI SDK stream failed", message_id)
        for chunk in chunks.fail("reading the answer failed" if outage is None else outage.message):
            yield chunk
    yield "[DONE]"


#: What a reader whose stream this instance ends on shutdown reads last (the
#: app's RESUME_EVENT is askstream's ``event: error``, no chunk to the SDK).
RESUME = "the server is shutting down; resume with GET /api/chat/{id}/stream"
_RESUME_FINAL = (
    f"data: {_json({'type': 'error', 'errorText': RESUME})}\n\ndata: [DONE]\n\n".encode()
)


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
            scope = {**scope, SCOPE_KEY: _FinalSaid(signal, _RESUME_FINAL)}
        return super().__call__(scope, receive, send)


def ui_message_stream(fanout: Fanout, message_id: str, *, ping: float) -> EventStreamResponse:
    """The response that reads answer ``message_id`` through ``fanout``, from its
    start, as a UI message stream (a reader the graceful stop waits for)."""
    return _UIMessageStreamResponse(
        _ui_stream(fanout, message_id),
        ping=ping,
        headers={**PROTOCOL_HEADER, "Content-Location": f"/api/streams/{message_id}"},
    )


# -- its OpenAPI description ------------------------------------------------------


def _chunk(kind: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": kind}, **fields},
        "required": ["type", *fields],
    }


_STRING = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_FINISH = {"enum": ["stop", "length", "content-filter", "tool-calls", "other"]}
_METADATA = {
    "type": "object",
    "description": "What the answer cost, as the model counted it (absent if it did not).",
    "properties": {
        "usage": {
            "type": "object",
            "properties": {"inputTokens": _COUNT, "outputTokens": _COUNT, "totalTokens": _COUNT},
            "required": ["inputTokens", "outputTokens", "totalTokens"],
        }
    },
}
_CHUNK = {
    "oneOf": [
        _chunk("start", messageId=_STRING),
        _chunk("text-start", id=_STRING),
        _chunk("text-delta", id=_STRING, delta=_STRING),
        _chunk("text-end", id=_STRING),
        {
            "type": "object",
            "properties": {
                "type": {"const": "finish"},
                "finishReason": _FINISH,
                "messageMetadata": _METADATA,
            },
            "required": ["type", "finishReason"],
        },
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
