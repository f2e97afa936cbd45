"""The event value type."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any

from .._exceptions import JSONDataError

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

    ``json()`` parses ``data`` as JSON:

    >>> Event('{"delta": "Hi"}').json()
    {'delta': 'Hi'}
    """

    data: str = ""
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON (stdlib ``json``): a dict, list, str, number, bool or None.

        Data that is not JSON raises :class:`~askstream.JSONDataError` (also a
        ``ValueError``), with ``json``'s error as its ``__cause__``.

        >>> Event("[1, 2]").json()
        [1, 2]
        >>> try:
        ...     Event("Hi").json()
        ... except ValueError as exc:
        ...     print(type(exc).__name__, repr(exc.data))
        JSONDataError 'Hi'
        """
        try:
            return _json.loads(self.data)
        except ValueError as exc:  # JSONDecodeError, and int()'s digit limit
            data = self.data if len(self.data) <= 200 else self.data[:200] + "..."
            raise JSONDataError(f"event data is not JSON ({exc}): {data!r}", data=data) from exc
