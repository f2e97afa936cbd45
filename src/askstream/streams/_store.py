"""The stream log's interface: what every store (memory, Redis) promises."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Literal, Protocol

from ..sse import Event

__all__ = ["CancelCallback", "FinishStatus", "Store", "StreamStatus"]

#: How a finished stream ended. ``"complete"``: its producer wrote everything;
#: ``"failed"``: the producer broke off with an error, or died (its lease ran
#: out); ``"cancelled"``: it was stopped on purpose (a cancel request, a deleted
#: chat, a shutdown).
FinishStatus = Literal["complete", "failed", "cancelled"]

#: A stream is ``"open"`` until :meth:`Store.finish` gives it a final status.
StreamStatus = Literal["open", "complete", "failed", "cancelled"]

#: Called (once, in the event loop, with no arguments) when someone asks the
#: producer of a stream to stop: :meth:`Store.cancel`, on any instance.
CancelCallback = Callable[[], object]


class Store(Protocol):
    """An append-only log of events per stream, read by any number of followers.

    One producer creates a stream, appends events and finishes it; readers
    replay it from any id it handed out and follow it live until it is
    finished. Ids are ``"1"``, ``"2"``, ... within a stream, assigned by the
    store; they are what a reader sends back as ``Last-Event-ID``.

    Each event a follower yields is one :class:`~askstream.sse.Event` shared
    by every follower in this process, so it may be encoded once for all of
    them. Do not mutate it.

    **Leases.** The producer that created a stream holds its *lease* until it
    finishes it. A store shared by several processes keeps the lease alive in
    the background while the producer's process lives; if the process dies,
    the lease runs out, and :meth:`take_over`, called by every live process
    now and then, hands the stream to exactly one of them, which ends it (an
    error event, ``finish(..., "failed")``) so that its followers do not wait
    for ever. In one process the lease is the process itself:
    :meth:`take_over` finds nothing.

    **Cancel.** :meth:`cancel` asks the producer to stop, wherever it runs: the
    store calls the ``on_cancel`` the producer gave :meth:`create`. The
    producer then ends the stream itself (``finish(..., "cancelled")``).

    **Retention.** A finished stream is kept for a while (an hour by default),
    then reading it raises :class:`~askstream.streams.StreamExpired`; an id
    the store never held raises :class:`~askstream.streams.StreamNotFound`.

    Two implementations: :class:`~askstream.streams.MemoryStore` (one process)
    and :class:`~askstream.streams.RedisStore` (several instances).

    >>> async def produce(store: Store) -> None:
    ...     await store.create("m1")
    ...     await store.append("m1", '{"delta": "Hi"}')
    ...     await store.finish("m1")
    """

    async def create(
        self, stream_id: str, *, owner: str = "", on_cancel: CancelCallback | None = None
    ) -> None:
        """Open a new, empty stream and take its lease. ``ValueError`` if the id
        is already taken (also by a stream that expired).

        ``owner`` names who may read it (:meth:`owner`); ``on_cancel`` is
        called once if :meth:`cancel` asks for this stream while it is open.
        """
        ...

    async def owner(self, stream_id: str) -> str | None:
        """Who the stream belongs to (as given to :meth:`create`), also while it
        reads as expired; ``None`` for a stream the store never held or forgot.

        It travels with the stream, so any instance can refuse a stranger
        without asking a database.
        """
        ...

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        """Append one event to an open stream and return it, with its new id.

        ``StreamNotFound`` / ``StreamExpired`` for a stream the store does not
        hold; ``RuntimeError`` (a usage error) if it is already finished.
        """
        ...

    async def read(self, stream_id: str, after: str | None = None) -> list[Event]:
        """The events stored so far after id ``after`` (all of them for ``None``).

        ``StreamNotFound`` for an unknown stream, ``StreamExpired`` for one past
        its retention, ``InvalidEventId`` when ``after`` is not an id this
        stream handed out.
        """
        ...

    def follow(self, stream_id: str, after: str | None = None) -> AsyncGenerator[Event, None]:
        """Replay the events after ``after``, then yield new ones as they are
        appended, and end once the stream is finished and fully yielded.

        Errors as for :meth:`read`, raised on the first iteration. An async
        generator: close it (``aclose``) if you stop reading before its end.
        """
        ...

    async def finish(self, stream_id: str, status: FinishStatus = "complete") -> None:
        """Mark the stream finished and release its lease; followers end after
        its last event.

        Finishing a finished stream changes nothing (a cancel racing a normal
        end is not an error); ``StreamNotFound`` / ``StreamExpired`` for a
        stream the store does not hold.
        """
        ...

    async def status(self, stream_id: str) -> StreamStatus | None:
        """``"open"`` or how it finished; ``None`` if the store does not hold it
        (unknown or expired)."""
        ...

    async def cancel(self, stream_id: str) -> StreamStatus:
        """Ask the producer of an open stream to stop, wherever it runs.

        Returns the status the stream had: ``"open"`` means the request was
        passed on (the stream ends when the producer has stopped), anything else
        means it had already finished and nothing was done.
        ``StreamNotFound`` / ``StreamExpired`` as for :meth:`read`.
        """
        ...

    async def take_over(self) -> list[str]:
        """Take the lease of every open stream whose producer's lease ran out.

        Returns the ids of the streams *this call* took: when several
        processes call it at once, each stream goes to exactly one of them.
        The caller now holds those leases as if it had created the streams
        (the store renews them), and must end each one, typically with an
        ``error`` event and ``finish(..., "failed")`` after recording the
        failure elsewhere. If the caller dies too, its leases run out in turn
        and another process takes over.
        """
        ...
