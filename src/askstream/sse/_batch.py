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

from itertools import repeat

from ._event import Event

__all__ = ["decode_run", "decode_token_run"]

# For each line end: a blank line; the start of a data line, line end included;
# and, once those are NUL, what comes before each data-only event, each "id: "
# event and each "event: " event.
_LF = ("\n\n", "\ndata: ", "\n\0", "\n\nid: ", "\n\nevent: ")
_CRLF = ("\r\n\r\n", "\r\ndata: ", "\r\n\0", "\r\n\r\nid: ", "\r\n\r\nevent: ")

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


def decode_run(region: str, crlf: bool, last_id: str) -> tuple[list[Event], str] | None:
    """The events of a run of one of the text shapes and the last event id after it, or None.

    ``crlf`` says which line end to expect, CRLF or LF; ``last_id`` is the last
    event id before the run.

    The proof. Put a blank line before the run, so that every event, the first
    included, follows one. Replace every line end that starts a ``data: `` line,
    together with that prefix, by NUL (the run holds no NUL of its own: checked).
    Split the result at every blank line followed by the start of an event's
    first line: ``eol eol "id: "``, ``eol eol "event: "``, or ``eol NUL`` for
    data-only events. No separator holds a NUL, so each was in the run as it
    came, and is a blank line (a line end, then an empty line) and the start of
    a line. If the pieces between them hold no CR and no LF, every other line end
    of the run starts a data line: the run is exactly the shape. Each piece is
    then an event's header value (if the shape has a header) and, after a NUL
    each, the values of its data lines; with the NULs between data values turned
    into LFs, that is §9.2.6's data buffer.
    """
    if "\0" in region:  # NUL is the marker below (and an id holding one is ignored)
        return None
    blank, data_start, data_separator, id_separator, event_separator = _CRLF if crlf else _LF
    if region.startswith("data: "):
        header, separator = "", data_separator
    elif region.startswith("id: "):
        header, separator = "id: ", id_separator
    elif region.startswith("event: "):
        header, separator = "event: ", event_separator
    else:
        return None
    text = blank + region
    marked = text.replace(data_start, "\0")
    pieces = marked.split(separator)
    before = pieces.pop(0)  # empty when the run starts with the shape's first line
    rest = "".join(pieces)
    if before or "\n" in rest or "\r" in rest:
        return None
    # Each replacement shortened the text by len(data_start) - 1. More of them
    # than events: some event has several data lines, joined by NULs.
    joined = (len(text) - len(marked)) // (len(data_start) - 1) > len(pieces)
    if not header:
        datas = [piece.replace("\0", "\n") for piece in pieces] if joined else pieces
        if last_id:
            events = [Event(data, "message", last_id) for data in datas]
        else:
            events = list(map(Event, datas))
        return events, last_id
    # Each piece is "<value>" NUL "<data>", or only "<value>" for a block with
    # no data line: its field still counts, but nothing is dispatched.
    split = map(str.partition, pieces, repeat("\0"))
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
        last_id = pieces[-1].partition("\0")[0]
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
    if not joined and len(events) < len(pieces):
        # Blocks without data lines left NULs uncounted: some event may have
        # several data lines after all.
        return None
    return events, last_id
