"""The in-process stream store: one event loop, no outside parts."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from ..sse import Event
from ._errors import InvalidEventId, StreamNotFound
from ._store import FinishStatus, StreamStatus

__all__ = ["MemoryStore"]


class _Log:
    __slots__ = ("changed", "events", "status")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.status: StreamStatus = "open"
        # Made by the first follower that has to wait, set and dropped by the
        # next append or finish: followers sleep until then, no polling, and an
        # append nobody waits for costs no wake-up at all.
        self.changed: asyncio.Event | None = None

    def wake(self) -> None:
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()


class MemoryStore:
    """A :class:`~askstream.streams.Store` in this process's memory.

    Event ids are ``"1"``, ``"2"``, ... per stream. A finished stream is kept
    ``retention`` seconds (by ``clock``, :func:`time.monotonic` unless a test
    injects another) for late readers and resumes, then dropped the next time a
    stream is created. Use it from one event loop; for several processes use a
    shared store.

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
        self, *, retention: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logs: dict[str, _Log] = {}
        self._finished: deque[tuple[float, str]] = deque()  # in finishing order
        self._retention = retention
        self._clock = clock

    def _log(self, stream_id: str) -> _Log:
        try:
            return self._logs[stream_id]
        except KeyError:
            raise StreamNotFound(stream_id) from None

    def _start(self, log: _Log, stream_id: str, after: str | None) -> int:
        # Ids are 1-based positions, so "after id n" is "from index n".
        if after is None:
            return 0
        if after.isdigit() and after.isascii() and int(after) <= len(log.events):
            return int(after)
        raise InvalidEventId(stream_id, after)

    def _expire(self) -> None:
        deadline = self._clock() - self._retention
        while self._finished and self._finished[0][0] <= deadline:
            _, stream_id = self._finished.popleft()
            self._logs.pop(stream_id, None)

    async def create(self, stream_id: str) -> None:
        self._expire()
        if stream_id in self._logs:
            raise ValueError(f"stream {stream_id!r} already exists")
        self._logs[stream_id] = _Log()

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        log = self._log(stream_id)
        if log.status != "open":
            raise RuntimeError(f"stream {stream_id!r} is finished ({log.status})")
        item = Event(data, event, str(len(log.events) + 1))
        log.events.append(item)
        log.wake()
        return item

    async def read(self, stream_id: str, after: str | None = None) -> list[Event]:
        log = self._log(stream_id)
        return log.events[self._start(log, stream_id, after) :]

    async def follow(self, stream_id: str, after: str | None = None) -> AsyncIterator[Event]:
        log = self._log(stream_id)
        position = self._start(log, stream_id, after)
        events = log.events  # a reference: it keeps working if the log expires meanwhile
        while True:
            while position < len(events):
                position += 1
                yield events[position - 1]
            if log.status != "open":
                return
            if log.changed is None:
                log.changed = asyncio.Event()
            await log.changed.wait()

    async def finish(self, stream_id: str, status: FinishStatus = "complete") -> None:
        log = self._log(stream_id)
        if log.status != "open":
            return
        log.status = status
        self._finished.append((self._clock(), stream_id))
        log.wake()

    async def status(self, stream_id: str) -> StreamStatus | None:
        log = self._logs.get(stream_id)
        return None if log is None else log.status
