"""Turning events into ``text/event-stream`` bytes."""

from __future__ import annotations

from .._exceptions import LocalProtocolError
from ._event import Event

__all__ = ["comment", "encode"]


def _split_lines(text: str) -> list[str]:
    # WHATWG HTML §9.2.6: a line ends at CRLF, LF or CR. str.splitlines() would
    # also split at U+2028, U+0085, FF, VT..., which the format keeps as data.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def encode(event: Event) -> bytes:
    """Encode one event as UTF-8 ``text/event-stream`` bytes, blank line included.

    Each line of ``data`` becomes its own ``data:`` line, so a payload holding a
    line end cannot forge a second event. CR and CRLF inside ``data`` decode as
    LF on the other side: the format has no way to carry them, the spec's parser
    turns every line end into LF. An ``event`` other than ``"message"`` is
    written; ``id=""`` is written (it resets the reader's last event id);
    ``id=None`` and ``retry=None`` write nothing.

    Raises :class:`LocalProtocolError` (a ``ValueError``) for an ``event`` or ``id``
    holding CR or LF, an ``id`` holding NUL (readers ignore such ids), and a
    ``retry`` that is not a non-negative int.

    >>> encode(Event("line one\\nline two", id="1"))
    b'id: 1\\ndata: line one\\ndata: line two\\n\\n'
    """
    data = event.data
    if event.event == "message" and event.retry is None:
        ident = event.id
        if ident is None:
            # The hot path: one data-only event, the shape of every token of an answer.
            if "\n" not in data and "\r" not in data:
                return b"data: " + data.encode() + b"\n\n"
            return ("data: " + "\ndata: ".join(_split_lines(data)) + "\n\n").encode()
        if ident.isdigit() and ident.isascii() and "\n" not in data and "\r" not in data:
            # The other hot path: a token as a stream log stores it (ids "1", "2", ...).
            return f"id: {ident}\ndata: {data}\n\n".encode()

    parts: list[str] = []
    if event.event != "message":
        if "\n" in event.event or "\r" in event.event:
            raise LocalProtocolError(f"event type must not contain CR or LF: {event.event!r}")
        parts.append("event: " + event.event + "\n")
    if event.id is not None:
        if "\n" in event.id or "\r" in event.id or "\0" in event.id:
            raise LocalProtocolError(f"id must not contain CR, LF or NUL: {event.id!r}")
        parts.append("id: " + event.id + "\n" if event.id else "id\n")
    if event.retry is not None:
        retry = event.retry
        if type(retry) is not int or retry < 0:
            raise LocalProtocolError(f"retry must be a non-negative int, not {retry!r}")
        parts.append(f"retry: {retry}\n")
    parts.append("data: " + "\ndata: ".join(_split_lines(data)) + "\n\n")
    return "".join(parts).encode()


def comment(text: str = "") -> bytes:
    """Encode a comment: readers ignore it, proxies see traffic (a heartbeat).

    A multi-line ``text`` becomes several comment lines.

    >>> comment("ping")
    b': ping\\n\\n'
    """
    return ("".join(": " + line + "\n" for line in _split_lines(text)) + "\n").encode()
