"""When an open stream must next wake up, and why: heartbeats and slow readers.

Pure arithmetic over times the caller passes in (the event loop's clock in the
response, plain numbers in tests), so the rules are tested without sleeping.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Action", "Watchdog"]


class Action(Enum):
    PING = "ping"  # nothing was written for `ping` seconds: send a heartbeat comment
    DROP = "drop"  # one write has waited `send_timeout` seconds: the reader takes nothing


class Watchdog:
    """Tracks writes; says when to send a heartbeat and when to drop the reader.

    The writer calls :meth:`sending` before each write and :meth:`sent` after
    it. The watcher sleeps until :meth:`next_wake` and asks :meth:`due`.

    >>> dog = Watchdog(ping=15.0, send_timeout=30.0, now=0.0)
    >>> dog.next_wake(now=0.0), dog.due(now=15.0)
    (15.0, <Action.PING: 'ping'>)
    >>> dog.sending(now=20.0); dog.due(now=50.0)
    <Action.DROP: 'drop'>
    """

    __slots__ = ("last_write", "ping", "send_timeout", "sending_since")

    def __init__(self, *, ping: float | None, send_timeout: float | None, now: float) -> None:
        self.ping = ping
        self.send_timeout = send_timeout
        self.last_write = now  # the end of the last completed write (or the start)
        self.sending_since: float | None = None  # the start of the write under way

    def sending(self, now: float) -> None:
        self.sending_since = now

    def sent(self, now: float) -> None:
        self.sending_since = None
        self.last_write = now

    def next_wake(self, now: float) -> float | None:
        """The time to check again (``None``: nothing to watch, only the reader)."""
        wake: float | None = None
        if self.sending_since is None:
            if self.ping is not None:
                wake = self.last_write + self.ping
            if self.send_timeout is not None:
                # A write may start (and stall) at any moment without telling
                # the watcher: look again within send_timeout.
                check = now + self.send_timeout
                wake = check if wake is None else min(wake, check)
        elif self.send_timeout is not None:
            wake = self.sending_since + self.send_timeout
        elif self.ping is not None:
            wake = now + self.ping  # only to pick up pings again once it ends
        return wake

    def due(self, now: float) -> Action | None:
        """What to do at ``now``, if anything."""
        if self.sending_since is not None:
            if self.send_timeout is not None and now - self.sending_since >= self.send_timeout:
                return Action.DROP
            return None  # bytes are on their way: no heartbeat needed
        if self.ping is not None and now - self.last_write >= self.ping:
            return Action.PING
        return None
