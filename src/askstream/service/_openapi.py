"""What the OpenAPI document says about the answer streams, as they are on the wire.

A ``text/event-stream`` body is not one JSON value, so it gets no ``schema``. It
is described event by event with ``itemSchema``, the way OpenAPI 3.2 (§4.14.4,
"Special Considerations for Server-Sent Events") describes one, and the way
FastAPI's own event-stream routes do in their 3.1 documents: each item is an
event ``{"event", "data", "id", "retry"}`` as a reader parses it, and ``data``,
a string, holds JSON whose shape ``contentSchema`` gives per event type.
schemathesis checks every event of every stream it reads against it.
"""

from __future__ import annotations

from typing import Any, get_type_hints, is_typeddict

from ._schemas import DeltaData, DoneData, ErrorData

__all__ = ["EVENT_STREAM", "LAST_EVENT_ID", "restrict_overrides"]

#: Ids are the answer's event numbers: "1", "2", ... (the memory and Redis stores alike).
_EVENT_ID = {"type": "string", "pattern": "^[1-9][0-9]*$"}


_JSON_TYPES = {str: "string", int: "integer"}


def _object(shape: type) -> dict[str, Any]:
    """The JSON Schema of a wire TypedDict of strings and integers (pydantic takes
    ``typing.TypedDict`` only from Python 3.12 on)."""
    hints = get_type_hints(shape)
    return {
        "title": shape.__name__,
        "type": "object",
        "properties": {
            name: _object(hint) if is_typeddict(hint) else {"type": _JSON_TYPES[hint]}
            for name, hint in hints.items()
        },
        "required": [name for name in hints if name in shape.__required_keys__],  # type: ignore[attr-defined]
    }


def _event(kind: str, data: type, *, description: str, has_id: bool = True) -> dict[str, Any]:
    required = ["data", "event", "id"] if has_id else ["data", "event"]
    if kind == "message":
        required.remove("event")  # a reader that applies no default leaves it out
    return {
        "type": "object",
        "description": description,
        "properties": {
            "event": {"const": kind},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _object(data),
            },
            "id": _EVENT_ID,
            "retry": {"type": "integer", "minimum": 0},
        },
        "required": required,
    }


_EVENT = {
    "oneOf": [
        _event("message", DeltaData, description="A piece of the answer."),
        _event(
            "reasoning",
            DeltaData,
            description="A piece of a thinking model's reasoning, before the answer; "
            "not part of it.",
        ),
        _event(
            "done",
            DoneData,
            description="The last event: the whole answer and why the model stopped.",
        ),
        _event(
            "error",
            ErrorData,
            description="The last event of an answer that failed after it began. It has an "
            "id when it is part of the answer's log; one the server adds on its own "
            "(shutting down, the log failing) has none.",
            has_id=False,
        ),
    ]
}

#: The 200 of every route that streams an answer.
EVENT_STREAM: dict[str, Any] = {
    "description": "The answer as server-sent events: `message` events with "
    '`{"chatId", "messageId", "delta"}` (after `reasoning` events, alike, from a thinking '
    "model), then `done` (or `error`), each with its id; `: ping` comments while nothing "
    "else comes. See docs/api.md.",
    "content": {"text/event-stream": {"itemSchema": _EVENT}},
    "headers": {
        "Content-Location": {
            "description": "`/api/streams/{messageId}`: where to resume this answer.",
            "schema": {"type": "string"},
        }
    },
}

#: The header a reconnecting EventSource sends, and what it means here.
LAST_EVENT_ID = (
    "The id of the last event the client got (an EventSource sends it when it "
    "reconnects): the stream goes on after it. Absent or empty: from the start. "
    "An id this stream never gave out is 400."
)


# The overrides (ASKSTREAM_REQUEST_OVERRIDES) by their names on /api/ask's wire.
_OVERRIDE_FIELDS = {"temperature": "temperature", "max_tokens": "maxTokens", "system": "system"}


def restrict_overrides(document: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Describe ``POST /api/ask``'s overrides that this server does not allow as
    null only (a value is ``400``), in ``document`` itself.

    >>> doc = {"paths": {"/api/ask": {"post": {"requestBody": {"content": {
    ...     "application/json": {"schema": {"properties": {"system": {"type": "string"}}}}}}}}}}
    >>> restrict_overrides(doc, ("temperature",))
    >>> doc["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"][
    ...     "schema"]["properties"]["system"]["type"]
    'null'
    """
    body = document["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"]
    properties = body["schema"]["properties"]
    for name, field in _OVERRIDE_FIELDS.items():
        if name not in allowed and field in properties:
            properties[field] = {
                "type": "null",
                "title": properties[field].get("title", field),
                "description": "Not for a request to set on this server "
                "(`ASKSTREAM_REQUEST_OVERRIDES`): any value but null is 400.",
            }
