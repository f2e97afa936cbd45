"""The token path's JSON (``service/_json.py``): the fast path (orjson) writes and
reads exactly what the standard library does."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from askstream.service._json import dumps, loads, std_dumps
from askstream.service._schemas import DeltaData, DoneData, ErrorData

# Any text, lone surrogates included (the fallback's case).
TEXT = st.lists(st.characters() | st.sampled_from(["\ud83d", "\ude42", "\x00", "\u2028"])).map(
    "".join
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(chat=st.text(), message=st.text(), delta=TEXT)
def test_a_delta_is_the_same_text_either_way(chat: str, message: str, delta: str) -> None:
    data = DeltaData(chatId=chat, messageId=message, delta=delta)
    assert dumps(data) == std_dumps(data)


@given(answer=TEXT, reason=st.text(), code=st.integers(100, 599), message=TEXT)
def test_done_and_error_are_the_same_text_either_way(
    answer: str, reason: str, code: int, message: str
) -> None:
    done = DoneData(chatId="c", messageId="m", answer=answer, finishReason=reason)
    error = ErrorData(code=code, message=message)
    assert dumps(done) == std_dumps(done)
    assert dumps(error) == std_dumps(error)


@given(value=JSON_VALUES)
def test_what_the_standard_library_writes_is_read_back_the_same(value: Any) -> None:
    text = json.dumps(value)
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


def test_text_that_is_not_json_is_a_value_error() -> None:
    for bad in ("", "{", "not json", "[1,]"):
        try:
            loads(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read")
