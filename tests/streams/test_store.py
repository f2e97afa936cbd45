"""The Store contract, run against both stores (memory and Redis): ids, replay,
live follow, finish, cancel, several followers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from askstream import AskstreamError
from askstream.sse import Event
from askstream.streams import InvalidEventId, Store, StoreError, StreamNotFound

pytestmark = pytest.mark.anyio


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


async def fill(store: Store, *data: str, finish: bool = True) -> Store:
    await store.create("s")
    for item in data:
        await store.append("s", item)
    if finish:
        await store.finish("s")
    return store


async def cancels_passed_on(store: Store) -> None:
    """Until every cancel asked so far has reached its producer (or nobody).

    Both stores pass cancels on in the order they were asked (Redis through one
    stream of cancels), so a probe cancelled now arriving says the earlier ones
    have: a negative check that waits for an event, not for 50 ms of silence.
    """
    arrived = asyncio.Event()
    probe = f"probe-{random.random()}"
    await store.create(probe, on_cancel=arrived.set)
    assert await store.cancel(probe) == "open"
    async with asyncio.timeout(5):
        await arrived.wait()
    await store.finish(probe, "cancelled")


async def test_append_assigns_increasing_ids_from_one(store: Store) -> None:
    await store.create("s")
    first = await store.append("s", "a")
    second = await store.append("s", "b", event="done")
    assert first == Event("a", "message", "1")
    assert second == Event("b", "done", "2")


async def test_ids_are_per_stream(store: Store) -> None:
    await store.create("s")
    await store.create("t")
    await store.append("s", "a")
    assert (await store.append("t", "b")).id == "1"


@pytest.mark.parametrize(
    ("after", "expected"),
    [(None, ["a", "b", "c"]), ("1", ["b", "c"]), ("2", ["c"]), ("3", [])],
    ids=["from-start", "after-1", "after-2", "after-last"],
)
async def test_read_returns_events_after_an_id(
    store: Store, after: str | None, expected: list[str]
) -> None:
    await fill(store, "a", "b", "c")
    assert [event.data for event in await store.read("s", after)] == expected


async def test_data_and_event_types_come_back_as_written(store: Store) -> None:
    samples = ["", " lead", "trail ", "多字节 🙂", "a\nb", '{"json": [1, 2]}', "x" * 70_000]
    await store.create("s")
    written = [await store.append("s", data, event=f"t{n}") for n, data in enumerate(samples)]
    await store.finish("s")
    assert await store.read("s") == written
    assert await collect(store.follow("s")) == written


@pytest.mark.parametrize("after", ["4", "0x1", "-1", "", "abc", "1.0", "٣"], ids=repr)
async def test_an_id_the_stream_never_gave_out_is_invalid(store: Store, after: str) -> None:
    await fill(store, "a", "b", "c")
    with pytest.raises(InvalidEventId) as caught:
        await store.read("s", after)
    assert caught.value.event_id == after
    with pytest.raises(ValueError, match="no event id"):
        await collect(store.follow("s", after))


async def test_unknown_streams_raise_stream_not_found(store: Store) -> None:
    assert await store.status("nope") is None
    for call in (
        store.append("nope", "x"),
        store.read("nope"),
        store.finish("nope"),
        store.cancel("nope"),
        collect(store.follow("nope")),
    ):
        with pytest.raises(StreamNotFound) as caught:
            await call
        assert isinstance(caught.value, StoreError | AskstreamError)
        assert caught.value.stream_id == "nope"


async def test_creating_a_taken_id_is_a_value_error(store: Store) -> None:
    await fill(store, "a", finish=False)
    with pytest.raises(ValueError, match="already exists"):
        await store.create("s")


async def test_status_goes_from_open_to_how_it_finished(store: Store) -> None:
    await fill(store, "a", finish=False)
    assert await store.status("s") == "open"
    await store.finish("s", "failed")
    assert await store.status("s") == "failed"
    await store.finish("s", "complete")  # a late second finish changes nothing
    assert await store.status("s") == "failed"


async def test_appending_to_a_finished_stream_is_a_usage_error(store: Store) -> None:
    await fill(store, "a")
    with pytest.raises(RuntimeError, match="finished"):
        await store.append("s", "b")


async def test_follow_replays_then_goes_live_until_finished(store: Store) -> None:
    await fill(store, "a", finish=False)
    seen: list[str] = []
    first = asyncio.Event()

    async def follower() -> None:
        async for event in store.follow("s"):
            seen.append(event.data)
            first.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(follower())
        async with asyncio.timeout(5):
            await first.wait()
        assert seen == ["a"]
        await store.append("s", "b")
        await store.append("s", "c")
        await store.finish("s")
    assert seen == ["a", "b", "c"]


async def test_every_follower_gets_the_same_event_objects(store: Store) -> None:
    await fill(store, "first", finish=False)
    results: list[list[Event]] = []
    seen_first = asyncio.Semaphore(0)

    async def follower() -> None:
        events = []
        async for event in store.follow("s"):
            events.append(event)
            if event.data == "first":
                seen_first.release()
        results.append(events)

    async with asyncio.TaskGroup() as tg:
        for _ in range(3):
            tg.create_task(follower())
        async with asyncio.timeout(5):
            for _ in range(3):
                await seen_first.acquire()
        # Every follower replayed "first" and now waits on the live log.
        appended = [await store.append("s", str(n)) for n in range(5)]
        await store.finish("s")
    assert len(results) == 3
    for events in results:
        assert events[1:] == appended
    # What they got live is one object per event, shared: it can be encoded once.
    for events in results[1:]:
        assert all(a is b for a, b in zip(events[1:], results[0][1:], strict=True))


async def test_a_cancelled_follower_leaves_the_others_running(store: Store) -> None:
    await fill(store, finish=False)
    survivor: list[str] = []

    async def follow_into(sink: list[str]) -> None:
        sink.extend([event.data async for event in store.follow("s")])

    async with asyncio.TaskGroup() as tg:
        doomed = tg.create_task(follow_into([]))
        tg.create_task(follow_into(survivor))
        await asyncio.sleep(0.02)
        doomed.cancel()
        await asyncio.sleep(0)
        await store.append("s", "x")
        await store.finish("s")
    assert doomed.cancelled()
    assert survivor == ["x"]


async def test_follow_of_a_finished_stream_replays_and_ends(store: Store) -> None:
    await fill(store, "a", "b")
    assert [event.data for event in await collect(store.follow("s", "1"))] == ["b"]


async def test_followers_joining_while_events_arrive_each_get_every_event_once(
    store: Store,
) -> None:
    """Readers that subscribe at random moments, from random ids, while the
    producer appends: each sees exactly the events after its id, in order."""
    rng = random.Random(5)
    await store.create("s")
    total = 300
    results: dict[int, tuple[int, list[str]]] = {}

    async def reader(number: int, after: int) -> None:
        got = [e.id or "" async for e in store.follow("s", str(after) if after else None)]
        results[number] = (after, got)

    async with asyncio.TaskGroup() as tg:
        for n in range(1, total + 1):
            await store.append("s", f"e{n}")
            if n % 10 == 0:
                for _ in range(3):
                    tg.create_task(reader(len(results) + rng.random(), rng.randint(0, n)))
            if n % 7 == 0:
                await asyncio.sleep(0)
        await store.finish("s")
    assert results
    for after, got in results.values():
        assert got == [str(n) for n in range(after + 1, total + 1)]


async def test_cancel_asks_the_producer_once_and_reports_the_status(store: Store) -> None:
    calls: list[str] = []
    asked = asyncio.Event()

    def on_cancel() -> None:
        calls.append("cancel")
        asked.set()

    await store.create("s", on_cancel=on_cancel)
    assert await store.cancel("s") == "open"
    async with asyncio.timeout(5):
        await asked.wait()
    assert await store.cancel("s") == "open"  # asked again: the producer is told once
    await store.finish("s", "cancelled")
    assert await store.cancel("s") == "cancelled"
    await cancels_passed_on(store)
    assert calls == ["cancel"]


async def test_cancelling_a_finished_stream_tells_nobody(store: Store) -> None:
    calls: list[str] = []
    await store.create("s", on_cancel=lambda: calls.append("cancel"))
    await store.finish("s")
    assert await store.cancel("s") == "complete"
    await cancels_passed_on(store)
    assert calls == []
