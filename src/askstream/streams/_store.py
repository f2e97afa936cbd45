"""The stream log's interface: what every store (memory, Redis) promises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from ..sse import Event

__all__ = ["FinishStatus", "Store", "StreamStatus"]

#: How a finished stream ended. ``"complete"``: its producer wrote everything;
#: ``"failed"``: the producer broke off with an error; ``"cancelled"``: it was
#: stopped on purpose (a deleted chat, a shutdown, later a cancel request).
FinishStatus = Literal["complete", "failed", "cancelled"]

#: A stream is ``"open"`` until :meth:`Store.finish` gives it a final status.
StreamStatus = Literal["open", "complete", "failed", "cancelled"]


class Store(Protocol):
    """An append-only log of events per stream, read by any number of followers.

    One producer creates a stream, appends events and finishes it; readers
    replay it from any id it handed out and follow it live until it is
    finished. Ids are assigned by the store, increase within a stream, and are
    what a reader sends back as ``Last-Event-ID``.

    Each appended event is one :class:`~askstream.sse.Event` shared by every
    follower, so it may be encoded once for all of them. Do not mutate it.

    Two implementations: :class:`~askstream.streams.MemoryStore` (one process)
    and, for several instances, a Redis store behind the same five methods.
    What a shared store adds fits this shape: ``create`` takes keyword options
    (a producer's lease and its time to live), ``finish(..., "cancelled")`` is
    how a cancel lands, and a stream whose retention ran out raises a
    :class:`~askstream.streams.StoreError` subclass of its own, as an unknown one
    raises :class:`~askstream.streams.StreamNotFound`.

    >>> async def produce(store: Store) -> None:
    ...     await store.create("m1")
    ...     await store.append("m1", '{"delta": "Hi"}')
    ...     await store.finish("m1")
    """

    async def create(self, stream_id: str) -> None:
        """Open a new, empty stream. ``ValueError`` if the id is already taken."""
        ...

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        """Append one event to an open stream and return it, with its new id.

        ``StreamNotFound`` for an unknown stream; ``RuntimeError`` (a usage
        error) if the stream is already finished.
        """
        ...

    async def read(self, stream_id: str, after: str | None = None) -> list[Event]:
        """The events stored so far after id ``after`` (all of them for ``None``).

        ``StreamNotFound`` for an unknown stream; ``InvalidEventId`` when
        ``after`` is not an id this stream handed out.
        """
        ...

    def follow(self, stream_id: str, after: str | None = None) -> AsyncIterator[Event]:
        """Replay the events after ``after``, then yield new ones as they are
        appended, and end once the stream is finished and fully yielded.

        Errors as for :meth:`read`, raised on the first iteration.
        """
        ...

    async def finish(self, stream_id: str, status: FinishStatus = "complete") -> None:
        """Mark the stream finished; followers end after its last event.

        Finishing a finished stream changes nothing (a cancel racing a normal
        end is not an error); ``StreamNotFound`` for an unknown one.
        """
        ...

    async def status(self, stream_id: str) -> StreamStatus | None:
        """``"open"`` or how it finished; ``None`` if the store does not hold it."""
        ...
