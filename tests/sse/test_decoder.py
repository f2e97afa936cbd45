"""Decoder conformance: WHATWG HTML §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting
an event stream", driven by the language-neutral vectors in ``vectors.json``.

Every vector must give the same events, ``last_event_id`` and ``retry`` however its bytes
are cut into chunks: all at once, one byte at a time, or wherever hypothesis likes.
``spec_model`` is an independent whole-stream transcription of the spec used as an
oracle for the properties that go beyond the table.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from askstream import AskstreamError, EventTooLarge, ProtocolError, RemoteProtocolError
from askstream.sse import Decoder, Event
from askstream.sse._decoder import MAX_RETRY

from .spec_model import parse as spec_parse

VECTORS_PATH = Path(__file__).with_name("vectors.json")
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["cases"]
VECTOR_IDS = [case["name"] for case in VECTORS]

CHUNKINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def stream_bytes(case: dict[str, Any]) -> bytes:
    if "input_hex" in case:
        return bytes.fromhex(case["input_hex"])
    return str(case["input"]).encode("utf-8")


def as_dict(event: Event) -> dict[str, Any]:
    assert type(event) is Event
    return {"data": event.data, "event": event.event, "id": event.id, "retry": event.retry}


def decode(chunks: Iterable[bytes], **kwargs: Any) -> dict[str, Any]:
    """Feed the chunks in order; return what a vector records."""
    decoder = Decoder(**kwargs)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events.extend(as_dict(event) for event in decoder.feed(chunk))
    return {"events": events, "last_event_id": decoder.last_event_id, "retry": decoder.retry}


def feed_each(decoder: Decoder, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        decoder.feed(chunk)


def expected(case: dict[str, Any]) -> dict[str, Any]:
    return {key: case[key] for key in ("events", "last_event_id", "retry")}


def one_byte_at_a_time(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def random_chunks(data: st.DataObject, raw: bytes) -> list[bytes]:
    """Cut ``raw`` at arbitrary points (empty chunks included)."""
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=16), label="cuts")
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[start:end] for start, end in itertools.pairwise(bounds)]


# --------------------------------------------------------------------------- the table


def test_vectors_file_is_well_formed() -> None:
    names = [case["name"] for case in VECTORS]
    assert len(names) >= 60
    assert len(set(names)) == len(names), "vector names must be unique"
    for case in VECTORS:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", case["name"]), case["name"]
        assert case["rule"], case["name"]
        assert ("input" in case) != ("input_hex" in case), case["name"]
        for event in case["events"]:
            assert set(event) == {"data", "event", "id", "retry"}, case["name"]


@pytest.mark.parametrize("case", VECTORS, ids=VECTOR_IDS)
def test_vector_expectations_agree_with_the_spec_model(case: dict[str, Any]) -> None:
    """Guards the hand-written table: the independent spec transcription agrees with it."""
    model = spec_parse(stream_bytes(case))
    assert {
        "events": model.events,
        "last_event_id": model.last_event_id,
        "retry": model.retry,
    } == expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=VECTOR_IDS)
def test_vector_fed_whole(case: dict[str, Any]) -> None:
    assert decode([stream_bytes(case)]) == expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=VECTOR_IDS)
def test_vector_fed_one_byte_at_a_time(case: dict[str, Any]) -> None:
    assert decode(one_byte_at_a_time(stream_bytes(case))) == expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=VECTOR_IDS)
@CHUNKINGS
@given(data=st.data())
def test_vector_fed_in_arbitrary_chunks(case: dict[str, Any], data: st.DataObject) -> None:
    assert decode(random_chunks(data, stream_bytes(case))) == expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=VECTOR_IDS)
def test_vector_events_are_dispatched_as_soon_as_their_blank_line_ends(
    case: dict[str, Any],
) -> None:
    """After every byte, the decoder has returned exactly what the stream so far dispatches.

    There is no flush at end of stream, so any prefix may be the whole stream: an event
    whose blank line is complete (a final CR included) must come out of that very feed,
    and ``last_event_id``/``retry`` must already reflect every complete line.
    """
    raw = stream_bytes(case)
    decoder = Decoder()
    seen: list[dict[str, Any]] = []
    for end in range(1, len(raw) + 1):
        seen.extend(as_dict(event) for event in decoder.feed(raw[end - 1 : end]))
        model = spec_parse(raw[:end])
        assert (seen, decoder.last_event_id, decoder.retry) == (
            model.events,
            model.last_event_id,
            model.retry,
        ), f"after {raw[:end]!r}"


# --------------------------------------------------------------------------- state


def test_fresh_decoder_has_no_last_event_id_and_no_retry() -> None:
    decoder = Decoder()
    assert decoder.last_event_id == ""
    assert decoder.retry is None
    assert decoder.feed(b"") == []


def test_empty_chunks_change_nothing() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    # The CR above was a line end: this LF belongs to it, it is not a blank line.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == [Event("a")]


def test_feed_returns_each_event_once() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: 1\n\ndata: 2") == [Event("1")]
    assert decoder.feed(b"\n\n") == [Event("2")]
    assert decoder.feed(b": keep-alive\n\n") == []


def test_decoded_event_id_is_none_without_an_id_and_equals_last_event_id_otherwise() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\n\nid: 7\ndata: b\n\n") == [
        Event("a", id=None),
        Event("b", id="7"),
    ]
    assert decoder.last_event_id == "7"


INITIAL_ID_CASES = [
    pytest.param(b"data: a\n\n", [Event("a", id="5")], "5", id="starts_from_the_given_id"),
    pytest.param(b"", [], "5", id="reports_the_given_id_before_any_input"),
    pytest.param(b"id\ndata: a\n\n", [Event("a")], "", id="empty_id_resets_the_given_id"),
    pytest.param(b"id: 6\ndata: a\n\n", [Event("a", id="6")], "6", id="new_id_replaces_it"),
    pytest.param(b"id: 6\n", [], "5", id="new_id_waits_for_dispatch"),
    pytest.param(b"id: 6\n\n", [], "6", id="dataless_block_still_sets_the_id"),
    pytest.param(b"id: \x00\ndata: a\n\n", [Event("a", id="5")], "5", id="id_with_nul_keeps_it"),
]


@pytest.mark.parametrize(("stream", "events", "last_event_id"), INITIAL_ID_CASES)
def test_decoder_constructed_with_last_event_id(
    stream: bytes, events: list[Event], last_event_id: str
) -> None:
    decoder = Decoder(last_event_id="5")
    assert decoder.last_event_id == "5"
    assert decoder.feed(stream) == events
    assert decoder.last_event_id == last_event_id
    model = spec_parse(stream, last_event_id="5")
    assert model.events == [as_dict(event) for event in events]
    assert model.last_event_id == last_event_id


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("2147483646", 2147483646),
        ("2147483647", MAX_RETRY),
        ("2147483648", MAX_RETRY),
        ("1" + "0" * 40, MAX_RETRY),
        ("9" * 5000, MAX_RETRY),  # int() refuses over 4300 digits: no error may leak
        ("0" * 5000 + "42", 42),
    ],
    ids=["below-cap", "at-cap", "past-cap", "40-digits", "5000-digits", "5000-zeros"],
)
def test_a_retry_of_any_length_is_kept_clamped_to_the_cap(digits: str, expected: int) -> None:
    """§9.2.6: "interpret the field value as an integer in base ten"; askstream clamps
    it to MAX_RETRY (2^31 - 1 ms) rather than ignoring it (docs/protocol.md)."""
    decoder = Decoder()
    assert decoder.feed(f"retry: {digits}\ndata: x\n\n".encode()) == [Event("x", retry=expected)]
    assert decoder.retry == expected
    assert MAX_RETRY == 2**31 - 1


def test_retry_is_kept_across_events() -> None:
    decoder = Decoder()
    decoder.feed(b"retry: 100\ndata: a\n\n")
    assert decoder.feed(b"data: b\n\n") == [Event("b")]
    assert decoder.retry == 100
    decoder.feed(b"retry: nope\n\n")
    assert decoder.retry == 100
    decoder.feed(b"retry: 7\n")
    assert decoder.retry == 7


# --------------------------------------------------------------------------- size limit

LIMIT = 1000


@pytest.mark.parametrize("prefix", [b"data: ", b"id: ", b"event: ", b": ", b"unknown: "])
def test_pending_line_longer_than_the_limit_raises(prefix: bytes) -> None:
    decoder = Decoder(max_event_size=LIMIT)
    line = prefix + b"x" * (LIMIT - len(prefix))
    for start in range(0, LIMIT, 100):
        assert decoder.feed(line[start : start + 100]) == []  # exactly LIMIT bytes: fine
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(b"x")  # LIMIT + 1 bytes, still no line end
    assert caught.value.limit == LIMIT
    assert isinstance(caught.value, RemoteProtocolError)


def test_line_of_exactly_the_limit_is_decoded() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    line = b"data: " + b"x" * (LIMIT - 6)
    assert decoder.feed(line + b"\n\n") == [Event("x" * (LIMIT - 6))]


def test_line_limit_counts_bytes_not_characters() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    # "data: " + 497 two-byte characters = 1000 bytes (503 characters): fine...
    assert decoder.feed(b"data: " + "é".encode() * 497) == []
    # ... one more character makes 1002 bytes.
    with pytest.raises(EventTooLarge):
        decoder.feed("é".encode())


def test_event_whose_data_lines_add_up_past_the_limit_raises() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    line = b"data: " + b"x" * 99 + b"\n"  # 99 bytes of data + 1 LF per line
    for _ in range(10):  # 990 data bytes (1000 with the LFs): not longer than the limit
        assert decoder.feed(line) == []
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(line)  # 1089 (1100) bytes: longer
    assert caught.value.limit == LIMIT


def test_event_just_below_the_limit_is_dispatched() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    line = b"data: " + b"x" * 99 + b"\n"
    events = decoder.feed(line * 10 + b"\n")
    assert events == [Event("\n".join(["x" * 99] * 10))]


def test_event_data_limit_counts_bytes_not_characters() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    line = b"data: " + "é".encode() * 50 + b"\n"  # 100 bytes (50 characters) of data
    with pytest.raises(EventTooLarge):
        feed_each(decoder, [line] * 12)  # 1200 bytes of data, only 600 characters


def test_data_limit_is_per_event_not_per_stream() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    event = b"data: " + b"x" * 900 + b"\n\n"
    for _ in range(50):  # 45 000 bytes of data in all, 900 per event
        assert decoder.feed(event) == [Event("x" * 900)]


def test_comments_and_dataless_blocks_do_not_accumulate_toward_the_limit() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    filler = b": " + b"c" * 500 + b"\nid: 1\nevent: e\n\n"
    for _ in range(20):
        assert decoder.feed(filler) == []
    assert decoder.feed(b"data: ok\n\n") == [Event("ok", id="1")]


def test_default_limit_is_16_mib() -> None:
    limit = 16 * 1024 * 1024
    decoder = Decoder()
    assert decoder.feed(b"data: " + b"x" * (limit - 6)) == []
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(b"x")
    assert caught.value.limit == limit


def test_no_limit_when_max_event_size_is_none() -> None:
    decoder = Decoder(max_event_size=None)
    big = b"x" * (16 * 1024 * 1024 + 1)
    assert decoder.feed(b"data: " + big) == []
    assert decoder.feed(b"\n\n") == [Event(big.decode())]


# --------------------------------------------------------------------------- any bytes

SSE_TOKENS = [
    b"data: ",
    b"\n\n",
    b"data",
    b"id",
    b"event",
    b"retry",
    b":",
    b": ",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\x00",
    b"0",
    b"42",
    b"-1",
    b"x",
    "你".encode(),
    "😀".encode(),
    b"\xff",
    b"\xe4\xbd",
    b"\xc0\x80",
]
SSE_ISH_BYTES = st.lists(st.sampled_from(SSE_TOKENS) | st.binary(max_size=3), max_size=60).map(
    b"".join
)


@settings(max_examples=300, deadline=None)
@given(raw=SSE_ISH_BYTES, data=st.data())
def test_any_bytes_in_any_chunks_decode_like_the_spec_model(
    raw: bytes, data: st.DataObject
) -> None:
    decoder = Decoder()
    seen: list[dict[str, Any]] = []
    fed = b""
    for chunk in random_chunks(data, raw):
        seen.extend(as_dict(event) for event in decoder.feed(chunk))
        fed += chunk
        model = spec_parse(fed)
        assert (seen, decoder.last_event_id, decoder.retry) == (
            model.events,
            model.last_event_id,
            model.retry,
        )


@settings(max_examples=300, deadline=None)
@given(raw=SSE_ISH_BYTES | st.binary(max_size=200), data=st.data(), limit=st.integers(1, 16))
def test_any_bytes_raise_nothing_but_event_too_large(
    raw: bytes, data: st.DataObject, limit: int
) -> None:
    decoder = Decoder(max_event_size=limit)
    try:
        for chunk in random_chunks(data, raw):
            for event in decoder.feed(chunk):
                assert type(event) is Event
                assert "\r" not in event.data
    except EventTooLarge as exc:
        caught: EventTooLarge | None = exc
    else:
        caught = None
    if caught is not None:
        assert caught.limit == limit
        assert isinstance(caught, ProtocolError)
        assert isinstance(caught, AskstreamError)
