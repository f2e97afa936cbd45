"""A literal, whole-stream transcription of WHATWG HTML §9.2.5-9.2.6, used as a test oracle.

It is deliberately naive (decode everything, split, then walk the lines) and shares
no code with ``askstream.sse``: it is the yardstick the vectors in ``vectors.json``
are checked against, and the model the arbitrary-bytes property compares the real,
incremental decoder with.

Our choices on top of the spec (see ``askstream.sse.Event``): a dispatched event's
``id`` is the last event ID string at dispatch, ``None`` when it is empty; its
``retry`` is the value of a valid ``retry`` field among the lines of its own block;
a ``retry`` past ``MAX_RETRY`` (2^31 - 1 ms) is clamped to it (docs/protocol.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelResult", "parse"]

# §9.2.5: end-of-line = ( cr lf / cr / lf ). Nothing else ends a line (not VT, FF,
# NEL, U+2028...), so str.splitlines() would be wrong here.
_LINE_END = re.compile(r"\r\n|\r|\n")
_ASCII_DIGITS = re.compile(r"[0-9]+")


@dataclass
class ModelResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    last_event_id: str = ""
    retry: int | None = None


# Our cap on the reconnection time, written out here so the oracle shares no code.
MAX_RETRY = 2147483647


def _base_ten(digits: str) -> int:
    # int() refuses strings past sys.get_int_max_str_digits() (4300 by default).
    number = 0
    for start in range(0, len(digits), 1000):
        piece = digits[start : start + 1000]
        number = number * 10 ** len(piece) + int(piece)
    return number


def parse(stream: bytes, *, last_event_id: str = "") -> ModelResult:
    """Interpret a complete byte stream the way §9.2.6 says a user agent must."""
    # §9.2.5: "Streams must be decoded using the UTF-8 decode algorithm." That
    # algorithm strips ONE leading BOM and replaces every maximal invalid subpart
    # with U+FFFD, which is exactly what Python's "replace" error handler does.
    text = stream.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    *lines, _pending = _LINE_END.split(text)
    # The last piece has no line end: "Once the end of the file is reached, any
    # pending data must be discarded."

    result = ModelResult(last_event_id=last_event_id)
    data_buffer = ""
    event_type_buffer = ""
    last_event_id_buffer = last_event_id
    block_retry: int | None = None

    for line in lines:
        if line == "":
            # Dispatch the event.
            result.last_event_id = last_event_id_buffer
            if data_buffer == "":
                data_buffer = ""
                event_type_buffer = ""
                block_retry = None
                continue
            data = data_buffer.removesuffix("\n")
            result.events.append(
                {
                    "data": data,
                    "event": event_type_buffer or "message",
                    "id": result.last_event_id or None,
                    "retry": block_retry,
                }
            )
            data_buffer = ""
            event_type_buffer = ""
            block_retry = None
            continue
        if line.startswith(":"):
            continue  # a comment
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        # else: "using the whole line as the field name, and the empty string as
        # the field value" -- partition already gives name=line, value="".
        if name == "event":
            event_type_buffer = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_event_id_buffer = value
        elif name == "retry" and _ASCII_DIGITS.fullmatch(value):
            block_retry = min(_base_ten(value), MAX_RETRY)
            result.retry = block_retry
        # any other field name, and a retry that is not all ASCII digits, is ignored
    return result
