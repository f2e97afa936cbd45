"""MemoryStore beyond the shared contract (tests/streams/test_store.py): retention
by its clock, tombstones, waiting without polling, a lease that is the process."""

from __future__ import annotations

import asyncio

import pytest

from askstream.streams import MemoryStore, Store, StreamExpired, StreamNotFound

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_is_a_store() -> None:
    store: Store = MemoryStore()  # mypy checks the Protocol; this keeps it honest at run time
    assert callable(store.follow)


async def test_a_waiting_follower_sleeps_instead_of_polling() -> None:
    store = MemoryStore()
    await store.create("s")
    steps = 0
    follower = store.follow("s")

    async def step() -> None:
        nonlocal steps
        async for _ in follower:
            steps += 1

    task = asyncio.create_task(step())
    for _ in range(50):
        await asyncio.sleep(0)
    # Blocked on one asyncio.Event: no append, no wake-up, no work.
    assert steps == 0
    assert not task.done()
    await store.append("s", "x")
    await store.finish("s")
    await task
    assert steps == 1


async def test_finished_streams_expire_after_retention_on_the_next_create() -> None:
    clock = FakeClock()
    store = MemoryStore(retention=60, clock=clock)
    await store.create("old")
    await store.finish("old")
    clock.now += 59
    await store.create("new")
    assert await store.status("old") == "complete"
    clock.now += 1
    await store.create("newer")
    assert await store.status("old") is None
    assert await store.status("new") == "open"  # open streams never expire


async def test_an_expired_stream_is_told_apart_from_an_unknown_one_for_a_while() -> None:
    clock = FakeClock()
    store = MemoryStore(retention=60, tombstone=600, clock=clock)
    await store.create("old")
    await store.append("old", "a")
    await store.finish("old")
    clock.now += 60
    await store.create("new")  # expires "old"
    for call in (store.read("old"), store.cancel("old"), store.append("old", "b")):
        with pytest.raises(StreamExpired) as caught:
            await call
        assert caught.value.stream_id == "old"
    with pytest.raises(ValueError, match="already exists"):
        await store.create("old")  # an id is never reused, even once expired
    clock.now += 600
    await store.create("newest")  # forgets the tombstone
    with pytest.raises(StreamNotFound):
        await store.read("old")


async def test_a_follower_outlives_its_streams_expiry() -> None:
    clock = FakeClock()
    store = MemoryStore(retention=0, clock=clock)
    await store.create("s")
    await store.append("s", "a")
    follower = store.follow("s")
    assert (await anext(follower)).data == "a"
    await store.append("s", "b")
    await store.finish("s")
    await store.create("t")  # expires "s"
    assert await store.status("s") is None
    assert [event.data async for event in follower] == ["b"]


async def test_the_lease_is_the_process_so_nothing_is_ever_taken_over() -> None:
    store = MemoryStore()
    await store.create("s")
    assert await store.take_over() == []
    assert await store.status("s") == "open"


async def test_a_cancel_calls_the_producer_at_once_in_the_same_process() -> None:
    store = MemoryStore()
    calls: list[str] = []
    await store.create("s", on_cancel=lambda: calls.append("cancel"))
    assert await store.cancel("s") == "open"
    assert calls == ["cancel"]
