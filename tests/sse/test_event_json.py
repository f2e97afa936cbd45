"""Event.json(): an event's data parsed as JSON, or an error of askstream's own tree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from askstream import AskstreamError, Decoder, Event, JSONDataError, RemoteProtocolError, encode

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(json_values)
def test_data_written_as_json_reads_back_through_the_wire(value: object) -> None:
    try:
        wire = encode(Event(json.dumps(value)))
    except UnicodeEncodeError:  # a lone surrogate is not UTF-8
        return
    [event] = Decoder().feed(wire)
    assert event.json() == value


@pytest.mark.parametrize(
    "data",
    ["", "Hi", "{'single': 'quotes'}", '{"a": 1', "[1, 2]]", "1" * 5000],
    ids=["empty", "plain-text", "python-repr", "cut-short", "trailing-garbage", "int-too-long"],
)
def test_data_that_is_not_json_raises_json_data_error(data: str) -> None:
    with pytest.raises(JSONDataError) as info:
        Event(data).json()
    assert info.value.data == (data if len(data) <= 200 else data[:200] + "...")
    assert isinstance(info.value.__cause__, ValueError)
    assert "event data is not JSON" in str(info.value)


def test_the_error_is_in_askstreams_tree_and_a_value_error() -> None:
    """One `except AskstreamError` covers it; code that caught json's ValueError still does."""
    assert issubclass(JSONDataError, RemoteProtocolError)
    assert issubclass(JSONDataError, AskstreamError)
    assert issubclass(JSONDataError, ValueError)
