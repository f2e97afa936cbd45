"""One source's events written to many event streams, each encoded once.

A thousand readers of one answer, each with a task of its own that wakes,
takes the event and writes it, cost a thousand task wake-ups per event, each
resuming every frame of its task. A :class:`Broadcast` lets one publisher write
each event to every reader's ``send`` itself: per reader, one call that
returns without suspending while the reader's socket takes the bytes.

A reader that cannot take an event at once (its socket is full) is let go: its
own task finishes that write and goes on alone, from its source, as any stream
does, so one slow reader never holds up the others, and heartbeats and the
slow-reader timeout keep working as before.
"""

from __future__ import annotations

from typing import Protocol

from ._items import encode_item

__all__ = ["Broadcast", "Join"]


class _Member(Protocol):
    """A stream parked in a broadcast (``_stream.Stream``)."""

    def _offer(self, frame: bytes, position: int) -> bool: ...

    def _let_go(self, outcome: object) -> None: ...


class Join:
    """What a source yields to hand its stream to a broadcast: ``broadcast.join(position)``.

    The response writes what it holds, joins if the broadcast has published
    nothing after ``position``, and is written to by :meth:`Broadcast.publish`
    until let go. When the source is resumed, :attr:`position` is that of the
    last event its stream was given: the source goes on after it.

    >>> join = Broadcast(position=3).join(3)
    >>> join.position  # set again by the response before the source goes on
    3
    """

    __slots__ = ("broadcast", "position")

    def __init__(self, broadcast: Broadcast, position: int) -> None:
        self.broadcast = broadcast
        self.position = position

    def __repr__(self) -> str:
        return f"Join(position={self.position})"


class Broadcast:
    """Items published once, written by the publisher to every stream that joined.

    Positions are increasing integers that the publisher gives its items (a
    stream log's event ids). A source of an :class:`EventStreamResponse` (an
    async generator or iterator) that has yielded everything up to position
    ``n`` hands its stream over with ``join = broadcast.join(n); yield join``.
    The stream joins unless the broadcast has already published past ``n``;
    either way, when the source is asked for its next item, ``join.position``
    tells where its stream stands, and the source goes on from there by itself
    (and may join again). A stream is let go when the broadcast closes, when it
    stops (its reader left, a shutdown), or when a write would have to wait.

    Writes happen in the publisher's task, one reader after the other, without
    waiting on anyone: :meth:`publish` is a plain function.

    >>> hub = Broadcast()
    >>> hub.publish(1, "Hello")   # nobody has joined: written to nobody
    >>> hub.position, len(hub)
    (1, 0)
    >>> hub.join(1)
    Join(position=1)
    """

    __slots__ = ("_closed", "_members", "position")

    def __init__(self, position: int = 0) -> None:
        self.position = position  # of the last item published
        self._members: dict[_Member, None] = {}
        self._closed = False

    def __len__(self) -> int:
        """How many streams are joined now."""
        return len(self._members)

    @property
    def closed(self) -> bool:
        return self._closed

    def join(self, position: int) -> Join:
        """What a source yields to hand its stream over, having yielded up to ``position``."""
        return Join(self, position)

    def publish(self, position: int, item: object) -> None:
        """Encode ``item`` once and write it to every joined stream.

        ``position`` must be greater than the last one published. Streams that
        joined ahead of it (they already had it) are skipped.
        """
        if position <= self.position:
            raise ValueError(f"position {position} is not after {self.position}")
        self.position = position
        if not self._members:
            return
        frame = encode_item(item)
        members = self._members
        for member in list(members):
            if not member._offer(frame, position):
                members.pop(member, None)

    def close(self) -> None:
        """Let every stream go; nobody joins any more."""
        self._closed = True
        members, self._members = self._members, {}
        for member in members:
            member._let_go(None)

    def _admit(self, member: _Member, position: int) -> bool:
        """Whether ``member``, having had everything up to ``position``, may join."""
        if self._closed or position < self.position:
            return False
        self._members[member] = None
        return True

    def _leave(self, member: _Member) -> None:
        self._members.pop(member, None)
