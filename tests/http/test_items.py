"""What a source may yield and the bytes it becomes: the fast path against the exact one."""

from __future__ import annotations

import json
from collections import UserDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from askstream import Decoder, Event, encode
from askstream.http._items import encode_item


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


@pytest.mark.parametrize("item", [b"bytes", 42, None, ["a"]], ids=["bytes", "int", "none", "list"])
def test_anything_else_is_a_type_error(item: object) -> None:
    with pytest.raises(TypeError, match="must yield Event, str or a mapping"):
        encode_item(item)
