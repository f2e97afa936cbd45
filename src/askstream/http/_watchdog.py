"""When an open stream must send a heartbeat or drop its reader: pure bookkeeping.

The stream does not tell the watchdog about each write: a clock read and a
timer per event are what made heartbeats and slow readers the costliest part
of sending an event. Instead one timer looks, every :attr:`Watchdog.every`
seconds, at the stream's writes (the message being written, or the body last
written: a new object per write) and shows it to :meth:`look`. The same
object at two looks in a row means no progress in between. Counting looks
instead of reading a clock keeps the rules free of time (tested with plain
calls) and makes them late by at most one look, never early.
"""

from __future__ import annotations

import math
from enum import Enum

__all__ = ["LOOKS", "Action", "Watchdog"]

LOOKS = 4
"""Looks per the shorter of ``ping`` and ``send_timeout``: how late either may act, in quarters."""


class Action(Enum):
    PING = "ping"  # nothing was written for `ping` seconds: send a heartbeat comment
    DROP = "drop"  # one write has taken `send_timeout` seconds: the reader takes nothing


class Watchdog:
    """Says, look by look, when to send a heartbeat and when to drop the reader.

    ``every``: the seconds between looks (``None``: no ping, no send timeout,
    nothing to look at). A state first seen at a look began at most one look
    earlier, so a heartbeat goes out between ``ping`` and ``ping + every``
    seconds after the last write, and a write that takes nothing is dropped
    between ``send_timeout`` and ``send_timeout + every`` seconds after it began.

    >>> dog = Watchdog(ping=15.0, send_timeout=30.0)
    >>> dog.every
    3.75
    >>> waiting = object()  # the producer waits on the source, look after look
    >>> [dog.look(waiting, writing=False) for _ in range(5)]
    [None, None, None, None, <Action.PING: 'ping'>]
    """

    __slots__ = ("_drop_after", "_ping_after", "_quiet", "_seen", "every")

    def __init__(self, *, ping: float | None, send_timeout: float | None) -> None:
        limits = [limit for limit in (ping, send_timeout) if limit is not None]
        self.every = min(limits) / LOOKS if limits else None
        self._ping_after = _looks(ping, self.every)
        self._drop_after = _looks(send_timeout, self.every)
        self._seen: object = None  # what the producer was busy with at the last look
        self._quiet = 0  # looks since then that saw the same

    def look(self, busy: object, *, writing: bool) -> Action | None:
        """One look: ``busy`` is what the producer is busy with, ``writing`` whether it writes."""
        if busy is not self._seen:
            self._seen = busy
            self._quiet = 0
            return None
        self._quiet = quiet = self._quiet + 1
        if writing:
            if quiet >= self._drop_after:
                return Action.DROP
        elif quiet >= self._ping_after:
            self._quiet = 0  # the next heartbeat is another `ping` later
            return Action.PING
        return None


def _looks(limit: float | None, every: float | None) -> float:
    """Quiet looks that make ``limit`` seconds (rounded up; infinite: never)."""
    if limit is None or every is None:
        return math.inf
    # The tolerance keeps 30 / 7.5 at 4 looks, not 5, whatever the rounding.
    return math.ceil(limit / every - 1e-9)
