"""Turning ``text/event-stream`` bytes into events, exactly as a browser does.

Every rule below is from the WHATWG HTML standard, §9.2.6 "Parsing an event
stream" and "Interpreting an event stream".

The exact path (``_segments``) runs the spec's field table line by line. A Python
loop per line is what makes SSE parsers slow, so the decoder first offers each
run of whole events to the shortcuts in ``_batch``, which prove a run's shape
before they decode it without one; anything they refuse goes the exact way.
To give them whole runs, the lines of an event that has not ended yet wait in
the buffer for the rest of it, where nothing a caller can see depends on them
(``_held``). Inside the exact path, ``_segments`` has its own per-event
shortcuts for a segment of data lines only, or one field line and data lines.

tests/sse checks every path against a literal transcription of the spec on the
shared vectors and on random streams in random chunkings.
"""

from __future__ import annotations

from .._exceptions import EventTooLarge
from ._batch import decode_run, decode_token_run
from ._event import Event

__all__ = ["Decoder"]

_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
_HOLD_LIMIT = 16 * 1024  # see Decoder._held


def _size_bound(text: str) -> int:
    """At least the UTF-8 size of ``text``, in O(1): the shortcuts' size-limit guard."""
    return len(text) if text.isascii() else 4 * len(text)


MAX_RETRY = 2**31 - 1
"""The largest reconnection time (ms) a ``retry`` field sets: 24.8 days.

The spec takes any run of ASCII digits as an integer, with no upper bound; a
longer one is clamped to this rather than ignored, so that a server asking for
a very long wait gets the longest one we can do, not the 1 s default. It is the
longest wait a browser timer can do (``setTimeout`` fires at once past it) and
askstream.js clamps the same way. docs/protocol.md, "retry".
"""


def _retry_value(digits: str) -> int:
    """A ``retry`` field's ASCII digits (any number of them) as ms, at most ``MAX_RETRY``.

    >>> _retry_value("02000"), _retry_value("9" * 5000)
    (2000, 2147483647)
    """
    digits = digits.lstrip("0")
    # Past 10 significant digits it is past the cap, and int() refuses over 4300.
    return MAX_RETRY if len(digits) > 10 else min(int(digits or "0"), MAX_RETRY)


def _normalise(text: str) -> str:
    """LF for every line end: CR, LF and CRLF each end a line (§9.2.6 "end-of-line")."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = text.replace("\r", "\n")
    return text


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
        "_batch_misses",
        "_batch_skips",
        "_buffer",
        "_data",
        "_data_size",
        "_event_retry",
        "_event_type",
        "_hold_max",
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
        self._buffer = b""  # not interpreted yet: lines that wait (see _held), an unfinished line
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
        self._hold_max = min(self._max, _HOLD_LIMIT)  # see _held
        # Per line end (index 0 for LF, 1 for CRLF): runs in a row that _runs
        # could not decode at once, and runs it leaves to the exact path before trying again.
        self._batch_misses = [0, 0]
        self._batch_skips = [0, 0]

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
            crlf = 13 in buf
            if not crlf and buf.startswith(b"data: "):
                # Single-line data events on LF, the bytes as they came.
                end = buf.rfind(b"\n\n")
                if 0 < end <= self._max:  # over the limit, the exact path decides
                    found = decode_token_run(buf[:end], self._last_event_id)
                    if found is not None:
                        events = found
                        buf = buf[end + 2 :]
            else:
                # Whole events, then the first lines of one that has not ended.
                blank = b"\r\n\r\n" if crlf else b"\n\n"
                end = buf.rfind(blank)
                rest = end + len(blank)
                if end > 0 and (rest == len(buf) or self._may_wait(buf[rest:].decode("latin-1"))):
                    events = self._whole_events(buf[:end].decode("utf-8", "replace"), crlf)
                    self._buffer = buf[rest:]
                    return events
        self._buffer = self._interpret(buf, events)
        return events

    def _whole_events(self, text: str, crlf: bool) -> list[Event]:
        """The events of ``text``: whole events, read from a clean state, up to
        the line end of their last line.

        ``feed`` hands over the usual chunk this way: whole events, then the
        first lines of one that has not ended. It finds that cut on the bytes
        (the last blank line), where ``_interpret`` finds it on the decoded
        text, which spares decoding the lines that wait and copying the text
        around them: a few microseconds a chunk. The bytes after the cut wait
        only under ``_may_wait``'s conditions, as ``_held`` would let them, so
        nothing a caller can see changes by it; ``feed`` checks them one
        character per byte (latin-1), which keeps every ASCII pattern in place.
        ``_pending_cr`` stays False: the text ends in LF.
        """
        run = self._batch(text, crlf)
        if run is not None:
            return run
        # What _interpret_lines does with a run that _runs did not take.
        events: list[Event] = []
        text = _normalise(text) + "\n\n"
        if crlf:
            text = self._runs(text, False, events)
        if text:
            self._segments(text, events)
        return events

    def _interpret(self, buf: bytes, events: list[Event]) -> bytes:
        """Interpret the complete lines of ``buf``; return the bytes to keep for later."""
        # Integer arguments: bytes methods given a bytes needle go through the
        # buffer protocol, which costs more here than the search itself.
        cut = buf.rfind(10) + 1
        if buf.find(13, cut) >= 0:  # a CR after the last LF ends the last line
            cut = buf.rfind(13) + 1
        # Checked before anything is interpreted, so that when it raises,
        # last_event_id still names the last event the caller was given.
        if len(buf) - cut > self._max:
            raise EventTooLarge(
                f"a line grew past {self._max} bytes without a line end", limit=int(self._max)
            )
        if not cut:
            return buf
        # A UTF-8 sequence never spans a line end, so the lines decode alone.
        text = buf[:cut].decode("utf-8", "replace")
        held = self._held(text)
        if held:
            if text.isascii():
                cut -= len(held)
            elif "\ufffd" in held:  # maybe an invalid byte: its size in bytes is unknown
                held = ""
            else:
                cut -= len(held.encode())
            if held:
                text = text[: -len(held)]
                if not text:
                    return buf
        self._interpret_lines(text, events)
        return buf[cut:]

    def _interpret_lines(self, text: str, events: list[Event]) -> None:
        """Interpret ``text``, complete lines as they came."""
        self._pending_cr = text[-1] == "\r"
        if "\r" in text:
            # Try the CRLF shapes on the text as it came, which spares a pass
            # over it; what they leave is normalised and tried again as LF.
            text = self._runs(text, True, events)
            if text:
                text = _normalise(text)
        if text:
            text = self._runs(text, False, events)
        if text:  # else the text ended with a blank line: nothing is left over
            self._segments(text, events)

    def _held(self, text: str) -> str:
        """The lines at the end of ``text`` to keep undecoded for the next chunk, if any.

        From a clean state, the complete lines of an event that has not ended
        yet may wait in the buffer: decoded with the rest of their event, they
        can go through a batch, where now they and the rest of their event would
        go line by line. They wait only while nothing a caller can see changes
        by it: when they hold no blank line (nothing is dispatched late), no
        ``retry`` field (``retry`` is set when its line ends) and no more bytes
        than ``max_event_size`` (they cannot make an error late), and at most
        ``_HOLD_LIMIT`` bytes, so that waiting lines are not read again and again.
        """
        start = text.rfind("\r\n\r\n") + 4 if "\r" in text else text.rfind("\n\n") + 2
        if start < 4:  # no blank line: these lines continue an event
            if self._in_event:
                return ""
            start = 0
        held = text[start:]
        return held if held and self._may_wait(held) else ""

    def _may_wait(self, lines: str) -> bool:
        """Whether ``lines``, after a blank line, may wait in the buffer (see ``_held``)."""
        return (
            _size_bound(lines) <= self._hold_max
            and lines[0] not in "\r\n"
            and "\n\n" not in lines
            and "\r\r" not in lines
            and "\n\r" not in lines
            and "retry" not in lines
        )

    def _runs(self, text: str, crlf: bool, events: list[Event]) -> str:
        """Interpret complete lines up to the last blank line; return the lines after it.

        ``text`` ends lines with LF only, or (``crlf``) is as received. Cut at
        a blank line, text holds whole events: a run the ``_batch`` module may
        decode at once. Only the event begun in an earlier chunk, if any, must
        first be finished the slow way. The lines after the last blank line
        wait for ``_segments``: no dispatch after them.
        """
        blank = "\r\n\r\n" if crlf else "\n\n"
        if self._in_event:
            first = text.find(blank)
            if first < 0:
                return text
            first += len(blank)
            self._segments(_normalise(text[:first]), events)
            text = text[first:]
        end = text.rfind(blank)
        if end <= 0:
            return text
        run = self._batch(text[:end], crlf)
        if run is None:
            return text
        events += run
        return text[end + len(blank) :]

    def _batch(self, region: str, crlf: bool) -> list[Event] | None:
        """The events of the run ``region``, if a ``_batch`` shortcut takes it, else None.

        A run starts from a clean state and stops before its last blank line.
        """
        skips = self._batch_skips
        if skips[crlf]:
            skips[crlf] -= 1
            return None
        # Under the limit as a whole, no event in the run can pass it: an
        # event's data is shorter than its lines. Over it, the exact path decides.
        if _size_bound(region) <= self._max:
            run = decode_run(region, crlf, self._last_event_id)
            if run is not None:
                self._id_buffer = self._last_event_id = run[1]
                self._batch_misses[crlf] = 0
                return run[0]
        # A miss costs about what a hit saves, and a stream of many shapes
        # misses again and again: after each miss in a row, skip twice as many
        # runs (up to 31) before trying again. Either way the events are the same.
        misses = self._batch_misses
        misses[crlf] = min(misses[crlf] + 1, 5)
        skips[crlf] = (1 << misses[crlf]) - 1
        return None

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
                            # An event begun in an earlier chunk may have set
                            # its type or retry already: both go with it.
                            if head.startswith("id: ") and "\0" not in head:
                                id_buffer = head[4:]
                                self._last_event_id = id_buffer
                                value = _join_data(tail)
                                events.append(
                                    Event(
                                        value,
                                        event_type or "message",
                                        id_buffer or None,
                                        event_retry,
                                    )
                                )
                                event_type = ""
                                event_retry = None
                                continue
                            if head.startswith("event: "):
                                self._last_event_id = id_buffer
                                value = _join_data(tail)
                                events.append(
                                    Event(
                                        value, head[7:] or "message", id_buffer or None, event_retry
                                    )
                                )
                                event_type = ""
                                event_retry = None
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
                    event_retry = self._retry = _retry_value(value)
                # Any other field name is ignored.
        self._data = data
        self._data_size = data_size
        self._event_type = event_type
        self._event_retry = event_retry
        self._id_buffer = id_buffer
