"""Text from outside, with plain calls: surrogates, JSON depth, NUL, echoes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from askstream.service import ServiceError
from askstream.service._text import Text, depth, loads, shown, valid_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("\ud83d", "\ufffd"),
        ("a\ude42b", "a\ufffdb"),
        ("\ud83d\ude42", "\ufffd\ufffd"),  # two halves in one str are still two lone ones
        ("🙂 ok", "🙂 ok"),
        ("中文", "中文"),
    ],
    ids=["ascii", "high", "low", "pair-of-lones", "emoji", "chinese"],
)
def test_valid_text_replaces_each_lone_surrogate(text: str, expected: str) -> None:
    assert valid_text(text) == expected
    valid_text(text).encode()  # always encodable


@given(st.text())
def test_valid_text_always_encodes_and_keeps_valid_text(text: str) -> None:
    cleaned = valid_text(text)
    cleaned.encode()
    if all(not "\ud800" <= char <= "\udfff" for char in text):
        assert cleaned == text


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(json_values)
def test_depth_is_the_nesting_of_the_json_strings_not_counted(value: Any) -> None:
    assert depth(json.dumps(value).encode()) == nesting(value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": "]]]]"}', 1),
        (b'{"a": "\\"[[["}', 1),  # an escaped quote does not end the string
        (b"[" * 40 + b"]" * 40, 40),
    ],
)
def test_depth_table(body: bytes, expected: int) -> None:
    assert depth(body) == expected


def test_loads_refuses_deep_json_before_parsing_it() -> None:
    with pytest.raises(ServiceError) as caught:
        loads(b"[" * 100_000)  # not even JSON: the depth is checked first
    assert (caught.value.status, caught.value.message) == (
        400,
        "the JSON nests deeper than 32 levels",
    )
    assert loads(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(ServiceError, match="not JSON"):
        loads(b"{")


class Model(BaseModel):
    field: Text


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "half \ud83d"])
def test_text_refuses_nul_and_lone_surrogates(value: str) -> None:
    with pytest.raises(ValidationError):
        Model(field=value)
    assert Model(field="fine 🙂").field == "fine 🙂"


def test_shown_cuts_the_echo() -> None:
    assert shown("abc") == "'abc'"
    cut = shown("x" * 10_000)
    assert cut == "'" + "x" * 100 + "'... (10000 characters)"
