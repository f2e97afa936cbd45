"""Readers of one answer in one process share one follower of the log (service/_fanout.py).

Run against both stores (the ``make_store`` fixture of tests/streams). The
responses are EventStreamResponses over the fake ASGI server of tests/http (no
sockets): what is checked is who follows the log, and that every reader still
gets every event once, in order.
"""

from __future__ import annotations

import asyncio

import pytest

from askstream import EventStreamResponse
from askstream.service._fanout import Fanout
from askstream.streams import Store, StreamNotFound

from ..http.peers import Peer, wait_until
from ..streams.conftest import MakeStore

pytestmark = pytest.mark.anyio


async def answer(store: Store, pieces: int = 2) -> None:
    await store.create("m")
    for n in range(pieces):
        await store.append("m", f"piece {n}")


def read(peer: Peer) -> list[tuple[str | None, str]]:
    return [(event.id, event.data) for event in peer.events]


async def test_readers_of_one_answer_share_one_hub_and_get_identical_events(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    peers = [Peer() for _ in range(5)]
    tasks = [peer.run(EventStreamResponse(fanout.follow("m"), ping=None)) for peer in peers]
    await wait_until(lambda: all(len(peer.events) == 2 for peer in peers), within=5)
    # A reader that caught up while it was still alone waits on the log by
    # itself; the next event brings it to the hub the others made.
    await store.append("m", "piece 2")
    await wait_until(lambda: fanout.joined("m") == 5, within=5)
    for n in range(3, 6):
        await store.append("m", f"piece {n}")
    await store.append("m", "{}", event="done")
    await store.finish("m")
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    stored = [(event.id, event.data) for event in await store.read("m")]
    assert len(stored) == 7
    for peer in peers:
        assert read(peer) == stored
        assert peer.complete
    await fanout.aclose()


async def test_a_lone_reader_follows_the_log_without_a_hub(make_store: MakeStore) -> None:
    # A hub would cost the one reader a task wake-up more per event.
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    peer = Peer()
    task = peer.run(EventStreamResponse(fanout.follow("m"), ping=None))
    for n in range(2, 5):
        await store.append("m", f"piece {n}")
        await wait_until(lambda n=n: len(peer.events) == n + 1, within=5)  # type: ignore[misc]
        assert fanout._hubs == {}
        assert fanout.readers({"m"}) == 1
    await store.finish("m")
    await asyncio.wait_for(task, timeout=5)
    assert [data for _, data in read(peer)] == [f"piece {n}" for n in range(5)]
    assert peer.complete


async def test_a_late_reader_replays_what_it_missed_then_joins(make_store: MakeStore) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store, pieces=4)
    early = Peer()
    early_task = early.run(EventStreamResponse(fanout.follow("m"), ping=None))
    await wait_until(lambda: len(early.events) == 4, within=5)
    await store.append("m", "piece 4")
    late = Peer()
    late_task = late.run(EventStreamResponse(fanout.follow("m", after="2"), ping=None))
    # The second reader makes the hub once it has caught up; the first, alone
    # until then, joins it with the next event.
    await wait_until(lambda: fanout.joined("m") >= 1, within=5)
    await store.append("m", "piece 5")
    await wait_until(lambda: fanout.joined("m") == 2, within=5)
    await store.append("m", "piece 6")
    await store.finish("m")
    await asyncio.wait_for(asyncio.gather(early_task, late_task), timeout=5)
    stored = [(event.id, event.data) for event in await store.read("m")]
    assert read(early) == stored
    assert read(late) == stored[2:]
    await fanout.aclose()


async def test_the_hub_stops_following_once_every_reader_has_left(make_store: MakeStore) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    peers = [Peer() for _ in range(3)]
    tasks = [peer.run(EventStreamResponse(fanout.follow("m"), ping=None)) for peer in peers]
    await wait_until(lambda: all(len(peer.events) == 2 for peer in peers), within=5)
    await store.append("m", "piece 2")  # brings a reader that was alone to the hub
    await wait_until(lambda: fanout.joined("m") == 3, within=5)
    hub = fanout._hubs["m"]
    peers[0].leave()
    await asyncio.wait_for(tasks[0], timeout=2)
    await store.append("m", "still going")  # generation does not care who left
    await wait_until(lambda: all(len(peer.events) == 4 for peer in peers[1:]))
    for peer in peers[1:]:
        peer.leave()
    await asyncio.wait_for(asyncio.gather(*tasks[1:]), timeout=2)
    await asyncio.wait_for(asyncio.wait([hub.task]), timeout=2)
    assert fanout._hubs == {}
    await store.finish("m")


async def test_a_finished_answer_is_replayed_without_a_hub(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await make_store()
    fanout = Fanout(store)
    started: list[str] = []
    start = fanout._start
    monkeypatch.setattr(fanout, "_start", lambda *args: started.append(args[0]) or start(*args))
    await answer(store, pieces=3)
    await store.finish("m")
    peer = Peer()
    await asyncio.wait_for(peer.run(EventStreamResponse(fanout.follow("m"), ping=None)), 5)
    assert [data for _, data in read(peer)] == ["piece 0", "piece 1", "piece 2"]
    assert peer.complete
    assert started == []


# -- the doors' readers (/v1/, /api/chat): decoded events, one tap per answer ------------


def count_follows(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The ``after`` of every ``store.follow`` call from now on."""
    follows: list[str | None] = []
    follow = store.follow

    def counted(stream_id: str, after: str | None = None) -> object:
        follows.append(after)
        return follow(stream_id, after)

    monkeypatch.setattr(store, "follow", counted)
    return follows


async def read_all(fanout: Fanout, got: list[str], stream_id: str = "m") -> None:
    async for event in fanout.events(stream_id):
        got.append(event.data)  # noqa: PERF401 (the tests watch it grow)


async def test_door_readers_share_one_follower_are_counted_and_get_every_event(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    follows = count_follows(store, monkeypatch)
    got: list[list[str]] = [[] for _ in range(4)]
    tasks = [asyncio.create_task(read_all(fanout, mine)) for mine in got[:3]]
    await wait_until(lambda: all(len(mine) == 2 for mine in got[:3]), within=5)
    # What the graceful stop waits on counts them, as it counts follow()'s readers.
    assert fanout.readers({"m"}) == 3
    await store.append("m", "piece 2")
    # A late reader gets the answer from its start, from the same follower.
    tasks.append(asyncio.create_task(read_all(fanout, got[3])))
    await wait_until(lambda: len(got[3]) == 3, within=5)
    assert fanout.readers() == 4
    await store.append("m", "{}", event="done")
    await store.finish("m")
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    stored = [event.data for event in await store.read("m")]
    assert got == [stored] * 4
    assert follows == [None]  # one follower of the log for the four
    assert fanout.readers() == 0
    await fanout.aclose()


async def test_a_door_readers_store_error_is_each_readers_and_nothing_is_left_counted(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    fanout = Fanout(store)
    results = await asyncio.gather(
        read_all(fanout, [], "never-made"),
        read_all(fanout, [], "never-made"),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [StreamNotFound, StreamNotFound]
    assert fanout.readers() == 0
    # And the next reader follows the log afresh.
    await answer(store, pieces=1)
    await store.finish("m")
    got: list[str] = []
    await asyncio.wait_for(read_all(fanout, got), timeout=5)
    assert got == ["piece 0"]
    await fanout.aclose()


async def test_the_tap_stops_following_once_every_door_reader_has_left(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    got: list[list[str]] = [[], []]
    tasks = [asyncio.create_task(read_all(fanout, mine)) for mine in got]
    await wait_until(lambda: all(len(mine) == 2 for mine in got), within=5)
    tap = fanout._taps["m"]
    tasks[0].cancel()  # its client went away
    await asyncio.wait([tasks[0]])
    assert fanout.readers({"m"}) == 1
    await store.append("m", "still going")
    await wait_until(lambda: len(got[1]) == 3, within=5)
    tasks[1].cancel()
    await asyncio.wait([tasks[1]])
    assert tap.task is not None
    await asyncio.wait_for(asyncio.wait([tap.task]), timeout=2)
    assert tap.task.cancelled()
    assert fanout._taps == {}
    assert fanout.readers() == 0
    await store.finish("m")


async def test_a_door_reader_beside_a_lone_follower_makes_it_no_hub(make_store: MakeStore) -> None:
    # The door's reader never joins a hub, so the follow() reader is still alone.
    store = await make_store()
    fanout = Fanout(store)
    await answer(store)
    door: list[str] = []
    door_task = asyncio.create_task(read_all(fanout, door))
    peer = Peer()
    task = peer.run(EventStreamResponse(fanout.follow("m"), ping=None))
    for n in range(2, 5):
        await store.append("m", f"piece {n}")
        await wait_until(lambda n=n: len(peer.events) == len(door) == n + 1, within=5)  # type: ignore[misc]
        assert fanout._hubs == {}
        assert fanout.readers({"m"}) == 2  # both, for the graceful stop
    await store.finish("m")
    await asyncio.wait_for(asyncio.gather(task, door_task), timeout=5)
    assert door == [data for _, data in read(peer)] == [f"piece {n}" for n in range(5)]
    await fanout.aclose()
