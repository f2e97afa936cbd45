"""Readers of one answer in one process share one follower of the log (service/_fanout.py).

Run against both stores (the ``make_store`` fixture of tests/streams). The
responses are EventStreamResponses over the fake ASGI server of tests/http (no
sockets): what is checked is who follows the log, and that every reader still
gets every event once, in order.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from askstream import EventStreamResponse
from askstream.service import Settings, create_app
from askstream.service._fanout import Fanout
from askstream.streams import MemoryStore, Store

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
    await wait_until(lambda: fanout.joined("m") == 5, within=5)
    for n in range(2, 6):
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


async def test_a_late_reader_replays_what_it_missed_then_joins(make_store: MakeStore) -> None:
    store = await make_store()
    fanout = Fanout(store)
    await answer(store, pieces=4)
    early = Peer()
    early_task = early.run(EventStreamResponse(fanout.follow("m"), ping=None))
    await wait_until(lambda: fanout.joined("m") == 1, within=5)
    await store.append("m", "piece 4")
    late = Peer()
    late_task = late.run(EventStreamResponse(fanout.follow("m", after="2"), ping=None))
    await wait_until(lambda: fanout.joined("m") == 2, within=5)
    await store.append("m", "piece 5")
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
    await wait_until(lambda: fanout.joined("m") == 3, within=5)
    hub = fanout._hubs["m"]
    peers[0].leave()
    await asyncio.wait_for(tasks[0], timeout=2)
    await store.append("m", "still going")  # generation does not care who left
    await wait_until(lambda: all(len(peer.events) == 3 for peer in peers[1:]))
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


async def test_the_app_makes_full_collections_rarer_while_it_runs_and_puts_them_back(
    tmp_path: Path,
) -> None:
    # Full collections walk every connection's objects: a pause every reader
    # of an answer waits out (service/_app.py). The service spaces them out;
    # the young generations and the process after the app are left as found.
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever ran before
        app = create_app(Settings(data_dir=tmp_path, demo_delay=0.0), store=MemoryStore())
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (700, 10, 100)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
