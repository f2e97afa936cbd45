"""Round trip: whatever ``encode()`` writes, ``Decoder`` reads back, however the bytes are cut.

The expectation is computed from the input events alone, by the rules a reader applies
(WHATWG HTML §9.2.6): CR and CRLF in data arrive as LF, an event's id is the last id in
force at its dispatch ("" meaning none), an empty event type is "message", and ``retry``
belongs to the event that carried it while the decoder remembers the last one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from askstream.sse import Decoder, Event, comment, encode
from askstream.sse._decoder import MAX_RETRY

ROUNDTRIP = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Any Unicode scalar value except surrogates (they cannot be encoded as UTF-8).
ANY_CHAR = st.characters(exclude_categories=("Cs",))
# Pieces a codec gets wrong: line ends, NUL, BOM, colon, spaces, Unicode line separators.
AWKWARD = st.sampled_from(
    ["\n", "\r", "\r\n", "\n\r", "\0", "\ufeff", ":", " ", "  ", "\u2028", "\x85", "\x0b", "é"]
)
DATA = st.lists(AWKWARD | st.text(ANY_CHAR, max_size=12), max_size=8).map("".join)
NO_LINE_END = st.characters(exclude_categories=("Cs",), exclude_characters="\r\n")
EVENT_TYPE = st.just("message") | st.text(NO_LINE_END, max_size=12)
EVENT_ID = st.none() | st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=12
)
RETRY = st.none() | st.integers(min_value=0, max_value=2**64)
EVENTS = st.builds(Event, data=DATA, event=EVENT_TYPE, id=EVENT_ID, retry=RETRY)
# Each event may be followed by a comment (a heartbeat), which must change nothing.
STREAM = st.lists(st.tuples(EVENTS, st.none() | DATA), max_size=8)


@dataclass
class Expected:
    events: list[Event]
    last_event_id: str
    retry: int | None


def expectation(items: list[tuple[Event, str | None]], last_event_id: str = "") -> Expected:
    events = []
    last_id = last_event_id
    reconnection_time = None
    for event, _ in items:
        if event.id is not None:
            last_id = event.id
        # The decoder clamps a retry to MAX_RETRY (docs/protocol.md, "retry").
        retry = None if event.retry is None else min(event.retry, MAX_RETRY)
        if retry is not None:
            reconnection_time = retry
        events.append(
            Event(
                data=event.data.replace("\r\n", "\n").replace("\r", "\n"),
                event=event.event or "message",
                id=last_id or None,
                retry=retry,
            )
        )
    return Expected(events, last_id, reconnection_time)


def wire(items: list[tuple[Event, str | None]]) -> bytes:
    out = bytearray()
    for event, heartbeat in items:
        out += encode(event)
        if heartbeat is not None:
            out += comment(heartbeat)
    return bytes(out)


def random_chunks(data: st.DataObject, raw: bytes) -> list[bytes]:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=16), label="cuts")
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[start:end] for start, end in itertools.pairwise(bounds)]


def read(chunks: list[bytes], **kwargs: str) -> Expected:
    decoder = Decoder(**kwargs)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return Expected(events, decoder.last_event_id, decoder.retry)


@ROUNDTRIP
@given(items=STREAM, data=st.data())
def test_encoded_events_decode_back_in_any_chunking(
    items: list[tuple[Event, str | None]], data: st.DataObject
) -> None:
    chunks = random_chunks(data, wire(items))
    assert read(chunks) == expectation(items)


@ROUNDTRIP
@given(items=STREAM, data=st.data())
def test_encoded_events_decode_back_after_a_leading_bom(
    items: list[tuple[Event, str | None]], data: st.DataObject
) -> None:
    chunks = random_chunks(data, b"\xef\xbb\xbf" + wire(items))
    assert read(chunks) == expectation(items)


@settings(max_examples=100, deadline=None)
@given(items=STREAM, data=st.data(), resume_from=st.text(NO_LINE_END, min_size=1, max_size=8))
def test_encoded_events_decode_back_when_resuming_from_an_id(
    items: list[tuple[Event, str | None]], data: st.DataObject, resume_from: str
) -> None:
    chunks = random_chunks(data, wire(items))
    assert read(chunks, last_event_id=resume_from) == expectation(items, resume_from)


@settings(max_examples=100, deadline=None)
@given(items=STREAM)
def test_encoded_events_decode_back_one_byte_at_a_time(
    items: list[tuple[Event, str | None]],
) -> None:
    raw = wire(items)
    assert read([raw[i : i + 1] for i in range(len(raw))]) == expectation(items)


def test_bom_prefixed_stream_of_chinese_events() -> None:
    items: list[tuple[Event, str | None]] = [
        (Event("你好\r\n世界", event="问候", id="一"), "心跳"),
        (Event("😀", retry=0), None),
    ]
    raw = b"\xef\xbb\xbf" + wire(items)
    assert read([raw]) == expectation(items)
    assert read([raw[i : i + 1] for i in range(len(raw))]) == expectation(items)
