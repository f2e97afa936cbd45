"""One source's events written to many event streams, each encoded once.

A thousand readers of one answer, each following the answer's log by itself,
cost a thousand wake-ups, store reads and encodes per event. A
:class:`Broadcast` encodes each event once and queues the frame on every joined
stream; each stream's producer, waiting in :func:`attend`, wakes and writes
what was queued with the stream's own ``write``, packing together what came
while it wrote. The publisher never waits on a reader.

A stream whose reader falls behind (more than ``_BACKLOG_BYTES`` queued) is
let go: it writes what it was given, goes back to its source and catches up
alone from there, as any stream does, so one slow reader never holds up the
others and never holds more than a bounded backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._items import encode_item

__all__ = ["Broadcast", "Join", "Write", "attend"]

Write = Callable[[bytes], Awaitable[None]]
"""A stream's write (it raises once the stream stops)."""

_BACKLOG_BYTES = 64 * 1024


class _Member:
    """A stream joined to a broadcast: frames queued for it, and where it stands."""

    __slots__ = ("cursor", "frames", "gone", "size", "wake")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor  # the position of the last frame queued for it
        self.frames: list[bytes] = []
        self.size = 0
        self.gone = False  # let go: write what is queued, then back to the source
        self.wake: asyncio.Future[None] | None = None  # what its producer awaits

    def nudge(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)


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
    stops (its reader left, a shutdown), or when its reader falls behind.

    The publisher hands each frame to every joined stream without waiting on
    anyone: :meth:`publish` is a plain function.

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
        self._members: dict[_Member, None] = {}  # a dict: ordered, and O(1) to leave
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
            if position <= member.cursor:  # joined ahead of the broadcast: it has this one
                continue
            member.cursor = position
            member.frames.append(frame)
            member.size += len(frame)
            if member.size > _BACKLOG_BYTES:  # its reader falls behind: let go
                member.gone = True
                del members[member]
            member.nudge()

    def close(self) -> None:
        """Let every stream go; nobody joins any more."""
        self._closed = True
        members, self._members = self._members, {}
        for member in members:
            member.gone = True
            member.nudge()


async def attend(join: Join, write: Write) -> None:
    """Hand a stream to ``join.broadcast`` until it is let go (or the caller is cancelled).

    Writes, with ``write``, each frame the broadcast publishes for it. The
    stream joins only if the broadcast has published nothing after
    ``join.position``; either way ``join.position`` is then the position of the
    last frame written, where its source goes on.
    """
    broadcast = join.broadcast
    if broadcast.closed or join.position < broadcast.position:
        return  # the broadcast is past the source: it goes on alone
    member = _Member(join.position)
    broadcast._members[member] = None
    create_future = asyncio.get_running_loop().create_future
    frames = member.frames
    try:
        while True:
            if frames:
                body = frames[0] if len(frames) == 1 else b"".join(frames)
                frames.clear()
                member.size = 0
                await write(body)
            elif member.gone:
                return
            else:
                wake = member.wake = create_future()
                await wake
    finally:
        member.gone = True
        broadcast._members.pop(member, None)
        # What was queued and not written is lost with the stream; the source
        # resumes after what its stream was given.
        join.position = member.cursor
