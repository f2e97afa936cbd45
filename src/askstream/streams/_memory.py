"""The in-process stream store: one event loop, no outside parts."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable

from ..sse import Event
from ._errors import InvalidEventId, StoreFull, StreamExpired, StreamNotFound
from ._store import CancelCallback, FinishStatus, StreamStatus

__all__ = ["MemoryStore"]

#: How long an expired stream's id is remembered, so that reading it says
#: "expired" (410) rather than "never existed" (404): a week.
TOMBSTONE = 7 * 24 * 3600.0

#: What a stored event costs besides its data string: the Event object, its id
#: string and the list's pointer to it (measured with sys.getsizeof). Counted
#: because an answer is thousands of small events: 50 echoed 60 KB questions
#: are 750,000 events, 237 MB, of which the deltas themselves are a fifth.
_EVENT_COST = sys.getsizeof(Event("", id="1234")) + sys.getsizeof("1234") + 8
#: What remembering an expired stream costs besides its id string: the tuple and
#: the time in it, and the dict's slot (about 100 bytes on 64-bit CPython).
_MARKER_COST = sys.getsizeof((0.0, "")) + sys.getsizeof(0.0) + 100
#: The markers' own budget, beside ``max_bytes`` of events: an eighth of it, at
#: least this much. A busy process expires thousands of streams an hour, each
#: remembered a week; past the budget the oldest are forgotten (a late reader of
#: those gets 404 instead of 410).
MIN_MARKER_BYTES = 64 * 1024


def marker_cost(stream_id: str) -> int:
    """Bytes the marker of one expired stream is counted as."""
    return sys.getsizeof(stream_id) + _MARKER_COST


class _Log:
    __slots__ = ("events", "on_cancel", "owner", "size", "status", "waiters")

    def __init__(self, owner: str, on_cancel: CancelCallback | None) -> None:
        self.owner = owner
        self.events: list[Event] = []
        self.size = 0  # bytes its events hold (data strings and _EVENT_COST each)
        self.status: StreamStatus = "open"
        self.on_cancel = on_cancel
        # One future per follower that has to wait, resolved and dropped by the
        # next append or finish: followers sleep until then, no polling, and an
        # append nobody waits for costs no wake-up at all. Bare futures rather
        # than an asyncio.Event made per append: a token spares the Event and
        # its bookkeeping. One each, not one shared: a follower's cancel cancels
        # the future it awaits, which must not end the others' wait.
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class MemoryStore:
    """A :class:`~askstream.streams.Store` in this process's memory.

    Event ids are ``"1"``, ``"2"``, ... per stream. A finished stream is kept
    ``retention`` seconds (by ``clock``, :func:`time.monotonic` unless a test
    injects another) for late readers and resumes, then dropped the next time a
    stream is created; its id is remembered ``tombstone`` seconds more, so that
    reading it raises :class:`StreamExpired` rather than :class:`StreamNotFound`.
    The producer's lease is this process: :meth:`take_over` never finds a stream.

    ``max_bytes`` caps what the events hold (their data strings as Python keeps
    them, plus a fixed cost per event). Past it, the oldest finished streams are
    dropped first, as if their retention had run out; when the open streams
    alone fill it, :meth:`create` raises :class:`StoreFull` (the service answers
    the ask 503), while streams already open go on to their end.
    ``on_evict`` is called once for each finished stream dropped that way,
    before its retention ran out (the service counts them).
    Use it from one event loop; for several processes use
    :class:`~askstream.streams.RedisStore`.

    >>> import asyncio
    >>> async def main() -> list[str]:
    ...     store = MemoryStore()
    ...     await store.create("m1")
    ...     await store.append("m1", "Hel")
    ...     await store.append("m1", "lo", event="done")
    ...     await store.finish("m1")
    ...     return [e.id + ":" + e.data async for e in store.follow("m1", after="1")]
    >>> asyncio.run(main())
    ['2:lo']
    """

    def __init__(
        self,
        *,
        retention: float = 3600.0,
        tombstone: float = TOMBSTONE,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int | None = None,
        on_evict: Callable[[], object] | None = None,
    ) -> None:
        self._on_evict = on_evict
        self._logs: dict[str, _Log] = {}
        self._size = 0  # bytes held by every log
        self._max_bytes = max_bytes
        self._markers = 0  # bytes held by the markers of expired streams (_gone)
        self._max_markers = None if max_bytes is None else max(max_bytes // 8, MIN_MARKER_BYTES)
        self._finished: deque[tuple[float, str]] = deque()  # in finishing order
        # expired id -> (when, owner); insertion order is expiry order
        self._gone: dict[str, tuple[float, str]] = {}
        self._retention = retention
        self._tombstone = tombstone
        self._clock = clock

    def _log(self, stream_id: str) -> _Log:
        try:
            return self._logs[stream_id]
        except KeyError:
            if stream_id in self._gone:
                raise StreamExpired(stream_id) from None
            raise StreamNotFound(stream_id) from None

    def _start(self, log: _Log, stream_id: str, after: str | None) -> int:
        # Ids are 1-based positions, so "after id n" is "from index n".
        if after is None:
            return 0
        # (Its length first: int() refuses a 5,000-digit string with a ValueError.)
        if (
            len(after) <= 18
            and after.isdigit()
            and after.isascii()
            and int(after) <= len(log.events)
        ):
            return int(after)
        raise InvalidEventId(stream_id, after)

    @property
    def size(self) -> int:
        """Bytes the stored events hold, as counted against ``max_bytes``."""
        return self._size

    @property
    def marker_bytes(self) -> int:
        """Bytes the markers of expired streams are counted as (their own budget)."""
        return self._markers

    def _drop_oldest(self, now: float) -> None:
        _, stream_id = self._finished.popleft()
        log = self._logs.pop(stream_id, None)
        if log is not None:
            self._size -= log.size
        self._gone[stream_id] = (now, "" if log is None else log.owner)
        self._markers += marker_cost(stream_id)
        if self._max_markers is not None:
            while self._markers > self._max_markers:
                self._forget(next(iter(self._gone)))

    def _forget(self, stream_id: str) -> None:
        del self._gone[stream_id]
        self._markers -= marker_cost(stream_id)

    def _make_room(self, room: int) -> None:
        # Until the events hold at most max_bytes - room: finished streams go,
        # oldest first (a late reader of those gets 410 and finds the answer in
        # the history); a live stream has no other copy, so it stays.
        assert self._max_bytes is not None
        now = self._clock()
        while self._size > self._max_bytes - room and self._finished:
            self._drop_oldest(now)
            if self._on_evict is not None:
                self._on_evict()

    def _expire(self) -> None:
        now = self._clock()
        deadline = now - self._retention
        while self._finished and self._finished[0][0] <= deadline:
            self._drop_oldest(now)
        forgotten = now - self._tombstone
        for stream_id, (when, _) in list(self._gone.items()):
            if when > forgotten:
                break
            self._forget(stream_id)

    async def create(
        self, stream_id: str, *, owner: str = "", on_cancel: CancelCallback | None = None
    ) -> None:
        self._expire()
        if stream_id in self._logs or stream_id in self._gone:
            raise ValueError(f"stream {stream_id!r} already exists")
        if self._max_bytes is not None:
            self._make_room(1)  # a new stream needs some room
            if self._size >= self._max_bytes:
                raise StoreFull(stream_id, self._max_bytes)
        self._logs[stream_id] = _Log(owner, on_cancel)

    async def owner(self, stream_id: str) -> str | None:
        log = self._logs.get(stream_id)
        if log is not None:
            return log.owner
        gone = self._gone.get(stream_id)
        return None if gone is None else gone[1]

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        log = self._log(stream_id)
        if log.status != "open":
            raise RuntimeError(f"stream {stream_id!r} is finished ({log.status})")
        item = Event(data, event, str(len(log.events) + 1))
        log.events.append(item)
        size = sys.getsizeof(data) + _EVENT_COST
        log.size += size
        self._size += size
        if self._max_bytes is not None and self._size > self._max_bytes:
            self._make_room(0)
        log.wake()
        return item

    async def read(self, stream_id: str, after: str | None = None) -> list[Event]:
        log = self._log(stream_id)
        return log.events[self._start(log, stream_id, after) :]

    async def follow(self, stream_id: str, after: str | None = None) -> AsyncGenerator[Event, None]:
        log = self._log(stream_id)
        position = self._start(log, stream_id, after)
        events = log.events  # a reference: it keeps working if the log expires meanwhile
        while True:
            while position < len(events):
                position += 1
                yield events[position - 1]
            if log.status != "open":
                return
            waiter = asyncio.get_running_loop().create_future()
            log.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in log.waiters:
                    log.waiters.remove(waiter)
                raise

    async def finish(self, stream_id: str, status: FinishStatus = "complete") -> None:
        log = self._log(stream_id)
        if log.status != "open":
            return
        log.status = status
        log.on_cancel = None
        self._finished.append((self._clock(), stream_id))
        log.wake()

    async def status(self, stream_id: str) -> StreamStatus | None:
        log = self._logs.get(stream_id)
        return None if log is None else log.status

    async def cancel(self, stream_id: str) -> StreamStatus:
        log = self._log(stream_id)
        on_cancel, log.on_cancel = log.on_cancel, None
        if log.status == "open" and on_cancel is not None:
            on_cancel()
        return log.status

    async def take_over(self) -> list[str]:
        # The lease is this process: while it runs, every producer is alive.
        return []
