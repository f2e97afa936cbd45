"""Turning ``text/event-stream`` bytes into events, exactly as a browser does.

Every rule below is from the WHATWG HTML standard, §9.2.6 "Parsing an event
stream" and "Interpreting an event stream".

There are two paths. The exact path decodes complete lines and runs the spec's
field table line by line. The fast path handles the shape of nearly every LLM
token stream, a run of whole events that are each one ``data: ...`` line with LF
line ends, and turns the run into events with a handful of C-level calls
(``count``, ``decode``, ``split``) instead of a Python loop per line. It only
runs where it gives the same result as the exact path (tests/sse prove that on
the shared vectors and on random chunkings); anything else takes the exact path.
"""

from __future__ import annotations

from .._exceptions import EventTooLarge
from ._event import Event

__all__ = ["Decoder"]

_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024


class Decoder:
    """An incremental, spec-exact ``text/event-stream`` parser. No I/O.

    Feed it the body's bytes as they arrive, in chunks of any size; it returns
    the events each chunk completed. An event still unfinished when the stream
    ends is never returned, as the spec says.

    ``last_event_id`` starts the reader's last event id (a resumed stream);
    ``max_event_size`` bounds, in bytes, an unfinished line and, in characters,
    the data one event gathers: a peer that passes it gets
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
        while buf:
            if self._pending_cr:
                self._pending_cr = False
                if buf[0] == 0x0A:  # the LF of a CRLF that was cut between chunks
                    buf = buf[1:]
                continue
            if (
                self._data
                or self._event_type
                or self._event_retry is not None
                or self._id_buffer != self._last_event_id
            ):
                # Finish the event in progress on the exact path, up to its
                # first likely end, then give the fast path a chance again.
                end = buf.find(b"\n\n")
                if end < 0:
                    buf = self._exact(buf, events)
                    break
                self._exact(buf[: end + 2], events)
                buf = buf[end + 2 :]
                continue
            end = buf.rfind(b"\n\n")
            if end > 0 and self._fast(buf[:end], events):
                buf = buf[end + 2 :]
            buf = self._exact(buf, events)
            break
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
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        lines.pop()  # the empty string after the final line end

        # The spec's state, in locals for the loop; written back below.
        data = self._data
        data_size = self._data_size
        event_type = self._event_type
        event_retry = self._event_retry
        id_buffer = self._id_buffer
        limit = self._max
        for line in lines:
            if not line:
                # Dispatch. The last event ID string is set first, even when
                # there is no data and nothing is dispatched.
                self._last_event_id = id_buffer
                if data:
                    events.append(
                        Event(
                            "\n".join(data), event_type or "message", id_buffer or None, event_retry
                        )
                    )
                    data = []
                    data_size = 0
                event_type = ""
                event_retry = None
                continue
            if line.startswith("data: "):
                value = line[6:]
                name = "data"
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
                data_size += len(value) + 1
                if data_size > limit:
                    self._data = []
                    raise EventTooLarge(
                        f"an event's data grew past {limit} characters", limit=int(limit)
                    )
            elif name == "event":
                event_type = value
            elif name == "id":
                if "\0" not in value:
                    id_buffer = value
            elif name == "retry" and value.isascii() and value.isdigit() and len(value) <= 20:
                # Only ASCII digits count. Like Chromium, a value past 64 bits is
                # ignored (which also keeps int() away from its 4300-digit limit).
                retry = int(value)
                if retry < 1 << 64:
                    event_retry = self._retry = retry
            # Any other field name is ignored.

        self._data = data
        self._data_size = data_size
        self._event_type = event_type
        self._event_retry = event_retry
        self._id_buffer = id_buffer
        return rest
