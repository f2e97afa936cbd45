"""One timer for every stream of a loop that looks at the same period.

Each open stream's watchdog looks at the stream every ``every`` seconds
(``_watchdog.py``). A timer per stream is uvloop's timer, its handle and a
bound method: about 0.6 KiB per stream, 6 MiB for 10,000 idle streams, for a
callback that does nothing most of the time. Streams of one loop with the same
clock and period share a :class:`Ticker` instead: one timer, armed while
anyone listens, and a dict entry per stream.

A stream that joins between two ticks has its first look sooner than one
period after it joined. The watchdog only needs a state first seen at a look
to have begun at most one look earlier, which still holds: heartbeats and
drops stay late by at most one look, never early.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._clock import Clock, Timer

__all__ = ["Ticker", "ticker"]

logger = logging.getLogger("askstream")

Callback = Callable[[], object]

_Key = tuple[asyncio.AbstractEventLoop, int, float]  # (loop, id(clock), every)

# Each loop's tickers, while they have callbacks. A ticker holds its clock, so
# the clock's id is not reused while its entry is here.
_TICKERS: dict[_Key, Ticker] = {}


class Ticker:
    """Calls every added callback each ``every`` seconds of ``clock``, with one timer.

    >>> import asyncio
    >>> from askstream.testing import FakeClock
    >>> clock = FakeClock()
    >>> ticks = Ticker(clock, 5.0)
    >>> ticks.add(lambda: print("look"))
    >>> asyncio.run(clock.advance(10.0))
    look
    look
    """

    __slots__ = ("_callbacks", "_clock", "_every", "_key", "_timer")

    def __init__(self, clock: Clock, every: float, *, key: _Key | None = None) -> None:
        self._clock = clock
        self._every = every
        self._callbacks: dict[Callback, None] = {}  # ordered, O(1) to leave
        self._timer: Timer | None = None
        self._key = key  # where `ticker` keeps it

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callback) -> None:
        """Call ``callback()`` at every tick from now on, until :meth:`discard`."""
        self._callbacks[callback] = None
        if self._timer is None:
            self._timer = self._clock.call_later(self._every, self._tick)

    def discard(self, callback: Callback) -> None:
        """No more ticks for ``callback`` (a bound method: an equal one will do)."""
        callbacks = self._callbacks
        callbacks.pop(callback, None)
        if not callbacks:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._key is not None and _TICKERS.get(self._key) is self:
                del _TICKERS[self._key]

    def _tick(self) -> None:
        self._timer = None
        callbacks = self._callbacks
        for callback in list(callbacks):
            if callback not in callbacks:  # one called before it discarded it
                continue
            try:
                callback()
            except Exception:  # one stream's failure is not every stream's
                logger.exception("a stream's timer failed")
        if callbacks and self._timer is None:
            self._timer = self._clock.call_later(self._every, self._tick)


def ticker(clock: Clock, every: float) -> Ticker:
    """The running loop's ticker for ``clock`` and ``every`` (made on first use)."""
    key = (asyncio.get_running_loop(), id(clock), every)
    found = _TICKERS.get(key)
    if found is None:
        found = _TICKERS[key] = Ticker(clock, every, key=key)
    return found
