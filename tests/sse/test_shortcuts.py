"""The decoder's shortcuts give what WHATWG HTML §9.2.6 gives, or stand aside.

``askstream.sse._batch`` decodes whole runs of events of the common shapes
(only ``data:`` lines; one ``id:`` or one ``event:`` line, then ``data:`` lines;
every line ending in LF, or every line in CRLF) without a loop per line, and
the decoder keeps the lines of an unfinished event in its buffer until the
event can be decoded whole. Both are checked here against ``spec_model``, the
literal transcription of the spec: on streams built to sit near those shapes
(so that the shortcuts are taken, and refused where a line breaks the shape),
in any chunking, and on the edge cases written out one by one. After every
chunk the decoder must have returned exactly the events the stream so far
dispatches, and ``last_event_id`` and ``retry`` must already be what the spec
says.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from askstream import EventTooLarge
from askstream.sse import Decoder
from askstream.sse._batch import _crlf_only, decode_run, decode_token_run

from .spec_model import parse as spec_parse
from .test_decoder import as_dict, one_byte_at_a_time, random_chunks


def assert_decodes_like_the_spec(chunks: list[bytes], *, last_event_id: str = "") -> None:
    """Feed ``chunks`` in order; after each, compare with the spec on the stream so far."""
    decoder = Decoder(last_event_id=last_event_id)
    seen: list[dict[str, Any]] = []
    fed = b""
    for chunk in chunks:
        seen.extend(as_dict(event) for event in decoder.feed(chunk))
        fed += chunk
        model = spec_parse(fed, last_event_id=last_event_id)
        assert (seen, decoder.last_event_id, decoder.retry) == (
            model.events,
            model.last_event_id,
            model.retry,
        ), f"after {fed!r}"


# ------------------------------------------------------------------ streams near the shapes

# Field values without line ends: what the shapes carry.
VALUES = st.sampled_from(
    ["", "x", " x", "  x", "a b", "é", "你好", "😀", ":", "data: y", "id: 3", "\ufeff", "\x0b"]
) | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=6)
# Lines that break a shape, each for a rule of §9.2.6 the shortcut must not skip.
ODD_LINES = st.sampled_from(
    [
        ": a comment",
        ":",
        "data:no space",
        "data",
        "data:",
        "id",
        "id: a\0b",
        "event: typed",
        "retry: 7",
        "retry: x",
        "unknown: 1",
        " data: leading space",
        "",
        "data: \0",
    ]
)
LINE_ENDS = ["\n", "\r\n", "\r"]


@st.composite
def near_shape_streams(draw: st.DrawFn) -> bytes:
    """A run of events of one shape, now and then broken by an odd line or line end."""
    header = draw(st.sampled_from(["", "id", "event"]), label="header")
    eol = draw(st.sampled_from(["\n", "\r\n"]), label="line end")
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 6), label="events")):
        block = [f"{header}: {draw(VALUES)}"] if header else []
        block += ["data: " + draw(VALUES) for _ in range(draw(st.integers(not header, 4)))]
        if draw(st.integers(0, 7)) == 0:
            block.insert(draw(st.integers(0, len(block))), draw(ODD_LINES))
        lines += [*block, ""]
    ends = [eol] * len(lines)
    if draw(st.integers(0, 4)) == 0:  # one line end of another kind
        ends[draw(st.integers(0, len(ends) - 1))] = draw(st.sampled_from(LINE_ENDS))
    text = "".join(line + end for line, end in zip(lines, ends, strict=True))
    text += draw(st.sampled_from(["", "data: unfinished", f"id: 9{eol}data: more{eol}"]))
    bom = draw(st.sampled_from(["", "", "\ufeff"]))
    return (bom + text).encode()


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=near_shape_streams(), data=st.data(), resume=st.sampled_from(["", "7"]))
def test_streams_near_the_common_shapes_decode_like_the_spec_in_any_chunking(
    raw: bytes, data: st.DataObject, resume: str
) -> None:
    assert_decodes_like_the_spec(random_chunks(data, raw), last_event_id=resume)


# ------------------------------------------------------------------ the shortcuts themselves

CLEAN_VALUES = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=8
)


@st.composite
def runs(draw: st.DrawFn, header: str, eol: str) -> str:
    """A stream of whole events of one shape, ending with its last blank line."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        if header:
            lines.append(f"{header}: {draw(CLEAN_VALUES)}")
        lines += ["data: " + draw(CLEAN_VALUES) for _ in range(draw(st.integers(1, 4)))]
        lines.append("")
    return eol.join(lines) + eol


@settings(max_examples=100, deadline=None)
@pytest.mark.parametrize("header", ["", "id", "event"])
@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
@given(data=st.data(), last_id=st.sampled_from(["", "5"]))
def test_every_run_of_a_common_shape_is_decoded_at_once_as_the_spec_says(
    header: str, eol: str, data: st.DataObject, last_id: str
) -> None:
    stream = data.draw(runs(header, eol))
    # A run stops before the line end of its last line and the blank line after it.
    run = decode_run(stream[: -2 * len(eol)], eol == "\r\n", last_id)
    assert run is not None, "the shortcut must take every run of its shapes"
    model = spec_parse(stream.encode(), last_event_id=last_id)
    assert ([as_dict(event) for event in run[0]], run[1]) == (model.events, model.last_event_id)


@settings(max_examples=100, deadline=None)
@pytest.mark.parametrize("header", ["", "id", "event"])
@given(data=st.data())
def test_a_crlf_run_is_certified_and_decoded_with_lf_markers(
    header: str, data: st.DataObject
) -> None:
    # Every line end CRLF: decode_run marks data lines with LF, which makes each
    # event's data buffer at once, and must still give what the spec gives.
    stream = data.draw(runs(header, "\r\n"))
    region = stream[:-4]
    assert _crlf_only(region) is ("\r\n" in region)  # a lone data line has no line end
    run = decode_run(region, True, "")
    assert run is not None
    model = spec_parse(stream.encode())
    assert ([as_dict(event) for event in run[0]], run[1]) == (model.events, model.last_event_id)


# Values that look like the start of another line, or are empty: what a line end
# of another kind would need to pass a data line off as a blank line and a header.
TRICKY_VALUES = st.sampled_from(["", "x", "id: 5", "event: e", "data: y", " "]) | CLEAN_VALUES


@st.composite
def crlf_runs_with_stray_line_ends(draw: st.DrawFn, header: str) -> str:
    """A CRLF run of one shape (without its last blank line) with lone CRs and LFs put in."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        if header:
            lines.append(f"{header}: {draw(TRICKY_VALUES)}")
        lines += ["data: " + draw(TRICKY_VALUES) for _ in range(draw(st.integers(1, 3)))]
        lines.append("")
    region = "\r\n".join(lines[:-1])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(region)))
        region = region[:at] + draw(st.sampled_from(["\r", "\n"])) + region[at:]
    return region


@settings(max_examples=300, deadline=None)
@pytest.mark.parametrize("header", ["", "id", "event"])
@given(data=st.data())
def test_lone_crs_and_lfs_in_a_crlf_run_are_decoded_as_the_spec_says_or_refused(
    header: str, data: st.DataObject
) -> None:
    # Mostly NUL marks the data lines then; LF when the CRs and LFs put in made
    # only new CRLF line ends.
    region = data.draw(crlf_runs_with_stray_line_ends(header))
    run = decode_run(region, True, "")
    if run is not None:
        model = spec_parse((region + "\r\n\r\n").encode())
        assert ([as_dict(event) for event in run[0]], run[1]) == (
            model.events,
            model.last_event_id,
        )


@pytest.mark.parametrize(
    ("text", "certified"),
    [
        pytest.param("a\r\nb", True, id="crlf"),
        pytest.param("\r\n\r\n", True, id="blank_line"),
        pytest.param("é\r\n你\r\n", True, id="crlf_non_ascii"),
        pytest.param("a\r\n\0b", True, id="nul_is_no_line_end"),
        pytest.param("ab", False, id="no_line_end"),
        pytest.param("a\rb", False, id="lone_cr"),
        pytest.param("a\nb", False, id="lone_lf"),
        pytest.param("a\r\r\nb", False, id="lone_cr_before_crlf"),
        pytest.param("a\r\n\nb", False, id="lone_lf_after_crlf"),
        pytest.param("a\r\nb\r", False, id="lone_cr_at_the_end"),
    ],
)
def test_only_runs_whose_every_line_end_is_crlf_are_certified(text: str, certified: bool) -> None:
    assert _crlf_only(text) is certified


@settings(max_examples=100, deadline=None)
@given(values=st.lists(CLEAN_VALUES, min_size=1, max_size=8), last_id=st.sampled_from(["", "5"]))
def test_every_run_of_single_line_data_events_is_decoded_on_the_bytes(
    values: list[str], last_id: str
) -> None:
    stream = "".join(f"data: {value}\n\n" for value in values).encode()
    events = decode_token_run(stream[:-2], last_id)
    assert events is not None
    model = spec_parse(stream, last_event_id=last_id)
    assert [as_dict(event) for event in events] == model.events


REFUSED_RUNS = [
    pytest.param("id: 1\r\ndata: a\r\n: note\r\ndata: b", True, id="comment_inside_an_event"),
    pytest.param("id: 1\r\ndata: a\r\ndata:b", True, id="data_without_the_space"),
    pytest.param("id: 1\r\nretry: 5\r\ndata: a", True, id="retry_field"),
    pytest.param("id: 1\0\r\ndata: a", True, id="id_with_nul"),
    pytest.param("id: 1\r\ndata: a\rb", True, id="lone_cr_in_a_crlf_run"),
    pytest.param("id: 1\r\ndata: a\nb", True, id="lone_lf_in_a_crlf_run"),
    pytest.param("id: 1\ndata: a\n\nid: 2\ndata: b", True, id="lf_run_read_as_crlf"),
    pytest.param("id: 1\r\ndata: a", False, id="crlf_run_read_as_lf"),
    pytest.param("id: 1\r\nevent: e\r\ndata: a", True, id="two_fields_in_one_event"),
    pytest.param("event: e\r\ndata: a\r\n\r\nid: 2\r\ndata: b", True, id="two_shapes_in_one_run"),
    pytest.param("id: 1\r\ndata: a\r\n\r\n\r\nid: 2\r\ndata: b", True, id="two_blank_lines"),
    pytest.param("data: a\n\n\ndata: b", False, id="two_blank_lines_between_data_events"),
    pytest.param(": hello\ndata: a", False, id="comment_first"),
    pytest.param("id: 1\n\nid: 2\ndata: a\ndata: b", False, id="dataless_block_and_two_lines"),
    pytest.param("data: a\ndata: \0", False, id="nul_in_data"),
    # A lone CR before a data line, with LF markers, would read as a blank line;
    # the LF after it would pass for a marker.
    pytest.param(
        "id: 1\r\n\r\r\ndata: id: 5\r\ndata: y\nz", True, id="lone_cr_and_lf_faking_a_blank_line"
    ),
    pytest.param(
        "id: 1\r\ndata: a\r\r\ndata: \r\nid: 2\r\ndata: b", True, id="lone_cr_before_a_data_line"
    ),
    pytest.param(
        "event: a\r\ndata: b\r\n\r\r\ndata: event: c\r\ndata: d", True, id="lone_cr_in_a_blank_line"
    ),
    pytest.param("retry: 1\r\ndata: a", True, id="other_field_first"),
    pytest.param("data:a\r\n\r\ndata: b", True, id="first_data_line_without_the_space"),
    pytest.param("-\r\ndata: a", True, id="unknown_first_character"),
]


@pytest.mark.parametrize(("region", "crlf"), REFUSED_RUNS)
def test_a_run_that_breaks_its_shape_is_left_to_the_exact_path(region: str, crlf: bool) -> None:
    assert decode_run(region, crlf, "") is None


# ------------------------------------------------------------------ edge cases, cut anywhere

EDGE_STREAMS = [
    pytest.param(
        b"id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\ndata: c\r\n\r\n", id="crlf_multiline_run"
    ),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r", id="lone_cr_at_the_end"),
    pytest.param(b"data: a\r\rdata: b\r\r", id="cr_only_line_ends"),
    pytest.param(
        b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata:2\r\n\r\nevent: c\r\ndata: 3\r\n\r\n",
        id="data_without_the_space_in_a_run",
    ),
    pytest.param(
        b"id: 1\ndata: a\n: note\ndata: b\n\nid: 2\ndata: c\n\n", id="comment_inside_an_event"
    ),
    pytest.param(
        b"\xef\xbb\xbfid: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n", id="bom_before_a_run"
    ),
    pytest.param(
        b"id: 1\r\ndata: a\r\n\r\nid: 2\x00\r\ndata: b\r\n\r\n", id="id_with_nul_in_a_run"
    ),
    pytest.param(
        b"id: 1\r\ndata: a\r\n\r\nretry: 5\r\nid: 2\r\ndata: b\r\n\r\n", id="retry_in_a_run"
    ),
    pytest.param(b"id: 1\r\ndata: a\r\nretry: 9\r\ndata: b", id="retry_in_an_unfinished_event"),
    pytest.param(
        b"event: e\r\ndata: a\r\n\r\n\r\nevent: f\r\ndata: b\r\n\r\n", id="extra_blank_line"
    ),
    pytest.param(b"id: 1\r\ndata: a\n\nid: 2\r\ndata: b\r\n\r\n", id="mixed_line_ends"),
    pytest.param(b"id: 1\ndata: a\n\nid\ndata: b\n\n", id="empty_id_resets_in_a_run"),
    pytest.param(
        b"id: 1\r\n\r\nid: 2\r\ndata: b\r\ndata: c\r\n\r\n", id="dataless_block_then_two_lines"
    ),
    pytest.param("id: 一\r\ndata: 你\r\ndata: 好\r\n\r\n".encode(), id="non_ascii_run"),
    pytest.param(b"id: 1\r\ndata: \xff\r\n\r\nid: 2\r\ndata: \xe4\xbd", id="invalid_utf8"),
    pytest.param(b"data: a\r\ndata: \r\n\r\ndata: b\r\n\r\n", id="empty_data_line_crlf"),
    pytest.param(b"data: a\ndata: \n\ndata: b\n\n", id="empty_data_line_lf"),
    pytest.param(b"event: e\ndata: a\n\nevent:\ndata: b\n\n", id="empty_event_type_in_a_run"),
    pytest.param(
        b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: \xff\r\ndata: 2\r\n\r\n",
        id="invalid_utf8_in_lines_that_wait",
    ),
    pytest.param(
        b"id: 1\r\ndata: a\r\n\r\nid: 2\r\n\r\r\ndata: id: 5\r\ndata: y\nz\r\n\r\n",
        id="lone_cr_and_lf_faking_a_blank_line",
    ),
    pytest.param(
        b"event: a\ndata: 1\n\nevent: b\ndata: 2\ndata: 3\n\nevent: c\ndata: retry\n\n",
        id="lf_event_run_and_retry_in_a_value",
    ),
]


@pytest.mark.parametrize("raw", EDGE_STREAMS)
def test_edge_case_fed_whole_and_one_byte_at_a_time(raw: bytes) -> None:
    assert_decodes_like_the_spec([raw])
    assert_decodes_like_the_spec(one_byte_at_a_time(raw))


@pytest.mark.parametrize("raw", EDGE_STREAMS)
def test_edge_case_cut_in_two_at_every_byte_offset(raw: bytes) -> None:
    for cut in range(len(raw) + 1):
        assert_decodes_like_the_spec([raw[:cut], raw[cut:]])


def test_an_event_cut_across_three_chunks_at_every_pair_of_offsets() -> None:
    raw = b"id: 7\r\ndata: a\r\n\r\nid: 8\r\ndata: b\r\ndata: c\r\n\r\nid: 9\r\ndata: d\r\n\r\n"
    for first, second in itertools.combinations(range(len(raw) + 1), 2):
        assert_decodes_like_the_spec([raw[:first], raw[first:second], raw[second:]])


# ------------------------------------------------------------------ the cut on the bytes

CUTS = [
    pytest.param(b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2\r\nda", True, id="crlf"),
    pytest.param(b"id: 1\ndata: a\n\nid: 2\ndata: b\n", True, id="lf"),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\n", True, id="nothing_waits"),
    pytest.param("event: 一\r\ndata: 你\r\n\r\nevent: 二\r\n".encode(), True, id="non_ascii"),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\nretry: 5\r\ndata: b", False, id="retry_after_the_cut"),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\n\r\nid: 2\r\n", True, id="two_blank_lines_before_it"),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\n\nid: 2\r\n", False, id="lf_blank_line_after_the_cut"),
    pytest.param(b"id: 1\r\ndata: a\r\n\r\nid: 2\n\ndata: b", False, id="lf_blank_line_after_it"),
    pytest.param(b"id: 1\r\ndata: a", False, id="no_blank_line"),
    pytest.param(b"\r\n\r\nid: 1\r\n", False, id="blank_line_first"),
    pytest.param(b"data: a\n\ndata: b\ndata: c\n\n", False, id="lf_data_events_go_on_the_bytes"),
]


@pytest.mark.parametrize(("raw", "cut_on_the_bytes"), CUTS)
def test_a_chunk_of_whole_events_is_cut_on_the_bytes_unless_a_waiting_line_could_show(
    raw: bytes, cut_on_the_bytes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    interpreted: list[bytes] = []
    interpret = Decoder._interpret

    def spy(self: Decoder, buf: bytes, events: list[Any]) -> bytes:
        interpreted.append(buf)
        return interpret(self, buf, events)

    monkeypatch.setattr(Decoder, "_interpret", spy)
    assert_decodes_like_the_spec([raw])
    assert (not interpreted) is cut_on_the_bytes


def test_lines_that_wait_after_the_cut_on_the_bytes_complete_their_event() -> None:
    decoder = Decoder()
    assert [event.data for event in decoder.feed(b"id: 1\r\ndata: a\r\n\r\nid: 2\r\nda")] == ["a"]
    assert decoder.last_event_id == "1"
    assert [as_dict(event) for event in decoder.feed(b"ta: b\r\n\r\n")] == [
        {"data": "b", "event": "message", "id": "2", "retry": None}
    ]


# ------------------------------------------------------------------ size limit and long streams

LIMIT = 100


@pytest.mark.parametrize(
    ("event", "eol"),
    [
        pytest.param("data: {}", "\n", id="single_data_lines_lf"),
        pytest.param("data: {}\ndata: -", "\n", id="data_lines_lf"),
        pytest.param("id: 1\r\ndata: {}\r\ndata: -", "\r\n", id="id_and_data_crlf"),
        pytest.param("event: e\r\ndata: {}", "\r\n", id="event_and_data_crlf"),
    ],
)
def test_an_event_over_the_limit_inside_a_run_raises(event: str, eol: str) -> None:
    small = event.format("x" * 10) + eol + eol
    large = event.format("x" * LIMIT) + eol + eol
    decoder = Decoder(max_event_size=LIMIT)
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed((small * 5 + large + small * 5).encode())
    assert caught.value.limit == LIMIT


def test_a_run_longer_than_the_limit_of_events_under_it_decodes() -> None:
    raw = b"".join(b"id: %d\r\ndata: %s\r\n\r\n" % (i, b"x" * 60) for i in range(20))
    decoder = Decoder(max_event_size=LIMIT)
    events = decoder.feed(raw)
    assert [as_dict(event) for event in events] == spec_parse(raw).events


def test_lines_waiting_for_their_event_raise_as_soon_as_its_data_passes_the_limit() -> None:
    decoder = Decoder(max_event_size=LIMIT)
    decoder.feed(b"id: 1\r\ndata: a\r\n\r\nid: 2\r\n")
    line = b"data: " + b"x" * 9 + b"\r\n"  # 9 bytes of data + 1 LF per line
    for _ in range(10):  # 100 bytes in the data buffer: not past the limit
        assert decoder.feed(line) == []
    with pytest.raises(EventTooLarge):
        decoder.feed(line)


def test_an_event_too_long_to_wait_in_the_buffer_decodes_across_many_chunks() -> None:
    line = b"data: " + b"y" * 100 + b"\r\n"
    raw = b"id: 1\r\ndata: a\r\n\r\nid: 2\r\n" + line * 400 + b"\r\nid: 3\r\ndata: z\r\n\r\n"
    assert_decodes_like_the_spec([raw[i : i + 4096] for i in range(0, len(raw), 4096)])


def test_a_stream_that_changes_shape_decodes_like_the_spec() -> None:
    odd = b"".join(b"id: %d\r\n: note\r\ndata: a\r\n\r\n" % i for i in range(200))
    clean = b"".join(b"id: %d\r\ndata: b\r\ndata: c\r\n\r\n" % i for i in range(600))
    mixed = b"".join(b"event: e\ndata: d\n\nevent: f\r\ndata: g\r\n\r\n" for _ in range(200))
    raw = odd + clean + mixed + clean
    chunks = [raw[i : i + 512] for i in range(0, len(raw), 512)]
    decoder = Decoder()
    events = [as_dict(event) for chunk in chunks for event in decoder.feed(chunk)]
    model = spec_parse(raw)
    assert (events, decoder.last_event_id) == (model.events, model.last_event_id)
