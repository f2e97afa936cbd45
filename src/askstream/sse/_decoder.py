"""Turning ``text/event-stream`` bytes into events, exactly as a browser does.

Every rule below is from the WHATWG HTML standard, §9.2.6 "Parsing an event
stream" and "Interpreting an event stream".

The exact path decodes complete lines and runs the spec's field table line by
line. A Python loop per line is what makes SSE parsers slow, so three shortcuts
handle the shapes real streams have without one, each taken only where counting
proves it gives what the exact path would:

- ``_fast``: on the raw bytes, a run of single-line ``data: `` events with LF, the
  shape of nearly every LLM token stream;
- ``_batch``: on decoded, line-end-normalised text, a run of events that are only
  data lines, or one ``id:`` or one ``event:`` line and then data lines;
- in ``_segments``, per event, a segment of data lines only, or one field line and
  then data lines.

tests/sse checks all of them against a literal transcription of the spec on the
shared vectors and on random streams in random chunkings.
"""

from __future__ import annotations

from itertools import repeat

from .._exceptions import EventTooLarge
from ._event import Event

__all__ = ["Decoder"]

_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024


def _size_bound(text: str) -> int:
    """At least the UTF-8 size of ``text``, in O(1): the shortcuts' size-limit guard."""
    return len(text) if text.isascii() else 4 * len(text)


def _digits_to_int(digits: str) -> int:
    """int() of ASCII digits of any length (int() refuses over 4300 digits).

    The spec sets no upper bound on ``retry``, so neither do we.
    """
    if len(digits) <= 4000:
        return int(digits)
    value = 0
    for start in range(0, len(digits), 4000):
        part = digits[start : start + 4000]
        value = value * 10 ** len(part) + int(part)
    return value


def _join_data(lines: str) -> str:
    """The data of "\ndata: a\ndata:b..." (every line a data line): "a\nb...".

    Removing the one optional space first, then every "data:" prefix, is exact:
    each "\ndata:" left after the first replace is at a line start, and a
    replace never rescans what it produced.
    """
    return lines.replace("\ndata: ", "\ndata:").replace("\ndata:", "\n")[1:]


class Decoder:
    """An incremental, spec-exact ``text/event-stream`` parser. No I/O.

    Feed it the body's bytes as they arrive, in chunks of any size; it returns
    the events each chunk completed. An event still unfinished when the stream
    ends is never returned, as the spec says.

    ``last_event_id`` starts the reader's last event id (a resumed stream);
    ``max_event_size`` bounds, in bytes, an unfinished line and the data one
    event gathers (UTF-8 bytes plus an LF per data line): a peer that passes it gets
    :class:`~askstream.EventTooLarge` instead of our memory. ``None`` lifts it.

    >>> decoder = Decoder()
    >>> decoder.feed(b'data: {"delta": "Hi"}\\n\\nid: 2\\r\\ndata: a\\r\\ndata: b')
    [Event(data='{"delta": "Hi"}', event='message', id=None, retry=None)]
    >>> decoder.feed(b"\\r\\n\\r\\n")
    [Event(data='a\\nb', event='message', id='2', retry=None)]
    >>> decoder.last_event_id
    '2'
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_data_size",
        "_event_retry",
        "_event_type",
        "_id_buffer",
        "_in_event",
        "_last_event_id",
        "_max",
        "_pending_cr",
        "_retry",
        "_started",
    )

    def __init__(
        self, *, last_event_id: str = "", max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        self._buffer = b""  # bytes after the last complete line
        self._started = False  # the leading-BOM check is done
        self._pending_cr = False  # the last line ended in CR: a first LF next is part of it
        self._in_event = False  # lines have come since the last blank line
        # The spec's buffers for the event being gathered.
        self._data: list[str] = []  # data lines; the spec's data buffer is "\n".join + "\n"
        self._data_size = 0
        self._event_type = ""
        self._event_retry: int | None = None
        self._id_buffer = last_event_id  # "last event ID buffer"
        self._last_event_id = last_event_id  # "last event ID string", set at dispatch
        self._retry: int | None = None
        self._max = max_event_size if max_event_size is not None else float("inf")

    @property
    def last_event_id(self) -> str:
        """The id a reconnect sends as ``Last-Event-ID`` ("" when there is none)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in ms from the last valid ``retry`` field, if any."""
        return self._retry

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next chunk of the body and return the events it completed.

        Raises :class:`~askstream.EventTooLarge` when a line or an event passes
        ``max_event_size``; the decoder is of no further use after that.
        """
        buf = self._buffer + chunk if self._buffer else bytes(chunk)
        self._buffer = b""
        if not self._started:
            # §9.2.6: one leading U+FEFF is ignored. It may arrive split.
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buffer = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]

        events: list[Event] = []
        if self._pending_cr and buf:
            self._pending_cr = False
            if buf[0] == 0x0A:  # the LF of a CRLF that was cut between chunks
                buf = buf[1:]
        if not self._in_event:
            end = buf.rfind(b"\n\n")
            if end > 0 and self._fast(buf[:end], events):
                buf = buf[end + 2 :]
        buf = self._exact(buf, events)
        if len(buf) > self._max:
            raise EventTooLarge(
                f"a line grew past {self._max} bytes without a line end", limit=int(self._max)
            )
        self._buffer = buf
        return events

    def _fast(self, region: bytes, events: list[Event]) -> bool:
        # region is whole events minus the final b"\n\n". Split at every
        # "\n\ndata: ": when those separators hold every LF of the region, and
        # it has no CR, no line is anything but "data: <value>" and each event
        # has exactly one data line. Anything else is left to the exact path, as
        # is a region over the size limit. ASCII bytes never occur inside a UTF-8
        # sequence, so decoding the region at once replaces invalid bytes
        # exactly as decoding it line by line would.
        if not region.startswith(b"data: ") or b"\r" in region or len(region) > self._max:
            return False
        # Before decoding and splitting it all: are the first and the last
        # event single data lines? Other streams fail here, at little cost.
        first_end = region.find(b"\n")
        last_start = region.rfind(b"\n")
        if first_end >= 0 and (
            region[first_end : first_end + 8] != b"\n\ndata: "
            or region[last_start - 1 : last_start + 7] != b"\n\ndata: "
        ):
            return False
        datas = region.decode("utf-8", "replace")[6:].split("\n\ndata: ")
        if region.count(b"\n") != 2 * len(datas) - 2:
            return False
        last_id = self._last_event_id
        if last_id:
            events.extend([Event(data, "message", last_id) for data in datas])
        else:
            events.extend(map(Event, datas))
        return True

    def _exact(self, buf: bytes, events: list[Event]) -> bytes:
        """Interpret the complete lines of ``buf``; return the unfinished rest."""
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if cut < 0:
            return buf
        rest = buf[cut + 1 :]
        text = buf[: cut + 1].decode("utf-8", "replace")
        self._pending_cr = text[-1] == "\r"
        if "\r" in text:
            # CR, LF and CRLF each end a line (§9.2.6 "end-of-line").
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = text.replace("\r", "\n")

        # Cut the text at every "\n\n": each segment is a run of lines, and the
        # "\n\n" after it is its last line's end plus a blank line: a dispatch.
        # A segment of "data: " lines only (most events) becomes its event
        # through C-level string calls; other segments go line by line through
        # the spec's field table. Only the first segment can continue an event
        # begun in an earlier chunk, so only it must skip the shortcut. The last
        # piece is lines not yet followed by a blank line: no dispatch after it.
        if self._in_event:
            # Finish the event begun in an earlier chunk the slow way first.
            first = text.find("\n\n")
            if first < 0:
                self._segments(text, events)
                return rest
            self._segments(text[: first + 2], events)
            text = text[first + 2 :]
        end = text.rfind("\n\n")
        if end > 0 and self._batch(text[:end], events):
            text = text[end + 2 :]
        self._segments(text, events)
        return rest

    def _segments(self, text: str, events: list[Event]) -> None:
        """Interpret complete lines of normalised text, one segment at a time."""
        segments = text.split("\n\n")
        last = len(segments) - 1

        # The spec's buffers live in locals for the loop (attribute access per
        # line costs more than the parsing); they are written back at the end.
        data = self._data
        data_size = self._data_size
        event_type = self._event_type
        event_retry = self._event_retry
        id_buffer = self._id_buffer
        limit = self._max
        clean = not self._in_event
        for index, segment in enumerate(segments):
            if index == last:
                lines = segment.split("\n")
                lines.pop()  # the empty string after the final line end
                self._in_event = bool(lines) and lines[-1] != ""
            else:
                if clean and segment.startswith("data:") and _size_bound(segment) <= limit:
                    breaks = segment.count("\n")
                    if segment.count("\ndata:") == breaks:  # data lines only
                        if breaks:
                            value = _join_data("\n" + segment)
                        elif segment[5:6] == " ":
                            value = segment[6:]
                        else:
                            value = segment[5:]
                        events.append(Event(value, "message", id_buffer or None))
                        continue
                clean = True
                # Fields first, then only data lines ("id: 7\nevent: x\ndata: ..."):
                # the fields go through the loop below, the data lines are joined
                # at once and enter the loop as one stand-in line holding LFs.
                start = segment.find("\ndata:")
                if start >= 0 and _size_bound(segment) <= limit:
                    tail = segment[start:]
                    if tail.count("\ndata:") == tail.count("\n"):
                        head = segment[:start]
                        if "\n" not in head and not data:
                            # One field line, the usual "id: 7" or "event: done".
                            if head.startswith("id: ") and "\0" not in head:
                                id_buffer = head[4:]
                                self._last_event_id = id_buffer
                                value = _join_data(tail)
                                events.append(
                                    Event(value, event_type or "message", id_buffer or None)
                                )
                                event_type = ""
                                continue
                            if head.startswith("event: ") and event_retry is None:
                                self._last_event_id = id_buffer
                                value = _join_data(tail)
                                events.append(
                                    Event(value, head[7:] or "message", id_buffer or None)
                                )
                                event_type = ""
                                continue
                        lines = head.split("\n")
                        lines.append("data: " + _join_data(tail))
                    else:
                        lines = segment.split("\n")
                else:
                    lines = segment.split("\n")
                lines.append("")  # the blank line that ends the segment
            for line in lines:
                if not line:
                    # Dispatch. The last event ID string is set first, even when
                    # the data buffer is empty and nothing is dispatched.
                    self._last_event_id = id_buffer
                    if data:
                        events.append(
                            Event(
                                "\n".join(data),
                                event_type or "message",
                                id_buffer or None,
                                event_retry,
                            )
                        )
                        data = []
                        data_size = 0
                    event_type = ""
                    event_retry = None
                    continue
                if line.startswith("data: "):
                    name = "data"
                    value = line[6:]
                else:
                    colon = line.find(":")
                    if colon == 0:
                        continue  # a comment
                    if colon < 0:
                        name, value = line, ""
                    else:
                        name = line[:colon]
                        value = line[colon + 1 :]
                        if value[:1] == " ":
                            value = value[1:]
                if name == "data":
                    data.append(value)
                    # The limit is in bytes; isascii() is O(1), encode() is not.
                    data_size += (len(value) if value.isascii() else len(value.encode())) + 1
                    if data_size > limit:
                        self._data = []
                        raise EventTooLarge(
                            f"an event's data grew past {limit} bytes", limit=int(limit)
                        )
                elif name == "event":
                    event_type = value
                elif name == "id":
                    if "\0" not in value:
                        id_buffer = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    event_retry = self._retry = _digits_to_int(value)
                # Any other field name is ignored.
        self._data = data
        self._data_size = data_size
        self._event_type = event_type
        self._event_retry = event_retry
        self._id_buffer = id_buffer

    def _batch(self, region: str, events: list[Event]) -> bool:
        """Turn a run of whole events into events at once, if it has a known shape.

        ``region`` is normalised text (LF only) of whole events minus the final
        blank line, read from a clean state. Three shapes qualify: every event
        is only "data: " lines; or every event is one "id: " line and then only
        "data: " lines (askstream's own server); or one "event: " line and then
        only "data: " lines (OpenAI's and Anthropic's streaming APIs).

        Counting proves the shape. Each LF is followed by "data: ", by the
        header field, or by a second LF, so ``count(LF) == count(LF "data: ") +
        count(LF header) + count(LF LF)`` exactly when every line is a data or
        header line and blank lines come singly (a run of three LFs counts two,
        not three). One header per event, at its start: ``count(LF header)`` is
        the number of events and every blank line is followed by one. Then
        dropping every LF "data: " prefix joins each event's data lines with LF,
        and the blank lines still separate the events.
        """
        if _size_bound(region) > self._max or "\0" in region or "\ndata: \n" in region:
            return False
        text = "\n" + region
        if text.endswith("\ndata: "):  # an empty data line would read as a blank line
            return False
        lines = text.count("\n")
        blank = text.count("\n\n")
        data = text.count("\ndata: ")
        if region.startswith("data: "):
            return lines == data + blank and self._batch_data(text, events)
        for header in ("\nid: ", "\nevent: "):
            if region.startswith(header[1:]):
                headers = text.count(header)
                return (
                    lines == data + headers + blank
                    and headers == blank + 1
                    and text.count("\n" + header) == blank
                    and self._batch_headed(text, header, events)
                )
        return False

    def _batch_data(self, text: str, events: list[Event]) -> bool:
        values = text.replace("\ndata: ", "\n")[1:].split("\n\n")
        last_id = self._last_event_id
        if last_id:
            events.extend([Event(value, "message", last_id) for value in values])
        else:
            events.extend(map(Event, values))
        return True

    def _batch_headed(self, text: str, header: str, events: list[Event]) -> bool:
        # After dropping the data prefixes and splitting at the LF LF header
        # between events, each piece is "<value>" LF "<data>", or only
        # "<value>" for an event with no data: it sets its field and
        # dispatches nothing.
        pieces = text.replace("\ndata: ", "\n")[len(header) :].split("\n" + header)
        split = map(str.partition, pieces, repeat("\n"))
        if header == "\nid: ":
            events.extend(
                [Event(data, "message", value or None) for value, newline, data in split if newline]
            )
            self._id_buffer = self._last_event_id = pieces[-1].partition("\n")[0]
        else:
            last_id = self._last_event_id or None
            events.extend(
                [
                    Event(data, value or "message", last_id)
                    for value, newline, data in split
                    if newline
                ]
            )
        return True
