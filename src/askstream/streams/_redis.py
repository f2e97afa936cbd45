"""The Redis stream store: several server processes share every stream.

Each stream is a Redis Stream (``XADD`` with a length cap; followers tail it
with blocking ``XREAD``, see ``_redis_tail.py``) beside a small hash holding
its status; the key layout and the atomic steps are in ``_redis_scripts.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..sse import Event
from . import _redis_scripts as scripts
from ._errors import InvalidEventId, StoreUnavailable, StreamExpired, StreamNotFound
from ._lease import LeaseSchedule, check_lease
from ._memory import TOMBSTONE
from ._redis_batch import AppendBatcher
from ._redis_tail import Tail, connection_errors, wake
from ._store import CancelCallback, FinishStatus, StreamStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStore"]

logger = logging.getLogger("askstream")

_STATUSES: dict[bytes, StreamStatus] = {
    b"open": "open",
    b"complete": "complete",
    b"failed": "failed",
    b"cancelled": "cancelled",
}
_TAKE_OVER_BATCH = 100
_BLOCK_MARGIN = 5.0
_RETRY_DELAY = 0.5


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def unpack_events(blob: bytes, after: int) -> list[Event] | None:
    """The events the READ script packed; ``None`` if they do not follow ``after``
    one by one (the length cap cut some)."""
    events: list[Event] = []
    position, end, expected = 0, len(blob), after + 1
    while position < end:
        newline = blob.index(b"\n", position)
        number, kind_size, data_size = map(int, blob[position:newline].split())
        if number != expected:
            return None
        start = newline + 1
        kind = blob[start : start + kind_size].decode() if kind_size else "message"
        start += kind_size
        position = start + data_size
        events.append(Event(blob[start:position].decode(), kind, str(number)))
        expected += 1
    return events


class RedisStore:
    """A :class:`~askstream.streams.Store` in Redis, shared by every process that uses it.

    Event ids are ``"1"``, ``"2"``, ... per stream, as in
    :class:`~askstream.streams.MemoryStore`. Each stream keeps at most about
    ``max_events`` events (``XADD MAXLEN ~``); a finished one stays
    ``retention`` seconds, then reads as :class:`StreamExpired` for
    ``tombstone`` seconds more, then as :class:`StreamNotFound`.

    The producer's lease runs out ``lease_ttl`` seconds after its last renewal;
    this store renews the leases of the streams it created every
    ``lease_renew`` seconds, in one round trip for all of them. Cancel
    requests reach the producing process by pub/sub at once, and through the
    renewal at the latest. A follower gives up with
    :class:`~askstream.streams.StoreUnavailable` when Redis stays unreachable,
    or its stream's keys stay gone, for ``lease_ttl`` seconds. Keys start
    with ``prefix`` (several deployments, or test runs, can share one Redis).
    Every follower in this process shares ``readers`` connections for its
    blocking reads; other commands use a pool of at most ``max_connections``.

    Use it as ``async with``: it owns its connections and background tasks.
    It needs Redis 7 or newer, and one Redis (or a Sentinel pair), not a Cluster.

    Example::

        async def main() -> None:
            async with RedisStore("redis://127.0.0.1:6379/0", prefix="demo:") as store:
                await store.create("m1")
                await store.append("m1", '{"delta": "Hi"}')
                await store.finish("m1")
                print([event.id async for event in store.follow("m1")])
        asyncio.run(main())
        ['1']
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "askstream:",
        retention: float = 3600.0,
        tombstone: float = TOMBSTONE,
        max_events: int = 10_000,
        lease_ttl: float = 5.0,
        lease_renew: float = 2.0,
        readers: int = 4,
        max_connections: int = 64,
        block: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ImportError as exc:
            raise ImportError(
                "RedisStore needs the redis package: pip install 'askstream[redis]'"
            ) from exc
        check_lease(lease_ttl, lease_renew)
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.url = url
        self.prefix = prefix
        self._retention_ms = _ms(retention)  # 1 ms at least: PEXPIRE 0 deletes at once
        self._tombstone_ms = _ms(max(tombstone, retention))
        self._max_events = max_events
        self._lease_ttl_ms = _ms(lease_ttl)
        self._lease_renew = lease_renew
        self._readers = readers
        self._max_connections = max_connections
        self._block = block
        self._clock = clock
        self._sleep = sleep
        self._leases = LeaseSchedule(lease_renew)
        self._on_cancel: dict[str, CancelCallback] = {}
        self._leases_changed = asyncio.Event()
        self._instance = uuid.uuid4().hex[:12]
        # Nothing connects before the first command.
        # Replies stay bytes: decoding every item in redis-py's parser costs more
        # than decoding the few fields we use.
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=20)
        client = self._client = Redis.from_pool(pool)
        self._lua_create = client.register_script(scripts.CREATE)
        self._lua_append = client.register_script(scripts.APPEND)
        self._lua_finish = client.register_script(scripts.FINISH)
        self._lua_read = client.register_script(scripts.READ)
        self._lua_cancel = client.register_script(scripts.CANCEL)
        self._lua_renew = client.register_script(scripts.RENEW)
        self._lua_take_over = client.register_script(scripts.TAKE_OVER)
        self._batcher = AppendBatcher(self._lua_append, max_events)
        self._tail: Tail | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancellable: list[asyncio.Task[None]] = []
        self._connections: list[Redis] = []
        self._closed = False

    # -- life -------------------------------------------------------------------

    async def __aenter__(self) -> RedisStore:
        if self._tail is not None or self._closed:
            raise RuntimeError("a RedisStore can be entered only once")
        client = self._client
        self._tail = Tail(
            client=client,
            connect=self._connect,
            start_task=self._start,
            wake_prefix=f"{self.prefix}wake:{self._instance}:",
            readers=self._readers,
            block_ms=_ms(self._block),
            closing=self._is_closing,
            sleep=self._sleep,
            patience=self._lease_ttl_ms / 1000,
            clock=self._clock,
        )
        self._cancellable = [
            self._start(self._batcher.run(connection_errors(), self._is_closing)),
            self._start(self._keep_leases()),
        ]
        self._start(self._watch_cancels())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background tasks and close every connection."""
        tail, closed = self._tail, self._closed
        self._closed = True
        if tail is None or closed:
            return
        # Blocking reads are woken, not cancelled (see Tail.stop); the other
        # tasks wait on asyncio alone and are cancelled.
        await tail.stop()
        await wake(self._client, self._control_key)
        for task in self._cancellable:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            if pending:
                logger.error("%d RedisStore tasks did not stop; cancelling them", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        for connection in self._connections:
            await connection.aclose()
        keys = [f"{self.prefix}wake:{self._instance}:{n}" for n in range(self._readers)]
        try:
            await self._client.delete(self._control_key, *keys)
        except connection_errors():
            logger.warning("could not delete this process's wake keys", exc_info=True)
        await self._client.aclose()

    def _is_closing(self) -> bool:
        return self._closed

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # The store's loops serve every stream: they start in a context of their
        # own, not in that of the reader that happened to need one first (the
        # service's log would name its request on every line they write).
        task = asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The loops catch Redis's errors; anything else is a bug: say so.
            logger.error("a RedisStore task failed", exc_info=task.exception())

    def _connect(self) -> Redis:
        # A blocking XREAD holds its connection: readers get their own.
        from redis.asyncio import Redis

        # redis-py's default socket timeout (5 s) is shorter than a blocking
        # read's wait: give the read its block time and a margin, so that only
        # a dead connection times out.
        connection = Redis.from_url(
            self.url,
            single_connection_client=True,
            socket_keepalive=True,
            socket_timeout=self._block + _BLOCK_MARGIN,
        )
        self._connections.append(connection)
        return connection

    def _running(self) -> Tail:
        if self._tail is None or self._closed:
            raise RuntimeError("use the RedisStore as `async with RedisStore(...) as store`")
        return self._tail

    def _keys(self, stream_id: str) -> tuple[str, str, str]:
        meta = f"{self.prefix}s:{stream_id}"
        return meta, meta + ":log", meta + ":gone"

    @property
    def _lease_key(self) -> str:
        return self.prefix + "leases"

    @property
    def _cancels_key(self) -> str:
        return self.prefix + "cancels"

    @property
    def _control_key(self) -> str:
        # The wake stream of this process's cancel watcher.
        return f"{self.prefix}wake:{self._instance}:c"

    async def _missing(self, stream_id: str) -> StreamNotFound | StreamExpired:
        gone = self._keys(stream_id)[2]
        if await self._client.exists(gone):
            return StreamExpired(stream_id)
        return StreamNotFound(stream_id)

    # -- the producer -----------------------------------------------------------

    async def create(
        self, stream_id: str, *, owner: str = "", on_cancel: CancelCallback | None = None
    ) -> None:
        self._running()  # the lease needs the background renewal
        meta, _, gone = self._keys(stream_id)
        # Registered first: a cancel may arrive as soon as the stream exists.
        if on_cancel is not None:
            self._on_cancel[stream_id] = on_cancel
        try:
            created = await self._lua_create(
                keys=[meta, gone, self._lease_key], args=[stream_id, self._lease_ttl_ms, owner]
            )
        except BaseException:
            self._on_cancel.pop(stream_id, None)
            raise
        if not created:
            self._on_cancel.pop(stream_id, None)
            raise ValueError(f"stream {stream_id!r} already exists")
        self._leases.hold(stream_id, self._clock())
        self._leases_changed.set()

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        self._running()  # appends go out through the batcher's task
        meta, log, _ = self._keys(stream_id)
        number = await self._batcher.append(meta, log, data, event)
        if number == -1:
            raise await self._missing(stream_id)
        if number == -2:
            raise RuntimeError(f"stream {stream_id!r} is finished ({await self.status(stream_id)})")
        return Event(data, event, str(number))

    async def finish(self, stream_id: str, status: FinishStatus = "complete") -> None:
        meta, log, gone = self._keys(stream_id)
        self._leases.release(stream_id)
        self._on_cancel.pop(stream_id, None)
        done = await self._lua_finish(
            keys=[meta, log, gone, self._lease_key],
            args=[status, self._retention_ms, self._tombstone_ms, stream_id],
        )
        if done == -1:
            raise await self._missing(stream_id)

    # -- readers ----------------------------------------------------------------

    async def _snapshot(self, stream_id: str, after: str | None) -> tuple[bool, list[Event], int]:
        """Whether the stream is open, the events after ``after``, the last number read."""
        start = 0
        if after is not None:
            if not (after.isdigit() and after.isascii()):
                raise InvalidEventId(stream_id, after)
            start = int(after)
        reply = await self._lua_read(keys=list(self._keys(stream_id)), args=[start])
        if reply[0] == b"unknown":
            raise StreamNotFound(stream_id)
        if reply[0] == b"expired":
            raise StreamExpired(stream_id)
        if len(reply) < 3:
            assert after is not None
            raise InvalidEventId(stream_id, after)
        events = unpack_events(reply[2], start)
        if events is None or start + len(events) != int(reply[1]):
            raise StreamExpired(stream_id)  # the events asked for were cut by the cap
        return reply[0] == b"open", events, start + len(events)

    async def read(self, stream_id: str, after: str | None = None) -> list[Event]:
        return (await self._snapshot(stream_id, after))[1]

    async def follow(self, stream_id: str, after: str | None = None) -> AsyncGenerator[Event, None]:
        is_open, events, position = await self._snapshot(stream_id, after)
        for event in events:
            yield event
        if not is_open:
            return
        tail = self._running()
        feed = await tail.acquire(self._keys(stream_id)[1], position)
        try:
            if position < feed.start:
                # The feed was started by a follower that got further before
                # this one subscribed: read the gap between the two directly.
                _, gap, _ = await self._snapshot(stream_id, str(position))
                for event in gap[: feed.start - position]:
                    yield event
                position = feed.start
            while True:
                buffered = feed.events
                index = position - feed.start
                while index < len(buffered):
                    yield buffered[index]
                    index += 1
                position = feed.start + index
                if feed.expired:
                    raise StreamExpired(stream_id)
                if feed.status is not None:
                    return
                if feed.lost is not None:
                    raise StoreUnavailable(stream_id, feed.lost, vanished=feed.vanished)
                await feed.wait()
        finally:
            tail.release(feed)

    async def owner(self, stream_id: str) -> str | None:
        meta, _, gone = self._keys(stream_id)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(meta, "o")
            pipe.get(gone)
            owner, tombstone = await pipe.execute()
        found = owner if owner is not None else tombstone
        return found.decode() if isinstance(found, bytes) else None

    async def status(self, stream_id: str) -> StreamStatus | None:
        status = await self._client.hget(self._keys(stream_id)[0], "s")
        return None if not isinstance(status, bytes) else _STATUSES.get(status)

    # -- cancel and leases --------------------------------------------------------

    async def cancel(self, stream_id: str) -> StreamStatus:
        meta, _, gone = self._keys(stream_id)
        status = await self._lua_cancel(keys=[meta, gone, self._cancels_key], args=[stream_id])
        if status == b"unknown":
            raise StreamNotFound(stream_id)
        if status == b"expired":
            raise StreamExpired(stream_id)
        return _STATUSES[status]

    async def take_over(self) -> list[str]:
        self._running()  # the leases taken need the background renewal
        taken = await self._lua_take_over(
            keys=[self._lease_key], args=[self.prefix, self._lease_ttl_ms, _TAKE_OVER_BATCH]
        )
        now = self._clock()
        stream_ids = [stream_id.decode() for stream_id in taken]
        for stream_id in stream_ids:
            self._leases.hold(stream_id, now)
        if stream_ids:
            self._leases_changed.set()
        return stream_ids

    def _cancelled(self, stream_id: str) -> None:
        on_cancel = self._on_cancel.pop(stream_id, None)
        if on_cancel is not None:
            on_cancel()

    async def _watch_cancels(self) -> None:
        # Every process tails the cancels stream and acts on the streams it
        # produces. A stream, not pub/sub: a request made while this process
        # reconnects is still there when it reads again.
        client = self._connect()
        key, control = self._cancels_key.encode(), self._control_key.encode()
        errors = connection_errors()
        last: bytes | None = None
        woken = b"0-0"
        failing = False
        while not self._closed:
            try:
                if last is None:  # from now on: older requests are not ours to act on
                    newest: Any = await client.xrevrange(key, count=1)
                    last = newest[0][0] if newest else b"0-0"
                streams: Any = {key: last, control: woken}
                reply: Any = await client.xread(streams, block=_ms(self._block))
            except errors as exc:
                if self._closed:
                    return
                # Requests made meanwhile also arrive with the next lease renewal.
                if not failing:  # once per outage, not every retry
                    logger.warning("reading cancel requests failed (%s); retrying", exc)
                failing = True
                await self._sleep(_RETRY_DELAY)
                continue
            failing = False
            for name, entries in reply or ():
                if name == control:
                    woken = entries[-1][0]
                    continue
                for entry_id, fields in entries:
                    last = entry_id
                    self._cancelled(fields[b"id"].decode())

    async def _keep_leases(self) -> None:
        schedule = self._leases
        failing = False
        while not self._closed:
            wake = schedule.next_wake()
            if wake is None:
                self._leases_changed.clear()
                await self._leases_changed.wait()
                continue
            delay = wake - self._clock()
            if delay > 0:
                await self._sleep(delay)
            now = self._clock()
            due = schedule.due(now)
            if not due:
                continue
            try:
                await self._renew_leases(due)
            except connection_errors() as exc:
                if not failing:  # once per outage, not every retry
                    logger.warning("renewing %d leases failed (%s); retrying", len(due), exc)
                failing = True
                await self._sleep(min(_RETRY_DELAY, self._lease_renew / 4))
                continue
            failing = False
            schedule.renewed(due, now)

    async def _renew_leases(self, stream_ids: list[str]) -> None:
        metas = [self._keys(stream_id)[0] for stream_id in stream_ids]
        lost, cancelled = await self._lua_renew(
            keys=[self._lease_key, *metas], args=[self._lease_ttl_ms, *stream_ids]
        )
        for stream_id in map(bytes.decode, lost):
            if stream_id in self._leases:
                logger.error(
                    "stream %s lost its lease (this process stalled past the lease ttl?); "
                    "it was ended by another instance",
                    stream_id,
                    extra={"stream_id": stream_id},
                )
            self._leases.release(stream_id)
            self._on_cancel.pop(stream_id, None)
        for stream_id in map(bytes.decode, cancelled):
            self._cancelled(stream_id)
