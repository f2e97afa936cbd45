"""MemoryStore against the Store contract: ids, replay, live follow, finish, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from askstream import AskstreamError
from askstream.sse import Event
from askstream.streams import InvalidEventId, MemoryStore, Store, StoreError, StreamNotFound

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


async def filled(*data: str, finish: bool = True) -> MemoryStore:
    store = MemoryStore()
    await store.create("s")
    for item in data:
        await store.append("s", item)
    if finish:
        await store.finish("s")
    return store


def test_memory_store_is_a_store() -> None:
    store: Store = MemoryStore()  # mypy checks the Protocol; this keeps it honest at run time
    assert callable(store.follow)


async def test_append_assigns_increasing_ids_from_one() -> None:
    store = MemoryStore()
    await store.create("s")
    first = await store.append("s", "a")
    second = await store.append("s", "b", event="done")
    assert first == Event("a", "message", "1")
    assert second == Event("b", "done", "2")


async def test_ids_are_per_stream() -> None:
    store = MemoryStore()
    await store.create("s")
    await store.create("t")
    await store.append("s", "a")
    assert (await store.append("t", "b")).id == "1"


@pytest.mark.parametrize(
    ("after", "expected"),
    [(None, ["a", "b", "c"]), ("1", ["b", "c"]), ("2", ["c"]), ("3", [])],
    ids=["from-start", "after-1", "after-2", "after-last"],
)
async def test_read_returns_events_after_an_id(after: str | None, expected: list[str]) -> None:
    store = await filled("a", "b", "c")
    assert [event.data for event in await store.read("s", after)] == expected


@pytest.mark.parametrize("after", ["4", "0x1", "-1", "", "abc", "1.0", "٣"], ids=repr)
async def test_an_id_the_stream_never_gave_out_is_invalid(after: str) -> None:
    store = await filled("a", "b", "c")
    with pytest.raises(InvalidEventId) as caught:
        await store.read("s", after)
    assert caught.value.event_id == after
    with pytest.raises(ValueError, match="no event id"):
        await collect(store.follow("s", after))


async def test_unknown_streams_raise_stream_not_found() -> None:
    store = MemoryStore()
    assert await store.status("nope") is None
    for call in (
        store.append("nope", "x"),
        store.read("nope"),
        store.finish("nope"),
        collect(store.follow("nope")),
    ):
        with pytest.raises(StreamNotFound) as caught:
            await call
        assert isinstance(caught.value, StoreError | AskstreamError)
        assert caught.value.stream_id == "nope"


async def test_creating_a_taken_id_is_a_value_error() -> None:
    store = await filled("a", finish=False)
    with pytest.raises(ValueError, match="already exists"):
        await store.create("s")


async def test_status_goes_from_open_to_how_it_finished() -> None:
    store = await filled("a", finish=False)
    assert await store.status("s") == "open"
    await store.finish("s", "failed")
    assert await store.status("s") == "failed"
    await store.finish("s", "complete")  # a late second finish changes nothing
    assert await store.status("s") == "failed"


async def test_appending_to_a_finished_stream_is_a_usage_error() -> None:
    store = await filled("a")
    with pytest.raises(RuntimeError, match="finished"):
        await store.append("s", "b")


async def test_follow_replays_then_goes_live_until_finished() -> None:
    store = await filled("a", finish=False)
    seen: list[str] = []

    async def follower() -> None:
        seen.extend([event.data async for event in store.follow("s")])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(follower())
        await asyncio.sleep(0.01)
        assert seen == []  # still waiting: the replayed "a" is collected at the end
        await store.append("s", "b")
        await store.append("s", "c")
        await asyncio.sleep(0.01)
        await store.finish("s")
    assert seen == ["a", "b", "c"]


async def test_every_follower_gets_the_same_event_objects() -> None:
    store = await filled(finish=False)
    results: list[list[Event]] = []

    async def follower(after: str | None) -> None:
        results.append(await collect(store.follow("s", after)))

    async with asyncio.TaskGroup() as tg:
        for _ in range(3):
            tg.create_task(follower(None))
        await asyncio.sleep(0)
        appended = [await store.append("s", str(n)) for n in range(5)]
        await store.finish("s")
    assert len(results) == 3
    for events in results:
        assert len(events) == 5
        assert all(got is sent for got, sent in zip(events, appended, strict=True))


async def test_a_cancelled_follower_leaves_the_others_running() -> None:
    store = await filled(finish=False)
    survivor: list[str] = []

    async def follow_into(sink: list[str]) -> None:
        sink.extend([event.data async for event in store.follow("s")])

    async with asyncio.TaskGroup() as tg:
        doomed = tg.create_task(follow_into([]))
        tg.create_task(follow_into(survivor))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
        await store.append("s", "x")
        await store.finish("s")
    assert doomed.cancelled()
    assert survivor == ["x"]


async def test_follow_of_a_finished_stream_replays_and_ends() -> None:
    store = await filled("a", "b")
    assert [event.data for event in await collect(store.follow("s", "1"))] == ["b"]


async def test_a_waiting_follower_sleeps_instead_of_polling() -> None:
    store = await filled(finish=False)
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
