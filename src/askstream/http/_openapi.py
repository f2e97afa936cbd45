"""``openapi_event_stream``: an event stream's OpenAPI response, event by event.

A ``text/event-stream`` body is no JSON value, so a ``schema`` of type string
says nothing. OpenAPI 3.2 (§4.14.4, "Special Considerations for Server-Sent
Events") describes it with ``itemSchema``: each item is one event as a reader
parses it, ``{"event", "data", "id", "retry"}``; FastAPI's own event streams
put the same in their 3.1 documents. ``data`` is a string; when it holds JSON,
``contentMediaType`` and ``contentSchema`` (JSON Schema 2020-12 §8) give its
shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["openapi_event_stream"]


def _data_schema(kind: str, data: Any) -> dict[str, Any]:
    if data is None:
        return {"type": "string"}
    if isinstance(data, Mapping):
        content = dict(data)
    else:
        # A Pydantic model class, known by its v2 method: pydantic is not imported.
        json_schema = getattr(data, "model_json_schema", None)
        if not isinstance(data, type) or not callable(json_schema):
            raise TypeError(
                f"event {kind!r}: the data is described by a Pydantic model class, a JSON "
                f"Schema mapping or None (text), not {data!r}"
            )
        content = json_schema()
    if "$defs" in content and "$id" not in content:
        # "#/$defs/..." must resolve in this schema, not at the document's root
        # (JSON Schema 2020-12 §8.2.1): an $id makes it a resource of its own.
        content = {"$id": f"urn:askstream:event:{kind}", **content}
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": content}


def openapi_event_stream(
    events: Mapping[str, Any],
    *,
    description: str = "A stream of server-sent events (text/event-stream).",
    with_id: bool = False,
) -> dict[str, Any]:
    """The OpenAPI response object of a stream of ``events``: pass it to FastAPI's ``responses``.

    ``events`` maps each event type (``"message"`` is the default type) to what
    its ``data`` holds: a Pydantic model class (its JSON schema), a JSON Schema
    mapping, or ``None`` for plain text. ``with_id``: every event has an ``id``.

    >>> doc = openapi_event_stream({"message": {"type": "object"}, "done": None})
    >>> [item["properties"]["event"]["const"] for item in
    ...  doc["content"]["text/event-stream"]["itemSchema"]["oneOf"]]
    ['message', 'done']

    Example::

        @app.get("/feed", responses={200: openapi_event_stream({"message": Delta})})
        async def feed() -> EventStreamResponse:
            return EventStreamResponse(deltas())  # yields Delta models
    """
    if not events:
        raise ValueError("an event stream needs at least one event type")
    items = []
    for kind, data in events.items():
        required = ["data"]
        if kind != "message":  # a reader that applies no default leaves it out
            required.append("event")
        if with_id:
            required.append("id")
        items.append(
            {
                "type": "object",
                "properties": {
                    "event": {"const": kind},
                    "data": _data_schema(kind, data),
                    "id": {"type": "string"},
                    "retry": {"type": "integer", "minimum": 0},
                },
                "required": required,
            }
        )
    item_schema = items[0] if len(items) == 1 else {"oneOf": items}
    return {
        "description": description,
        "content": {"text/event-stream": {"itemSchema": item_schema}},
    }
