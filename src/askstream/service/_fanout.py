"""Readers of one answer in this process share one follower of the stream log.

Every response follows the log (``Store.follow``), so that any reader can
resume anywhere. Left at that, a thousand readers of one answer are a thousand
followers: per event, a thousand task wake-ups (and, with Redis, a thousand
deliveries). Here a reader follows the log by itself only until it has caught
up and another reader follows the same answer; then it joins its answer's
*hub*, one task per answer and process that follows the log once and writes
each event, encoded once, to every joined reader
(:class:`~askstream.http.Broadcast`). A lone reader (the usual case: the one
who asked) gets no hub: a hub would cost it one more task wake-up per token.
A reader the hub lets go (its socket was full, the answer ended, a heartbeat
was due) follows the log by itself again from the last event it was given,
and joins again once it has caught up. Ids are the log's positions: ``"1"``, ``"2"``, ...

A reader is never left hanging: when the log stays unreachable, or the
answer's stream vanishes from it, for longer than the store waits (the lease
ttl, see ``RedisStore``), the reader gets ``event: error`` with code 503 and
its response ends; an answer whose stream vanished is reported to
``on_lost`` once (the service marks it ``failed``).

The other doors (``/v1/``, ``/api/chat``) translate each event into their own
wire format, so a hub's pre-encoded frames are no use to them: they read
:meth:`Fanout.events` instead, decoded events counted as readers all the same
(the graceful stop waits on :meth:`Fanout.readers`). Their readers of one
answer share one follower too, a *tap*: it follows the log from its start and
keeps the events it has seen for the readers that come later, for as long as
one of them reads (an answer is small; a hub's readers, who may resume
anywhere, keep nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from ..http import Broadcast, Join
from ..sse import Event
from ..streams import Store, StoreUnavailable, StreamNotFound
from ._health import unavailable
from ._logs import detached
from ._metrics import Metrics

__all__ = ["Fanout"]

logger = logging.getLogger("askstream.service")


class _Hub:
    """One answer's follower of the log in this process, publishing to its readers."""

    __slots__ = ("broadcast", "readers", "task")

    def __init__(self, broadcast: Broadcast, task: asyncio.Task[None]) -> None:
        self.broadcast = broadcast
        self.task = task
        self.readers = 0  # followers that have joined it at least once and are still open


class _Tap:
    """One answer's follower of the log from its start, for the doors' readers."""

    __slots__ = ("changed", "ended", "error", "events", "readers", "task")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.ended = False
        self.error: BaseException | None = None  # what the follower raised: each reader's too
        self.changed = asyncio.Event()  # replaced after every wake-up
        self.readers = 0
        self.task: asyncio.Task[None] | None = None


class Fanout:
    """Where the service's responses get their events: :meth:`follow`."""

    def __init__(
        self,
        store: Store,
        *,
        on_lost: Callable[[str], Awaitable[object]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or Metrics()
        self._on_lost = on_lost
        self._lost: set[str] = set()  # reported to on_lost already
        self._hubs: dict[str, _Hub] = {}
        self._readers: dict[str, int] = {}  # open follow()s and events() per stream
        self._taps: dict[str, _Tap] = {}

    def readers(self, stream_ids: set[str] | None = None) -> int:
        """How many responses follow these streams (every stream for ``None``) now."""
        if stream_ids is None:
            return sum(self._readers.values())
        return sum(self._readers.get(stream_id, 0) for stream_id in stream_ids)

    async def follow(self, stream_id: str, after: str | None = None) -> AsyncIterator[Event | Join]:
        """What ``Store.follow`` yields, for an ``EventStreamResponse``: once
        caught up, the response joins the answer's hub instead (a ``Join``).

        Errors as ``Store.follow`` raises them, on the first iteration.
        """
        hub: _Hub | None = None
        open_: bool | None = None  # whether the answer was open, once asked: it never reopens
        self._reader_in(stream_id)
        try:
            while True:
                joinable: _Hub | None = None
                async with contextlib.aclosing(self._store.follow(stream_id, after)) as events:
                    async for event in events:
                        yield event
                        joinable = self._hubs.get(stream_id)
                        if joinable is None and self._followers(stream_id) < 2:
                            continue  # a lone reader makes no hub (see the module's docstring)
                        position = int(event.id or 0)
                        if joinable is None:
                            # Nor does a replay of a finished answer.
                            if open_ is None:
                                open_ = await self._store.status(stream_id) == "open"
                            if open_:
                                joinable = self._start(stream_id, position)
                        elif joinable.broadcast.closed or joinable.broadcast.position > position:
                            joinable = None  # ended, or ahead: catch up alone first
                        if joinable is not None:
                            break
                # Closed, but a local would keep it (and its frame) for as long
                # as this reader stays joined.
                del events
                if joinable is None:
                    return  # the answer ended, and this reader has had all of it
                if hub is not joinable:
                    if hub is not None:
                        self._leave(stream_id, hub)
                    hub = joinable
                    hub.readers += 1
                join = hub.broadcast.join(position)
                yield join
                after = str(join.position)
        except (StoreUnavailable, StreamNotFound) as exc:
            # StreamNotFound: the route saw it before the 200, so it vanished since.
            vanished = isinstance(exc, StreamNotFound) or exc.vanished
            yield await self._gave_up(stream_id, vanished, exc)
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            yield await self._gave_up(stream_id, False, exc)
        finally:
            self._reader_out(stream_id)
            if hub is not None:
                self._leave(stream_id, hub)

    def _reader_in(self, stream_id: str) -> None:
        """One more reader of ``stream_id`` (a follow() or an events())."""
        self._readers[stream_id] = self._readers.get(stream_id, 0) + 1
        self._metrics.readers.inc()

    def _reader_out(self, stream_id: str) -> None:
        """One reader of ``stream_id`` fewer."""
        self._metrics.readers.dec()
        count = self._readers.get(stream_id, 1) - 1
        if count:
            self._readers[stream_id] = count
        else:
            self._readers.pop(stream_id, None)

    def _followers(self, stream_id: str) -> int:
        """The open follow()s of ``stream_id``: its readers but the taps' (who join no hub)."""
        tap = self._taps.get(stream_id)
        return self._readers.get(stream_id, 0) - (0 if tap is None else tap.readers)

    async def events(self, stream_id: str) -> AsyncGenerator[Event, None]:
        """What ``Store.follow(stream_id)`` yields, from the start, for a door that
        translates each event itself; counted in :meth:`readers` while it reads.

        Readers of one answer share one follower of the log (a tap). Errors as
        ``Store.follow`` raises them.
        """
        self._reader_in(stream_id)
        tap = self._taps.get(stream_id)
        if tap is None:
            tap = self._taps[stream_id] = _Tap()
            # Detached, as a hub: it serves every reader of the answer.
            tap.task = asyncio.get_running_loop().create_task(
                self._tap(stream_id, tap),
                name="askstream tap",
                context=detached(message_id=stream_id),
            )
        tap.readers += 1
        try:
            seen = 0
            while True:
                while seen < len(tap.events):
                    seen += 1
                    yield tap.events[seen - 1]
                if tap.error is not None:
                    raise tap.error
                if tap.ended:
                    return
                await tap.changed.wait()
        finally:
            self._reader_out(stream_id)
            tap.readers -= 1
            if tap.readers == 0:  # nobody left to read for: stop following the log
                if tap.task is not None:
                    tap.task.cancel()
                if self._taps.get(stream_id) is tap:
                    del self._taps[stream_id]

    async def _tap(self, stream_id: str, tap: _Tap) -> None:
        def wake() -> None:
            changed, tap.changed = tap.changed, asyncio.Event()
            changed.set()

        try:
            async with contextlib.aclosing(self._store.follow(stream_id)) as events:
                async for event in events:
                    tap.events.append(event)
                    wake()
        except Exception as exc:  # each reader raises it, and its door reports it
            tap.error = exc
        finally:
            tap.ended = True
            # A reader that comes now follows the log again, and sees it end.
            if self._taps.get(stream_id) is tap:
                del self._taps[stream_id]
            wake()

    async def _gave_up(self, stream_id: str, vanished: bool, exc: Exception) -> Event:
        """The last event of a reader whose stream cannot go on: error 503."""
        self._metrics.store_error("lost" if vanished else "unreachable")
        if vanished:
            message = "the answer's stream was lost; its text so far is in the chat's history"
            if self._on_lost is not None and stream_id not in self._lost:
                self._lost.add(stream_id)
                logger.warning("stream %s vanished from the store: %s", stream_id, exc)
                try:
                    await self._on_lost(stream_id)
                except Exception as again:  # the database may be away too
                    logger.warning("recording lost answer %s failed: %s", stream_id, again)
        else:
            message = "the stream store is unreachable; resume later with Last-Event-ID"
        body = json.dumps({"code": 503, "message": message}, separators=(",", ":"))
        return Event(body, event="error")

    def _start(self, stream_id: str, position: int) -> _Hub:
        """A hub for ``stream_id``, publishing what comes after ``position``."""
        broadcast = Broadcast(position)
        # Detached: the hub serves every reader of the stream, not just the
        # request that happened to start it (its lines name the answer only).
        task = asyncio.get_running_loop().create_task(
            self._publish(stream_id, broadcast),
            name="askstream hub",
            context=detached(message_id=stream_id),
        )
        hub = self._hubs[stream_id] = _Hub(broadcast, task)
        return hub

    async def _publish(self, stream_id: str, broadcast: Broadcast) -> None:
        after = str(broadcast.position) if broadcast.position else None
        try:
            async with contextlib.aclosing(self._store.follow(stream_id, after)) as events:
                async for event in events:
                    broadcast.publish(int(event.id or 0), event)
        except Exception:
            # Its readers go on alone and meet the failure themselves, each
            # ending with an error event if it lasts.
            logger.debug("the hub of stream %s failed", stream_id, exc_info=True)
        finally:
            broadcast.close()
            hub = self._hubs.get(stream_id)
            if hub is not None and hub.broadcast is broadcast:
                del self._hubs[stream_id]

    def _leave(self, stream_id: str, hub: _Hub) -> None:
        hub.readers -= 1
        if hub.readers == 0:  # nobody left to write to: stop following the log
            hub.task.cancel()
            if self._hubs.get(stream_id) is hub:
                del self._hubs[stream_id]

    def joined(self, stream_id: str) -> int:
        """How many responses the hub of ``stream_id`` writes to now."""
        hub = self._hubs.get(stream_id)
        return 0 if hub is None else len(hub.broadcast)

    async def aclose(self) -> None:
        """Stop every hub and tap (the app's lifespan ends)."""
        hubs, self._hubs = list(self._hubs.values()), {}
        taps, self._taps = list(self._taps.values()), {}
        tasks = [hub.task for hub in hubs] + [tap.task for tap in taps if tap.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
