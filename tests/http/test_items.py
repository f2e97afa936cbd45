"""What a source may yield and the bytes it becomes: the fast path against the exact one."""

from __future__ import annotations

import dataclasses
import json
from collections import UserDict

import httpx
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from askstream import Decoder, Event, connect, encode
from askstream.http._items import encode_item
from askstream.testing import ServerProcess
from tests.http.apps import Delta, Usage


@given(st.text())
def test_a_str_encodes_as_the_event_holding_it(text: str) -> None:
    try:
        exact = encode(Event(text))
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8 either way
        with pytest.raises(UnicodeEncodeError):
            encode_item(text)
        return
    assert encode_item(text) == exact


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), json_values))
def test_a_mapping_is_one_line_of_json_that_decodes_back(payload: dict[str, object]) -> None:
    try:
        wire = encode_item(payload)
    except UnicodeEncodeError:
        return
    assert wire.count(b"\n") == 2
    [event] = Decoder().feed(wire)
    assert json.loads(event.data) == payload


def test_events_and_mapping_subclasses_are_accepted() -> None:
    assert encode_item(Event("x", event="done", id="9")) == b"event: done\nid: 9\ndata: x\n\n"
    assert encode_item(UserDict({"a": 1})) == b'data: {"a":1}\n\n'


def test_a_pydantic_model_is_sent_as_its_own_json() -> None:
    assert encode_item(Delta(chat_id="c1", delta="你好")) == (
        'data: {"chatId":"c1","delta":"你好"}\n\n'.encode()
    )


def test_a_dataclass_is_sent_as_json_of_its_fields() -> None:
    assert encode_item(Usage(prompt=3, completion=5, models=["m"])) == (
        b'data: {"prompt":3,"completion":5,"models":["m"]}\n\n'
    )


class _Indented(pydantic.BaseModel):
    text: str

    def model_dump_json(self, **kwargs: object) -> str:
        return super().model_dump_json(indent=2)


def test_a_model_whose_json_spans_lines_is_still_one_event() -> None:
    [event] = Decoder().feed(encode_item(_Indented(text="a\nb")))
    assert json.loads(event.data) == {"text": "a\nb"}


@dataclasses.dataclass
class _Unserialisable:
    when: object


@pytest.mark.parametrize(
    "item",
    [b"bytes", 42, None, ["a"], Delta, Usage],
    ids=["bytes", "int", "none", "list", "a-model-class", "a-dataclass-class"],
)
def test_anything_else_is_a_type_error(item: object) -> None:
    with pytest.raises(TypeError, match="Event, str, a mapping, a dataclass or a Pydantic model"):
        encode_item(item)


def test_a_dataclass_holding_what_json_cannot_say_is_jsons_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_item(_Unserialisable(object()))


def test_models_dataclasses_and_dicts_arrive_as_json_over_a_real_socket(
    server: ServerProcess,
) -> None:
    """The bug this fixes: a model or a dataclass became `event: error` 500."""
    with connect("GET", f"{server.url}/objects", reconnect=None) as source:
        events = list(source)
    assert [(e.event, e.json()) for e in events] == [
        ("message", {"chatId": "c1", "delta": "Hi"}),
        ("message", {"prompt": 1, "completion": 2, "models": ["demo"]}),
        ("message", {"plain": "dict"}),
    ]
    assert httpx.get(f"{server.url}/hello").status_code == 200
