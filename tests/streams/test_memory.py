"""MemoryStore beyond the shared contract (tests/streams/test_store.py): retention
by its clock, tombstones, waiting without polling, a lease that is the process."""

from __future__ import annotations

import asyncio

import pytest

from askstream.streams import MemoryStore, Store, StoreFull, StreamExpired, StreamNotFound
from askstream.streams._memory import MIN_MARKER_BYTES, TOMBSTONE, marker_cost

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


# -- the byte cap -------------------------------------------------------------------


async def filled(store: MemoryStore, stream_id: str, events: int, *, finish: bool) -> None:
    await store.create(stream_id)
    for _ in range(events):
        await store.append(stream_id, "x" * 100)
    if finish:
        await store.finish(stream_id)


async def test_the_size_counts_every_event_and_comes_back_down_when_one_goes() -> None:
    clock = FakeClock()
    store = MemoryStore(retention=60, clock=clock)
    await filled(store, "a", 10, finish=True)
    one = store.size // 10
    assert one > 100 + 100  # the data, and the event's own cost
    clock.now += 60
    await store.create("b")  # expires "a": its marker is left, in a budget of its own
    assert store.size == 0
    assert store.marker_bytes == marker_cost("a")
    clock.now += TOMBSTONE
    await store.create("c")  # forgets "a"
    assert store.marker_bytes == 0


async def test_the_markers_of_expired_streams_have_a_budget_of_their_own() -> None:
    clock = FakeClock()
    budget = MIN_MARKER_BYTES  # an eighth of 64 KiB is less: the floor applies
    store = MemoryStore(retention=1, clock=clock, max_bytes=64 * 1024)
    made = []
    while len(made) * marker_cost("m00000") <= budget + marker_cost("m00000"):
        made.append(f"m{len(made):05}")
        await store.create(made[-1])
        await store.finish(made[-1])
        clock.now += 2
    await store.create("last")  # expires the last of them
    assert 0 < store.marker_bytes <= budget
    assert await store.owner(made[0]) is None  # the oldest forgotten: 404 for a late reader
    with pytest.raises(StreamExpired):
        await store.read(made[-1])  # the newest still remembered: 410


async def test_past_the_cap_the_oldest_finished_streams_go_first() -> None:
    store = MemoryStore()
    await filled(store, "probe", 1, finish=True)
    one = store.size  # what one event costs
    store = MemoryStore(max_bytes=25 * one)
    await filled(store, "old", 10, finish=True)
    await filled(store, "live", 5, finish=False)
    await filled(store, "newer", 10, finish=True)
    assert store.size == 25 * one  # full, not over
    await store.append("live", "x" * 100)
    # "old" went, as if expired (410 for a late reader); the others stay.
    with pytest.raises(StreamExpired):
        await store.read("old")
    assert [await store.status(s) for s in ("live", "newer")] == ["open", "complete"]
    assert store.size == 16 * one
    await filled(store, "more", 10, finish=False)  # room again: "newer" goes for it
    assert await store.status("newer") is None
    assert store.size == 16 * one


async def test_a_new_stream_is_refused_only_while_live_ones_fill_the_store() -> None:
    store = MemoryStore()
    await filled(store, "probe", 1, finish=True)
    one = store.size
    store = MemoryStore(max_bytes=10 * one)
    await filled(store, "done", 4, finish=True)
    await filled(store, "live", 10, finish=False)  # live ones may pass the cap, to their end
    with pytest.raises(StoreFull) as caught:
        await store.create("refused")
    assert (caught.value.stream_id, caught.value.max_bytes) == ("refused", 10 * one)
    assert await store.status("done") is None  # dropped first, and still no room
    assert await store.status("refused") is None
    await store.finish("live")
    await store.create("now")  # the finished one makes room
    assert await store.status("live") is None
