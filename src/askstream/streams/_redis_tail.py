"""Tailing Redis streams for every follower in this process over a few connections.

A blocking ``XREAD`` holds its connection, so one per follower would mean a
thousand connections (and a thousand replies to parse per event) for a
thousand readers. Instead each followed stream has one :class:`Feed` here,
shared by all its local followers, and a fixed number of reader connections
(``readers``) each run one ``XREAD BLOCK`` over all the streams they were given.
A reply is parsed once into :class:`~askstream.sse.Event` objects that every
follower of the stream then yields: identical events, encoded once.

Adding a stream to a reader that is blocked in ``XREAD`` must wake it. Each
reader also reads a small *wake* stream of its own; the tail adds an entry to
it (from another connection). The reader asks for the wake stream's entries
after the last one it saw, so a wake sent before its ``XREAD`` reached Redis
still ends that ``XREAD`` at once: there is no window in which one is lost,
and no polling.

A follower must not wait for ever on a stream that cannot move. When Redis
stays unreachable for ``patience`` seconds (the lease ttl: by then a dead
producer's readers would have heard of it), or a followed stream's key has
vanished (Redis restarted empty) and the stream has been quiet for that long,
the reader marks its feeds *lost* and wakes their followers, which raise
``StoreUnavailable``. A reader logs an outage once and its end once, however
often it retries in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..sse import Event

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Feed", "Tail", "connection_errors", "wake"]

logger = logging.getLogger("askstream")

# Entries per stream in one XREAD reply: bounds a reply, not throughput (the
# reader comes straight back for the rest).
_COUNT = 1000
# How long a wake stream outlives its last wake: it only matters if this
# process dies without deleting it.
_WAKE_TTL_MS = 3600_000
_RETRY_DELAY = 0.5


def connection_errors() -> tuple[type[Exception], ...]:
    """What a Redis command raises when Redis is unreachable or refuses, for ``except``.

    Imported late: the redis package is an optional extra (``askstream[redis]``).
    """
    from redis.exceptions import RedisError

    return (RedisError, OSError)


async def wake(client: Redis, key: str) -> None:
    """Add an entry to the wake stream ``key``: an ``XREAD`` waiting on it returns."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.pexpire(key, _WAKE_TTL_MS)
            await pipe.execute()
    except connection_errors():
        # The reader notices when its XREAD times out instead.
        logger.warning("waking a Redis stream reader failed", exc_info=True)


def entry_seq(entry_id: bytes) -> int:
    """The event number in a stream entry id ``0-<n>``."""
    return int(entry_id[2:])


class Feed:
    """One stream as this process's followers see it: the events after ``start``.

    ``events[i]`` is the event numbered ``start + 1 + i``. ``status`` is
    ``None`` while the stream is open, then how it finished; ``expired`` is set
    when the reader found events missing (cut by the length cap before they
    were read).
    """

    __slots__ = (
        "_changed",
        "cursor",
        "events",
        "expired",
        "followers",
        "key",
        "lost",
        "quiet_since",
        "raw_key",
        "reader",
        "start",
        "status",
        "vanished",
    )

    def __init__(self, key: str, start: int, now: float = 0.0) -> None:
        self.key = key
        self.raw_key = key.encode()  # what XREAD is sent and answers with
        self.start = start
        self.cursor = start  # the last entry read, the final-status one included
        self.events: list[Event] = []
        self.status: str | None = None
        self.expired = False
        self.followers = 0
        self.reader: _Reader | None = None
        self._changed: asyncio.Event | None = None
        # Why its followers must give up (Redis away, the stream gone), once they must.
        self.lost: str | None = None
        self.vanished = False
        self.quiet_since = now  # when it last got an entry (or was made)

    @property
    def ended(self) -> bool:
        return self.status is not None or self.expired or self.lost is not None

    @property
    def meta_key(self) -> str:
        """The key of the stream's status hash (the log's key without ``:log``)."""
        return self.key.removesuffix(":log")

    def lose(self, reason: str, *, vanished: bool = False) -> None:
        self.lost = reason
        self.vanished = vanished
        self.wake()

    def push(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        events = self.events
        for entry_id, fields in entries:
            seq = entry_seq(entry_id)
            if seq <= self.cursor:
                continue  # a reply raced with a resubscription; already here
            if seq != self.cursor + 1:
                self.expired = True
                break
            self.cursor = seq
            self.quiet_since = -1.0  # moved: the reader stamps the time
            status = fields.get(b"s")
            if status is not None:
                self.status = status.decode()
                break
            kind = fields.get(b"e")
            events.append(
                Event(fields[b"d"].decode(), "message" if kind is None else kind.decode(), str(seq))
            )
        self.wake()

    def wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait(self) -> None:
        """Until the next :meth:`push`; followers sleep here, no polling."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()


class _Outage:
    """Whether a tail's readers find Redis unreachable, shared by them: one line
    when the first fails and one when one reads again, not one per reader."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None


class _Reader:
    """One connection running ``XREAD BLOCK`` over the feeds it was given."""

    def __init__(
        self,
        client: Redis,
        wake_key: str,
        block_ms: int,
        closing: Callable[[], bool],
        *,
        patience: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
        outage: _Outage | None = None,
    ) -> None:
        self.client = client
        self.wake_key = wake_key
        self._outage = outage or _Outage()
        self._raw_wake_key = wake_key.encode()
        # Come back at least every `patience` seconds to look for vanished streams.
        self.block_ms = min(block_ms, max(1, round(patience * 1000)))
        self.closing = closing
        self.feeds: dict[bytes, Feed] = {}  # by raw key
        self.blocked = False  # an XREAD is on its way or waiting in Redis
        self.woken = False  # a wake entry was sent during this XREAD
        self._has_feeds = asyncio.Event()
        self._wake_id: bytes = b"0-0"
        self._patience = patience
        self._clock = clock
        self._failing_since: float | None = None  # Redis has not answered since then

    def add(self, feed: Feed) -> bool:
        """Take ``feed``; ``True`` if the running ``XREAD`` must be woken for it."""
        feed.reader = self
        self.feeds[feed.raw_key] = feed
        self._has_feeds.set()
        if self.blocked and not self.woken:
            self.woken = True
            return True
        return False

    def stop(self) -> None:
        self._has_feeds.set()  # an idle reader loops once more and sees it is closing

    def drop(self, feed: Feed) -> None:
        # The running XREAD may still return entries for it: they are ignored.
        if self.feeds.get(feed.raw_key) is feed:
            del self.feeds[feed.raw_key]
        feed.reader = None

    async def run(self, sleep: Callable[[float], Awaitable[object]]) -> None:
        errors = connection_errors()
        while not self.closing():
            if not self.feeds:
                self._has_feeds.clear()
                await self._has_feeds.wait()
                continue
            sent = dict(self.feeds)
            # Bytes, not str: redis-py's encoder passes them through untouched.
            streams: dict[Any, Any] = {self._raw_wake_key: self._wake_id}
            for key, feed in sent.items():
                streams[key] = b"0-%d" % feed.cursor
            self.blocked, self.woken = True, False
            try:
                reply = await self.client.xread(streams, count=_COUNT, block=self.block_ms)
            except errors as exc:
                if self.closing():
                    return
                self._failed(exc)
                await sleep(_RETRY_DELAY)
                continue
            finally:
                self.blocked = False
            if self._failing_since is not None:
                self._failing_since = None
                if self._outage.since is not None:
                    self._outage.since = None
                    logger.warning("reading streams from Redis works again")
            self._dispatch(reply, sent)
            await self._look_for_vanished(errors)

    def _failed(self, exc: Exception) -> None:
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
            if self._outage.since is None:
                self._outage.since = now
                logger.warning("reading streams from Redis failed (%s); retrying", exc)
        elif now - self._failing_since >= self._patience:
            for feed in list(self.feeds.values()):
                feed.lose(f"the stream store has been unreachable for {self._patience:g} s")
                self.drop(feed)

    async def _look_for_vanished(self, errors: tuple[type[Exception], ...]) -> None:
        # A stream whose keys are gone (Redis restarted empty, or someone
        # deleted them) never moves again: XREAD on a missing key just waits.
        now = self._clock()
        quiet = []
        for feed in self.feeds.values():
            if feed.quiet_since < 0:
                feed.quiet_since = now
            elif now - feed.quiet_since >= self._patience:
                quiet.append(feed)
        if not quiet:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for feed in quiet:
                    pipe.exists(feed.meta_key)
                found = await pipe.execute()
        except errors as exc:
            self._failed(exc)
            return
        for feed, exists in zip(quiet, found, strict=True):
            if exists:
                feed.quiet_since = now
            elif self.feeds.get(feed.raw_key) is feed:
                feed.lose("the stream vanished from the stream store", vanished=True)
                self.drop(feed)

    def _dispatch(self, reply: Any, sent: dict[bytes, Feed]) -> None:
        for key, entries in reply or ():
            if key == self._raw_wake_key:
                self._wake_id = entries[-1][0]
                continue
            feed = sent.get(key)
            if feed is None or self.feeds.get(key) is not feed:
                continue  # dropped (or replaced) while the XREAD ran
            feed.push(entries)
            if feed.ended:
                self.drop(feed)


class Tail:
    """The feeds of this process and the readers that fill them.

    ``connect`` makes one dedicated connection per reader (at most ``readers``,
    made as needed); ``client`` (the store's pool) sends the wake entries.
    """

    def __init__(
        self,
        *,
        client: Redis,
        connect: Callable[[], Redis],
        start_task: Callable[[Coroutine[Any, Any, None]], object],
        wake_prefix: str,
        readers: int,
        block_ms: int,
        closing: Callable[[], bool],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        patience: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self._client = client
        self._connect = connect
        self._start_task = start_task
        self._wake_prefix = wake_prefix
        self._max_readers = readers
        self._block_ms = block_ms
        self._closing = closing
        self._sleep = sleep
        self._patience = patience
        self._clock = clock
        self._readers: list[_Reader] = []
        self._feeds: dict[str, Feed] = {}
        self._outage = _Outage()

    @property
    def connections(self) -> list[Redis]:
        return [reader.client for reader in self._readers]

    async def acquire(self, key: str, after: int) -> Feed:
        """The feed of stream ``key`` for one more follower; a new one reads after ``after``.

        Release it with :meth:`release`, whatever happens.
        """
        feed = self._feeds.get(key)
        if feed is None or feed.lost is not None:  # a lost one's followers are leaving
            feed = self._feeds[key] = Feed(key, after, self._clock())
            feed.followers = 1
            await self._assign(feed)
        else:
            feed.followers += 1
        return feed

    def release(self, feed: Feed) -> None:
        feed.followers -= 1
        if feed.followers == 0:
            if self._feeds.get(feed.key) is feed:
                del self._feeds[feed.key]
            if feed.reader is not None:
                feed.reader.drop(feed)

    async def _assign(self, feed: Feed) -> None:
        if len(self._readers) < self._max_readers and all(r.feeds for r in self._readers):
            reader = _Reader(
                self._connect(),
                f"{self._wake_prefix}{len(self._readers)}",
                self._block_ms,
                self._closing,
                patience=self._patience,
                clock=self._clock,
                outage=self._outage,
            )
            self._readers.append(reader)
            self._start_task(reader.run(self._sleep))
        else:
            reader = min(self._readers, key=lambda r: len(r.feeds))
        if reader.add(feed):
            await wake(self._client, reader.wake_key)

    async def stop(self) -> None:
        """End every reader's loop (``closing`` must say so already): a waiting
        ``XREAD`` is woken rather than cancelled, since redis-py 8.1 can swallow
        the cancellation of a blocking read and read again."""
        for reader in self._readers:
            reader.stop()
            if reader.blocked:
                await wake(self._client, reader.wake_key)
