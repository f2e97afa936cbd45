"""The bytes on the wire of what a response's source yields."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from ..sse import Event, encode

__all__ = ["encode_item"]


class _LastEncoded:
    """The last :class:`Event` encoded, with its fields and its bytes.

    A stream store hands each event to all its followers as one shared object,
    and wakes them one after the other; with a thousand readers of one answer,
    a thousand encodes of the same event in a row become one encode and 999
    identity checks. One entry is enough for that and never grows. The fields
    are compared by identity too, so an Event mutated after it was sent (which
    the docs forbid, but nothing stops) is encoded again, not served stale.
    """

    __slots__ = ("entry",)

    def __init__(self) -> None:
        # One tuple, replaced whole: a reader in another thread sees an old or a new one.
        self.entry: tuple[Event | None, str, str, str | None, int | None, bytes] = (
            None, "", "", None, None, b"",
        )  # fmt: skip

    def encode(self, event: Event) -> bytes:
        last, data, kind, ident, retry, wire = self.entry
        if (
            last is event
            and data is event.data
            and kind is event.event
            and ident is event.id
            and retry is event.retry
        ):
            return wire
        wire = encode(event)
        self.entry = (event, event.data, event.event, event.id, event.retry, wire)
        return wire


# A cache, not state: which event it holds changes nothing but the time taken.
_encode_shared = _LastEncoded().encode


def encode_item(item: object) -> bytes:
    """Encode one item a source yielded.

    A ``str`` is the data of a ``message`` event; a mapping, a dataclass
    instance or a Pydantic model is sent as compact JSON data (non-ASCII kept
    as UTF-8). Anything else is a ``TypeError``.

    >>> encode_item("Hi"), encode_item({"delta": "你"})
    (b'data: Hi\\n\\n', b'data: {"delta":"\\xe4\\xbd\\xa0"}\\n\\n')
    """
    if type(item) is str:
        # The hot path: one token. Same bytes as encode(Event(item)); a test proves it.
        if "\n" not in item and "\r" not in item:
            return f"data: {item}\n\n".encode()  # one BUILD_STRING: faster than two +
        return encode(Event(item))
    if isinstance(item, Event):
        return _encode_shared(item)
    if isinstance(item, str):  # a str subclass
        return encode(Event(str(item)))
    return _encode_object(item)


def _encode_object(item: object) -> bytes:
    """Off the hot path: what is sent as JSON, or the ``TypeError``."""
    if isinstance(item, Mapping):
        return _json_line(item if type(item) is dict else dict(item))
    # Pydantic stays an optional dependency: a model is recognised by its v2
    # method, never by importing pydantic. Its JSON is its own (aliases,
    # serializers), as FastAPI sends it.
    dump_json = getattr(item, "model_dump_json", None)
    if callable(dump_json) and not isinstance(item, type):
        data = dump_json()
        if isinstance(data, str):
            if "\n" in data or "\r" in data:  # an override that indents: still one event
                return encode(Event(data))
            return ("data: " + data + "\n\n").encode()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return _json_line(dataclasses.asdict(item))
    raise TypeError(
        "an event source must yield Event, str, a mapping, a dataclass or a Pydantic model, "
        f"not {type(item).__name__}"
    )


def _json_line(value: object) -> bytes:
    # json.dumps escapes CR and LF, so the data is one line.
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return ("data: " + data + "\n\n").encode()
