"""Runs of whole events of the common shapes, decoded without a Python loop per line.

The exact path (``Decoder._segments``) runs the field table of WHATWG HTML
§9.2.6 line by line, a few hundred nanoseconds a line on CPython. Real streams
are mostly runs of events of one shape, and a run of a known shape can be
turned into events by a few C-level passes over the whole of it (``replace``,
``split``, ``join``, about a nanosecond a byte) and one Python step per event.
Each function here proves that its input has the shape before it trusts it,
and otherwise returns None, leaving the input to the exact path.

A *run* starts at a line start, holds only whole events, and stops just before
the line end of its last line and the blank line after it; the decoder hands
one over only from a clean state (no event half gathered, so the blank line
before the run dispatched nothing). The shapes:

- every event is one ``data: `` line, LF line ends, on the raw bytes
  (``decode_token_run``): nearly every LLM token stream;
- every event is only ``data: `` lines; or one ``id: `` line and then
  ``data: `` lines (askstream's own server); or one ``event: `` line and then
  ``data: `` lines (OpenAI's and Anthropic's APIs); every line ending in LF or
  every line in CRLF, on decoded text (``decode_run``).
"""

from __future__ import annotations

from io import IncrementalNewlineDecoder
from itertools import repeat

from ._event import Event

__all__ = ["decode_run", "decode_token_run"]

# For each line end: itself; a blank line; the start of a data line, line end
# included; and what comes before each "id: " event and each "event: " event.
_LF = ("\n", "\n\n", "\ndata: ", "\n\nid: ", "\n\nevent: ")
_CRLF = ("\r\n", "\r\n\r\n", "\r\ndata: ", "\r\n\r\nid: ", "\r\n\r\nevent: ")
# A run's first line, by its first character.
_HEADERS = {"d": "data: ", "i": "id: ", "e": "event: "}

# Calling Event from a comprehension goes through type.__call__, which packs the
# arguments in a tuple and calls __init__ from C. object.__new__ and then the
# dataclass's own __init__, a Python-to-Python call, build the same object about
# 10% faster on CPython 3.11, and building events is the hottest step here.
_new = object.__new__
_init = Event.__init__


def decode_token_run(region: bytes, last_id: str) -> list[Event] | None:
    """The events of a run of single-line ``data: `` events with LF, or None.

    ``region`` is raw bytes that start with ``data: `` and hold no CR.
    ``last_id`` is the last event id in force.
    """
    # Before decoding and splitting it all: are the first and the last event
    # single data lines? Other streams fail here, at little cost. (Integer
    # needles: a bytes needle goes through the buffer protocol, which costs
    # more than these short searches.)
    first_end = region.find(10)
    last_start = region.rfind(10)
    if first_end >= 0 and (
        region[first_end : first_end + 8] != b"\n\ndata: "
        or region[last_start - 1 : last_start + 7] != b"\n\ndata: "
    ):
        return None
    # Split at every LF LF "data: ": when those separators hold every LF of
    # the region, every line is "data: <value>" and every event has one. An
    # ASCII byte never occurs inside a UTF-8 sequence, so decoding the region
    # at once replaces invalid bytes exactly as decoding it line by line would.
    datas = region.decode("utf-8", "replace")[6:].split("\n\ndata: ")
    if region.count(10) != 2 * len(datas) - 2:
        return None
    if last_id:
        return [Event(data, "message", last_id) for data in datas]
    return list(map(Event, datas))


def _crlf_only(text: str) -> bool:
    """Whether ``text`` has line ends and every one is CRLF: no CR without an LF
    after it, no LF without a CR before it.

    io's newline decoder records which kinds of line end it has seen in one C
    pass that copies nothing (its ``newlines``); about as fast as
    ``str.count``. A fresh one per call: a shared one would be state that two
    threads' decoders could interleave.
    """
    lines = IncrementalNewlineDecoder(None, False)  # no codec, translate nothing
    lines.decode(text, True)  # final: a CR at the end is a line end
    return lines.newlines == "\r\n"


def decode_run(region: str, crlf: bool, last_id: str) -> tuple[list[Event], str] | None:
    """The events of a run of one of the text shapes and the last event id after it, or None.

    ``crlf`` says which line end to expect, CRLF or LF; ``last_id`` is the last
    event id before the run.

    The proof. Put a blank line before the run, so that every event, the first
    included, follows one. Replace every line end that starts a ``data: `` line,
    together with that prefix, by a marker, NUL (the run holds no NUL of its
    own: checked). Split the result at every blank line followed by the start
    of an event's first line: ``eol eol "id: "``, ``eol eol "event: "``, or
    ``eol NUL`` for data-only events. No separator holds a NUL, so each was in
    the run as it came, and is a blank line (a line end, then an empty line)
    and the start of a line. If the pieces between them hold no CR and no LF,
    every other line end of the run starts a data line: the run is exactly the
    shape. Each piece is then an event's header value (if the shape has a
    header) and, after a marker each, the values of its data lines; with the
    markers between data values turned into LFs, that is §9.2.6's data buffer.

    When every line end of the run is CRLF (``_crlf_only``), the marker is LF
    instead, and each piece holds its data buffer as it is, which spares a
    ``replace`` per event. The proof still holds: every CR is then followed by
    its own LF, and a replacement, which starts at a CR, never takes a CR's LF
    without the CR; so each CR LF pair left is a line end of the run, and a
    separator (which holds no other LF) was in the run as it came. If the
    pieces hold no CR, every line end left is in a separator, and the LFs in
    the pieces are exactly the markers. (A lone CR or LF could have made a
    separator out of a marker, or passed for one: a reason to keep NUL then.)
    """
    if "\0" in region:  # NUL is a marker below (and an id holding one is ignored)
        return None
    eol, blank, data_start, id_separator, event_separator = _CRLF if crlf else _LF
    marker = "\n" if crlf and _crlf_only(region) else "\0"
    header = _HEADERS.get(region[:1])
    if header is None or not region.startswith(header):
        return None
    if header == "data: ":
        header, separator = "", eol + marker
    else:
        separator = id_separator if header == "id: " else event_separator
    text = blank + region
    marked = text.replace(data_start, marker)
    pieces = marked.split(separator)
    before = pieces.pop(0)  # empty when the run starts with the shape's first line
    rest = "".join(pieces)
    if before or "\r" in rest or (marker == "\0" and "\n" in rest):
        return None
    # With NUL markers: each replacement shortened the text by len(data_start) - 1.
    # More of them than events: some event has several data lines, to be joined.
    joined = marker == "\0" and (len(text) - len(marked)) // (len(data_start) - 1) > len(pieces)
    if not header:
        datas = [piece.replace("\0", "\n") for piece in pieces] if joined else pieces
        if last_id:
            events = [Event(data, "message", last_id) for data in datas]
        else:
            events = list(map(Event, datas))
        return events, last_id
    # Each piece is "<value>" marker "<data>", or only "<value>" for a block with
    # no data line: its field still counts, but nothing is dispatched.
    split = map(str.partition, pieces, repeat(marker))
    if header == "id: ":
        if joined:
            events = [
                _init(
                    event := _new(Event), data.replace("\0", "\n"), "message", value or None, None
                )
                or event
                for value, nul, data in split
                if nul
            ]
        else:
            events = [
                _init(event := _new(Event), data, "message", value or None, None) or event
                for value, nul, data in split
                if nul
            ]
        last_id = pieces[-1].partition(marker)[0]
    else:
        event_id = last_id or None
        if joined:
            events = [
                _init(
                    event := _new(Event),
                    data.replace("\0", "\n"),
                    value or "message",
                    event_id,
                    None,
                )
                or event
                for value, nul, data in split
                if nul
            ]
        else:
            events = [
                _init(event := _new(Event), data, value or "message", event_id, None) or event
                for value, nul, data in split
                if nul
            ]
    if marker == "\0" and not joined and len(events) < len(pieces):
        # Blocks without data lines left NULs uncounted: some event may have
        # several data lines after all.
        return None
    return events, last_id
