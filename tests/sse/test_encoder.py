"""Encoder conformance: ``encode()`` and ``comment()`` write text/event-stream that a reader
following WHATWG HTML §9.2.6 turns back into the same event, and refuse what the format
cannot carry (a field value with a line end would let one event forge another).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from askstream import LocalProtocolError, ProtocolError
from askstream.sse import Event, comment, encode

from .spec_model import parse as spec_parse

ENCODE_CASES = [
    # --- the data-only fast path
    pytest.param(Event("hello"), b"data: hello\n\n", id="data_only"),
    pytest.param(Event(""), b"data: \n\n", id="empty_data_still_writes_a_data_line"),
    pytest.param(Event(" lead"), b"data:  lead\n\n", id="leading_space_survives_the_strip"),
    pytest.param(Event("a: b"), b"data: a: b\n\n", id="colon_in_data"),
    pytest.param(Event('{"delta": "Hi"}'), b'data: {"delta": "Hi"}\n\n', id="json_payload"),
    pytest.param(
        Event("你好, 世界 😀"),
        "data: 你好, 世界 😀\n\n".encode(),
        id="chinese_and_emoji_as_utf8",
    ),
    pytest.param(Event("a\0b"), b"data: a\x00b\n\n", id="nul_in_data_is_carried"),
    # --- multi-line data: every CR, LF and CRLF starts a new data line
    pytest.param(Event("a\nb"), b"data: a\ndata: b\n\n", id="lf_splits_data"),
    pytest.param(Event("a\rb"), b"data: a\ndata: b\n\n", id="cr_splits_data"),
    pytest.param(Event("a\r\nb"), b"data: a\ndata: b\n\n", id="crlf_splits_data_once"),
    pytest.param(Event("a\n\rb"), b"data: a\ndata: \ndata: b\n\n", id="lf_cr_is_two_line_ends"),
    pytest.param(Event("a\n"), b"data: a\ndata: \n\n", id="trailing_lf_writes_empty_data_line"),
    pytest.param(Event("\n"), b"data: \ndata: \n\n", id="lone_lf"),
    pytest.param(Event("a\n\nb"), b"data: a\ndata: \ndata: b\n\n", id="blank_line_in_data"),
    pytest.param(
        Event("a\nb\rc\r\nd"), b"data: a\ndata: b\ndata: c\ndata: d\n\n", id="mixed_line_ends"
    ),
    pytest.param(
        Event("a\u2028b\u0085c\x0bd\x0ce"),
        "data: a\u2028b\u0085c\x0bd\x0ce\n\n".encode(),
        id="only_cr_and_lf_split_not_unicode_line_separators",
    ),
    pytest.param(
        Event("第一行\n第二行"), "data: 第一行\ndata: 第二行\n\n".encode(), id="chinese_lines"
    ),
    # --- event, id, retry
    pytest.param(Event("x", event="add"), b"event: add\ndata: x\n\n", id="event_type"),
    pytest.param(Event("x", event="message"), b"data: x\n\n", id="default_event_type_not_written"),
    pytest.param(Event("x", event="更新"), "event: 更新\ndata: x\n\n".encode(), id="chinese_event"),
    pytest.param(Event("x", id="1"), b"id: 1\ndata: x\n\n", id="id"),
    pytest.param(Event("x", id=" 1 "), b"id:  1 \ndata: x\n\n", id="id_with_spaces"),
    # --- the stored-token fast path: a numeric id, one data line
    pytest.param(Event("x", id="12"), b"id: 12\ndata: x\n\n", id="numeric_id"),
    pytest.param(
        Event('{"delta":"你"}', id="3"), 'id: 3\ndata: {"delta":"你"}\n\n'.encode(), id="token"
    ),
    pytest.param(Event("x", id="\u0663"), "id: \u0663\ndata: x\n\n".encode(), id="non_ascii_digit"),
    pytest.param(Event("x", retry=0), b"retry: 0\ndata: x\n\n", id="retry_zero"),
    pytest.param(Event("x", retry=3000), b"retry: 3000\ndata: x\n\n", id="retry"),
    pytest.param(
        Event("line one\nline two", id="1"),
        b"id: 1\ndata: line one\ndata: line two\n\n",
        id="id_with_multi_line_data",
    ),
    pytest.param(
        Event("a\r\nb", event="update", id="42", retry=1500),
        b"event: update\nid: 42\nretry: 1500\ndata: a\ndata: b\n\n",
        id="all_fields",
    ),
    pytest.param(
        Event("", event="ping", retry=10), b"event: ping\nretry: 10\ndata: \n\n", id="empty_data"
    ),
]


@pytest.mark.parametrize(("event", "wire"), ENCODE_CASES)
def test_encode_writes(event: Event, wire: bytes) -> None:
    assert encode(event) == wire


@pytest.mark.parametrize(("event", "wire"), ENCODE_CASES)
def test_encoded_event_reads_back_per_spec(event: Event, wire: bytes) -> None:
    del wire
    model = spec_parse(encode(event))
    expected_data = event.data.replace("\r\n", "\n").replace("\r", "\n")
    assert model.events == [
        {
            "data": expected_data,
            "event": event.event or "message",
            "id": event.id or None,
            "retry": event.retry,
        }
    ]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(Event("x", id=""), id="empty_id_only"),
        pytest.param(Event("a\nb", event="e", id="", retry=5), id="empty_id_with_every_field"),
    ],
)
def test_empty_id_writes_a_line_that_resets_the_last_event_id(event: Event) -> None:
    """``id=""`` must reach the reader as an id field with an empty value."""
    wire = encode(event)
    model = spec_parse(wire, last_event_id="previous")
    assert model.last_event_id == ""
    assert [e["id"] for e in model.events] == [None]
    assert model.events[0]["data"] == event.data


def test_id_none_writes_no_id_line() -> None:
    model = spec_parse(encode(Event("x", event="e", retry=1)), last_event_id="previous")
    assert model.last_event_id == "previous"
    assert b"id" not in encode(Event("x", event="e", retry=1))


INVALID_EVENTS = [
    pytest.param(Event("x", event="a\nb"), id="event_with_lf"),
    pytest.param(Event("x", event="a\rb"), id="event_with_cr"),
    pytest.param(Event("x", event="a\r\nb"), id="event_with_crlf"),
    pytest.param(Event("x", event="\n"), id="event_only_lf"),
    pytest.param(Event("x", id="1\n2"), id="id_with_lf"),
    pytest.param(Event("x", id="1\r2"), id="id_with_cr"),
    pytest.param(Event("x", id="1\0"), id="id_with_nul"),
    pytest.param(Event("x", id="\0"), id="id_only_nul"),
    pytest.param(Event("x", retry=-1), id="retry_negative"),
    pytest.param(Event("x", retry=True), id="retry_bool_true"),
    pytest.param(Event("x", retry=False), id="retry_bool_false"),
    pytest.param(Event("x", retry="5"), id="retry_str"),  # type: ignore[arg-type]
    pytest.param(Event("x", retry=1.5), id="retry_float"),  # type: ignore[arg-type]
    pytest.param(Event("x", retry=5.0), id="retry_integral_float"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("event", INVALID_EVENTS)
def test_encode_refuses(event: Event) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        encode(event)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ProtocolError)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(Event("x\ny", event="ok", id="1\n2"), id="bad_id_after_good_event"),
        pytest.param(Event("x", event="a\nb", id="1"), id="bad_event_before_good_id"),
    ],
)
def test_encode_refuses_with_other_fields_present(event: Event) -> None:
    with pytest.raises(LocalProtocolError):
        encode(event)


def test_encode_accepts_nul_in_event_type() -> None:
    """Only ``id`` is ignored by readers when it holds NUL; an event type may hold one."""
    model = spec_parse(encode(Event("x", event="a\0b")))
    assert model.events[0]["event"] == "a\0b"


COMMENT_CASES = [
    pytest.param("ping", b": ping\n\n", id="single_line"),
    pytest.param("", b": \n\n", id="empty"),
    pytest.param("心跳", ": 心跳\n\n".encode(), id="chinese"),
    pytest.param("a\nb", b": a\n: b\n\n", id="lf_makes_two_comment_lines"),
    pytest.param("a\rb", b": a\n: b\n\n", id="cr_makes_two_comment_lines"),
    pytest.param("a\r\nb", b": a\n: b\n\n", id="crlf_makes_two_comment_lines"),
    pytest.param("data: forged", b": data: forged\n\n", id="field_lookalike_stays_a_comment"),
    pytest.param("x\ndata: forged", b": x\n: data: forged\n\n", id="no_forged_data_line"),
]


@pytest.mark.parametrize(("text", "wire"), COMMENT_CASES)
def test_comment_writes(text: str, wire: bytes) -> None:
    assert comment(text) == wire


@pytest.mark.parametrize(("text", "wire"), COMMENT_CASES)
def test_comment_dispatches_nothing(text: str, wire: bytes) -> None:
    del wire
    model = spec_parse(encode(Event("before", id="1")) + comment(text) + encode(Event("after")))
    assert [e["data"] for e in model.events] == ["before", "after"]
    assert model.last_event_id == "1"


@given(data=st.text(), number=st.integers(0, 10**18))
def test_a_numeric_id_adds_its_line_to_what_the_data_alone_writes(data: str, number: int) -> None:
    # The two hot paths (data only; a stored token with its id) agree with each other.
    assert encode(Event(data, id=str(number))) == b"id: %d\n" % number + encode(Event(data))
