"""One source's events written to many event streams, each encoded once.

A thousand readers of one answer, each following the answer's log by itself,
cost a thousand wake-ups, store reads and encodes per event. A
:class:`Broadcast` encodes each event once and queues the frame on every joined
stream; each stream's producer, waiting in :func:`attend`, wakes and writes
what was queued with the stream's own ``write``, packing together what came
while it wrote. The publisher never waits on a reader.

On Python 3.12 and later the publisher also spares the wake-ups: it starts each
waiting stream's write itself as an *eager* task (``asyncio.Task(...,
eager_start=True)``), which runs at once and, when the server takes the bytes
without waiting (the usual case), is done before the publisher goes on: no
task switch and no future per reader and event. A write that must wait (the
reader's socket is full) goes on as a task of its own, and what comes
meanwhile queues for the stream's producer. Before 3.12 there is no public
way to run a coroutine that far without a task switch, and every stream's
producer wakes instead.

A stream whose reader falls behind (more than ``_BACKLOG_BYTES`` queued) is
let go: it writes what it was given, goes back to its source and catches up
alone from there, as any stream does, so one slow reader never holds up the
others and never holds more than a bounded backlog.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._items import encode_item

__all__ = ["Broadcast", "Join", "Write", "attend", "enter"]

Write = Callable[[bytes], Coroutine[Any, Any, None]]
"""A stream's write (it raises once the stream stops)."""

_BACKLOG_BYTES = 64 * 1024

# asyncio.Task's eager_start: 3.12 and later (see the module's docstring).
_EAGER = sys.version_info >= (3, 12)


class _Member:
    """A stream joined to a broadcast: frames queued for it, and where it stands."""

    __slots__ = ("cursor", "failure", "frames", "gone", "size", "wake", "write", "writing")

    def __init__(self, cursor: int, write: Write) -> None:
        self.cursor = cursor  # the position of the last frame queued for it
        self.write = write
        self.frames: list[bytes] = []
        self.size = 0
        self.gone = False  # let go: write what is queued, then back to the source
        self.wake: asyncio.Future[None] | None = None  # what its producer awaits
        self.writing: asyncio.Task[None] | None = None  # the publisher's write, waiting
        self.failure: BaseException | None = None  # what the publisher's write raised

    def nudge(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def write_now(self, loop: asyncio.AbstractEventLoop) -> None:
        """The publisher writes the queued frames (its producer waits): eagerly, see above."""
        frames = self.frames
        body = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        self.size = 0
        task = asyncio.Task(self.write(body), loop=loop, eager_start=True)  # type: ignore[call-arg]
        if task.done():
            self._written(task)
        else:  # the server waits for the reader: the rest queues until it is written
            self.writing = task
            task.add_done_callback(self._written)

    def step(self, create_future: Callable[[], asyncio.Future[None]]) -> Awaitable[None] | None:
        """What its producer awaits next: a write, or a wake-up; ``None``: let go."""
        self.wake = None  # (awake now, if it waited)
        if self.failure is not None:
            raise self.failure
        if self.writing is None:  # else the publisher's write waits for the reader
            frames = self.frames
            if frames:
                body = frames[0] if len(frames) == 1 else b"".join(frames)
                frames.clear()
                self.size = 0
                return self.write(body)
            if self.gone:
                return None
        wake = self.wake = create_future()
        return wake

    async def leave(self, join: Join) -> None:
        """Its producer is done with the broadcast: out, and its last write ended."""
        self.gone = True
        join.broadcast._members.pop(self, None)
        writing = self.writing
        if writing is not None:  # one write at a time: it ends before the stream goes on
            writing.cancel()
            await asyncio.wait([writing])
        # What was queued and not written is lost with the stream; the source
        # resumes after what its stream was given.
        join.position = self.cursor

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writing = None
        if task.cancelled():
            self.gone = True
        elif (failure := task.exception()) is not None:
            # Raised in its producer, as if it had written: the stream's own failure.
            self.failure = failure
            self.gone = True
        if self.gone or self.frames:
            self.nudge()  # its producer returns, or writes what came meanwhile


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
        loop = asyncio.get_running_loop() if _EAGER else None
        for member in list(members):
            if position <= member.cursor:  # joined ahead of the broadcast: it has this one
                continue
            member.cursor = position
            member.frames.append(frame)
            member.size += len(frame)
            if member.size > _BACKLOG_BYTES:  # its reader falls behind: let go
                member.gone = True
                del members[member]
            elif loop is not None and member.writing is None and member.wake is not None:
                member.write_now(loop)  # its producer waits: the publisher writes
                continue
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

    (A stream's producer runs the same loop inline, ``_stream.py``: a joined
    reader waits there for as long as it stays, and a frame of this
    coroutine's would cost each one ~0.3 KiB.)
    """
    member = enter(join, write)
    if member is None:
        return  # the broadcast is past the source: it goes on alone
    create_future = asyncio.get_running_loop().create_future
    try:
        while (step := member.step(create_future)) is not None:
            await step
    finally:
        await member.leave(join)


def enter(join: Join, write: Write) -> _Member | None:
    """Join ``join.broadcast`` (``None``: it is past the source) for :func:`attend`'s loop."""
    broadcast = join.broadcast
    if broadcast.closed or join.position < broadcast.position:
        return None
    member = _Member(join.position, write)
    broadcast._members[member] = None
    return member
