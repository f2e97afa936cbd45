"""RedisStore beyond the shared contract: several stores as several instances, the
length cap, retention and tombstones, leases and reaping, cancel by pub/sub and
by renewal, and followers that share a few connections and never poll."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from askstream.sse import Event
from askstream.streams import (
    InvalidEventId,
    RedisStore,
    Store,
    StoreUnavailable,
    StreamExpired,
    StreamNotFound,
)

from .conftest import REDIS_URL

pytestmark = pytest.mark.anyio

Stores = Callable[..., Awaitable[RedisStore]]
LOST = json.dumps({"code": 503, "message": "the producer is gone"})


async def eventually(check: Callable[[], Awaitable[object]], expected: object) -> None:
    """Until ``await check()`` gives ``expected`` (Redis expires keys on its own clock)."""
    async with asyncio.timeout(5):
        for _ in itertools.count():
            if await check() == expected:
                return
            await asyncio.sleep(0.05)


async def raw() -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)


def test_redis_store_is_a_store() -> None:
    store: Store = RedisStore(REDIS_URL)  # mypy checks the Protocol; nothing connects yet
    assert callable(store.follow)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_ttl": 5.0, "lease_renew": 3.0}, "at most half"),
        ({"lease_renew": 0.0}, "above 0"),
        ({"max_events": 0}, "max_events"),
    ],
    ids=["renew-too-slow", "renew-zero", "no-events"],
)
def test_bad_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStore(REDIS_URL, **options)  # type: ignore[arg-type]


async def test_a_store_must_be_entered_before_it_produces_or_follows() -> None:
    store = RedisStore(REDIS_URL)
    with pytest.raises(RuntimeError, match="async with"):
        await store.create("s")
    await store.aclose()


async def test_event_ids_are_the_redis_entry_numbers(redis_stores: Stores) -> None:
    store = await redis_stores()
    await store.create("s")
    for data in ("a", "b"):
        await store.append("s", data)
    await store.append("s", "end", event="done")
    await store.finish("s")
    client = await raw()
    entries = await client.xrange(f"{store.prefix}s:s:log")
    await client.aclose()
    # One entry per event, numbered as the ids handed out, then the final status.
    assert entries == [
        ("0-1", {"d": "a"}),
        ("0-2", {"d": "b"}),
        ("0-3", {"d": "end", "e": "done"}),
        ("0-4", {"s": "complete"}),
    ]
    with pytest.raises(InvalidEventId):
        await store.read("s", "4")  # the final-status entry is not an event


async def test_two_instances_see_one_stream(redis_stores: Stores) -> None:
    a, b = await redis_stores(), await redis_stores()
    await a.create("s")
    await a.append("s", "one")
    seen: list[Event] = []

    async def follow_on_b() -> None:
        seen.extend([event async for event in b.follow("s")])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(follow_on_b())
        await a.append("s", "two")
        await a.append("s", "end", event="done")
        await a.finish("s")
    assert seen == [Event("one", id="1"), Event("two", id="2"), Event("end", "done", "3")]
    assert await b.status("s") == "complete"
    with pytest.raises(ValueError, match="already exists"):
        await b.create("s")


async def test_the_length_cap_drops_the_oldest_events_and_old_ids_read_as_expired(
    redis_stores: Stores,
) -> None:
    store = await redis_stores(max_events=10)
    await store.create("s")
    for n in range(1, 501):
        await store.append("s", str(n))
    # XADD MAXLEN ~ trims whole nodes of entries: well under 500 are kept.
    with pytest.raises(StreamExpired):
        await store.read("s")
    with pytest.raises(StreamExpired):
        await store.read("s", "1")
    assert [e.data for e in await store.read("s", "495")] == ["496", "497", "498", "499", "500"]
    await store.finish("s")


async def test_after_retention_a_stream_reads_as_expired_then_as_unknown(
    redis_stores: Stores,
) -> None:
    store = await redis_stores(retention=0.2, tombstone=1.0)
    await store.create("s")
    await store.append("s", "a")
    await store.finish("s")
    assert [e.data for e in await store.read("s")] == ["a"]
    await eventually(lambda: store.status("s"), None)
    for call in (store.read("s"), store.cancel("s"), store.append("s", "b")):
        with pytest.raises(StreamExpired):
            await call
    with pytest.raises(StreamExpired):
        [e async for e in store.follow("s")]
    with pytest.raises(ValueError, match="already exists"):
        await store.create("s")
    with pytest.raises(StreamNotFound):
        await store.read("never")

    async def forgotten() -> bool:
        try:
            await store.read("s")
        except StreamNotFound:
            return True
        except StreamExpired:
            return False
        raise AssertionError("the stream is back")

    await eventually(forgotten, True)


async def test_a_live_producer_keeps_its_lease(redis_stores: Stores) -> None:
    producer = await redis_stores(lease_ttl=0.3, lease_renew=0.1)
    other = await redis_stores()
    await producer.create("s")
    await asyncio.sleep(1.0)  # more than three times the lease's time to live
    assert await other.take_over() == []
    assert await other.status("s") == "open"
    await producer.finish("s")


async def test_a_dead_producers_stream_is_taken_over_by_exactly_one_instance(
    redis_stores: Stores,
) -> None:
    producer = await redis_stores(lease_ttl=0.3, lease_renew=0.1)
    b = await redis_stores(lease_ttl=0.3, lease_renew=0.1)
    c = await redis_stores()
    await producer.create("s")
    await producer.append("s", "before")
    followed: list[Event] = []

    async def follow_on_b() -> None:
        followed.extend([event async for event in b.follow("s")])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(follow_on_b())
        await producer.aclose()  # its process died: nobody renews the lease
        taken: list[list[str]] = [[], []]
        async with asyncio.timeout(5):
            while taken == [[], []]:
                # Two instances look at once: the stream goes to exactly one.
                taken = list(await asyncio.gather(b.take_over(), c.take_over()))
                await asyncio.sleep(0.05)
        assert sorted(taken) == [[], ["s"]]
        owner = b if taken[0] else c
        # The new owner holds the lease now: it is renewed, nobody else takes it.
        await asyncio.sleep(0.6)
        assert await b.take_over() == await c.take_over() == []
        assert await c.status("s") == "open"
        await owner.append("s", LOST, event="error")
        await owner.finish("s", "failed")
    assert followed == [Event("before", id="1"), Event(LOST, "error", "2")]
    assert await c.status("s") == "failed"


async def test_a_take_over_whose_taker_dies_too_is_taken_over_again(
    redis_stores: Stores,
) -> None:
    producer = await redis_stores(lease_ttl=0.3, lease_renew=0.1)
    taker = await redis_stores(lease_ttl=0.3, lease_renew=0.1)
    last = await redis_stores()
    await producer.create("s")
    await producer.aclose()
    async with asyncio.timeout(5):
        while not await taker.take_over():  # noqa: ASYNC110  # Redis's clock, not ours
            await asyncio.sleep(0.05)
        await taker.aclose()  # dies before ending it
        while not await last.take_over():  # noqa: ASYNC110  # idem
            await asyncio.sleep(0.05)
    await last.finish("s", "failed")


async def test_a_cancel_reaches_the_producing_instance_at_once(redis_stores: Stores) -> None:
    producer, other = await redis_stores(), await redis_stores()
    asked = asyncio.Event()
    await producer.create("s", on_cancel=asked.set)
    assert await other.cancel("s") == "open"
    async with asyncio.timeout(1):  # pub/sub: well before the 2 s renewal
        await asked.wait()
    await producer.finish("s", "cancelled")
    assert await other.cancel("s") == "cancelled"


async def test_a_cancel_whose_message_was_missed_arrives_with_the_lease_renewal(
    redis_stores: Stores,
) -> None:
    producer = await redis_stores(lease_ttl=1.0, lease_renew=0.2)
    asked = asyncio.Event()
    await producer.create("s", on_cancel=asked.set)
    # As if the pub/sub message were lost: the request is only in the stream's hash.
    client = await raw()
    await client.hset(f"{producer.prefix}s:s", "c", "1")
    await client.aclose()
    async with asyncio.timeout(5):
        await asked.wait()
    await producer.finish("s", "cancelled")


async def test_followers_share_a_bounded_number_of_connections(redis_stores: Stores) -> None:
    store = await redis_stores(readers=2, max_connections=8)
    client = await raw()
    before = len(await client.client_list())
    streams = [f"s{n}" for n in range(20)]
    for stream in streams:
        await store.create(stream)
    results: dict[str, list[list[str]]] = {stream: [] for stream in streams}

    async def follower(stream: str) -> None:
        results[stream].append([e.data async for e in store.follow(stream)])

    async with asyncio.TaskGroup() as tg:
        for stream in streams:
            for _ in range(10):
                tg.create_task(follower(stream))
        await asyncio.sleep(0.2)
        during = len(await client.client_list())
        for stream in streams:
            await store.append(stream, stream)
            await store.finish(stream)
    await client.aclose()
    # 200 followers: 2 blocking-reader connections, plus the command pool's 8 at most.
    assert during - before <= 2 + 8
    assert all(got == [[stream]] * 10 for stream, got in results.items())


async def test_a_waiting_follower_does_not_poll_redis(redis_stores: Stores) -> None:
    store = await redis_stores(block=30.0)
    client = await raw()
    await store.create("s")

    async def xread_calls() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_xread", {}).get("calls", 0))

    async def follow() -> list[str]:
        return [e.data async for e in store.follow("s")]

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(follow())
        await asyncio.sleep(0.2)  # subscribed and blocked
        calls = await xread_calls()
        await asyncio.sleep(1.0)
        # One XREAD BLOCK is waiting in Redis; nothing was asked meanwhile.
        # (The counts are the whole server's: other clients of this Redis, such
        # as servers other tests left idling, may add a few each; a follower
        # that polled would add hundreds.)
        assert await xread_calls() - calls <= 20
        await store.append("s", "x")
        await store.finish("s")
    await client.aclose()
    assert task.result() == ["x"]


async def test_an_idle_store_outwaits_redis_pys_socket_timeout_quietly(
    redis_stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    # redis-py times a read out after 5 s by default; a blocking XREAD waits
    # `block` (10 s) for news. Idle for longer than 5 s, nothing may fail.
    store = await redis_stores()
    await store.create("m1")
    follower = store.follow("m1")
    await asyncio.sleep(5.5)
    event = await store.append("m1", "late")
    assert await anext(follower) == event
    assert [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"] == []


async def test_a_follower_of_a_stream_that_vanished_gives_up_after_the_lease_ttl(
    redis_stores: Stores,
) -> None:
    # Redis restarted empty looks like this: the stream's keys are gone, and a
    # blocking XREAD on a missing key would wait for ever.
    producer = await redis_stores()
    reader = await redis_stores(lease_ttl=0.4, lease_renew=0.2)
    await producer.create("s")
    await producer.append("s", "a")
    got: list[str] = []

    async def follow() -> None:
        async for event in reader.follow("s"):
            got.append(event.data)
            client = await raw()
            await client.delete(*(key for key in reader._keys("s")))
            await client.aclose()

    with pytest.raises(StoreUnavailable) as lost:
        async with asyncio.timeout(5):
            await follow()
    assert lost.value.vanished
    assert got == ["a"]
