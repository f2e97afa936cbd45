"""The event value type."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event"]


# Not frozen, on purpose: a frozen dataclass sets each field through
# object.__setattr__, which makes construction about 3.5x slower (540 ns against
# 150 ns here), and the decoder builds one Event per event on its hot path. The
# class is slotted and askstream never mutates an Event once built; treat it as
# immutable and derive changed copies with dataclasses.replace().
@dataclass(slots=True)
class Event:
    """One server-sent event.

    ``data`` is the payload (``\\n`` separates lines), ``event`` the type a browser
    dispatches it as, ``id`` the id that readers resume from, ``retry`` the
    reconnection delay in milliseconds.

    On events that :class:`Decoder` returns, ``id`` is the last event id in force
    when the event was dispatched (``MessageEvent.lastEventId``), or ``None`` when
    there is none, and ``retry`` is the value of a ``retry`` field within this
    event, if it had one.

    >>> Event("hello")
    Event(data='hello', event='message', id=None, retry=None)
    >>> Event('{"delta": "Hi"}', id="7").id
    '7'

    An Event may be shared by many readers: do not mutate it; use
    ``dataclasses.replace(event, id="8")`` for a changed copy.
    """

    data: str = ""
    event: str = "message"
    id: str | None = None
    retry: int | None = None
