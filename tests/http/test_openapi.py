"""openapi_event_stream: a FastAPI app's document describes its stream event by event,
and the events the app sends over a real socket are what the document says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from askstream import connect, openapi_event_stream
from askstream.testing import ServerProcess
from tests.http.fastapi_apps import Delta
from tests.http.support import UVICORN_ARGS


@pytest.fixture(scope="module")
def fastapi_server() -> Iterator[ServerProcess]:
    with ServerProcess("tests.http.fastapi_apps:app", args=UVICORN_ARGS) as process:
        yield process


def _matches(item: dict[str, Any], event: dict[str, Any]) -> bool:
    """Enough of JSON Schema for these item schemas: const, required, and the data's
    JSON checked by the model the contentSchema came from."""
    props = item["properties"]
    if event.get("event", "message") != props["event"]["const"]:
        return False
    if not set(item["required"]) <= set(event):
        return False
    if "contentSchema" in props["data"]:
        Delta.model_validate(json.loads(event["data"]))
    return True


def test_the_served_document_describes_each_event_and_the_stream_keeps_to_it(
    fastapi_server: ServerProcess,
) -> None:
    document = httpx.get(f"{fastapi_server.url}/openapi.json").json()
    content = document["paths"]["/feed"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/event-stream"}
    assert "schema" not in content["text/event-stream"], "a stream of events is no JSON string"
    items = content["text/event-stream"]["itemSchema"]["oneOf"]
    message, done = items
    assert message["properties"]["data"]["contentSchema"]["$id"] == "urn:askstream:event:message"
    assert message["properties"]["data"]["contentSchema"]["$defs"]["Word"]["type"] == "object"
    assert done["properties"]["data"] == {"type": "string"}

    with connect("GET", f"{fastapi_server.url}/feed", until={"done"}) as source:
        events = [{"event": e.event, "data": e.data} for e in source]
    assert [e["event"] for e in events] == ["message", "message", "done"]
    for event in events:
        assert sum(_matches(item, event) for item in items) == 1, event


def test_one_event_type_is_its_item_schema_itself() -> None:
    doc = openapi_event_stream({"message": {"type": "object"}})
    item = doc["content"]["text/event-stream"]["itemSchema"]
    assert item["required"] == ["data"]  # a message's type may be left out
    assert item["properties"]["data"]["contentSchema"] == {"type": "object"}


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ({}, ValueError),
        ({"message": int}, TypeError),
        ({"message": Delta(words=[], final=True)}, TypeError),
    ],
    ids=["no-events", "not-a-model", "a-model-instance"],
)
def test_what_cannot_describe_data_is_refused(events: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        openapi_event_stream(events)


def test_with_id_requires_an_id_on_every_event() -> None:
    doc = openapi_event_stream({"message": None, "done": None}, with_id=True)
    items = doc["content"]["text/event-stream"]["itemSchema"]["oneOf"]
    assert [item["required"] for item in items] == [["data", "id"], ["data", "event", "id"]]
