"""Broadcast: one publisher writes each item, encoded once, to every stream that joined.

The streams are EventStreamResponses spoken to over the fake ASGI server of
test_response_asgi (no sockets). The source in most tests is the shape the
service uses: it yields a log's events by itself until it has caught up, then
hands its stream to the broadcast, and goes on from ``join.position`` when it
is let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from askstream import Broadcast, Event, EventStreamResponse, Join
from askstream.http._broadcast import attend
from askstream.http._shutdown import SCOPE_KEY, Shutdown
from askstream.testing import FakeClock

from .peers import Closed, MakePeer, Peer, turns, wait_until

pytestmark = pytest.mark.anyio


class Log:
    """A growing list of events with a broadcast of them: what a stream store and
    the service's hub are, in a few lines."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.hub = Broadcast()
        self.ended = False
        self._changed = asyncio.Event()

    def append(self, data: str) -> None:
        event = Event(data, id=str(len(self.events) + 1))
        self.events.append(event)
        self.hub.publish(len(self.events), event)
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self.hub.close()
        self._changed.set()

    async def follow(self, closed: Closed | None = None) -> AsyncIterator[Event | Join]:
        position = 0
        try:
            while True:
                while position < len(self.events):
                    position += 1
                    yield self.events[position - 1]
                if self.ended:
                    return
                if not self.hub.closed:
                    join = self.hub.join(position)
                    yield join
                    position = join.position
                    continue
                self._changed.clear()
                await self._changed.wait()
        finally:
            if closed is not None:
                closed()


def datas(peer: Peer) -> list[str]:
    return [event.data for event in peer.events]


async def test_joined_streams_get_every_event_once_in_order_and_end_cleanly(
    make_peer: MakePeer,
) -> None:
    log = Log()
    log.append("a")
    peers = [make_peer() for _ in range(3)]
    tasks = [peer.run(EventStreamResponse(log.follow(), ping=None)) for peer in peers]
    await wait_until(lambda: len(log.hub) == 3)
    for data in "bcd":
        log.append(data)
    log.end()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    for peer in peers:
        assert datas(peer) == ["a", "b", "c", "d"]
        assert [event.id for event in peer.events] == ["1", "2", "3", "4"]
        assert peer.complete


async def test_each_published_event_is_encoded_once_for_every_stream() -> None:
    log = Log()
    peers = [Peer() for _ in range(3)]
    tasks = [peer.run(EventStreamResponse(log.follow(), ping=None)) for peer in peers]
    await wait_until(lambda: len(log.hub) == 3)
    log.append("shared")
    await wait_until(lambda: all(peer.bodies for peer in peers))  # each stream's own write
    bodies = [peer.bodies[-1] for peer in peers]
    assert bodies[0] == b"id: 1\ndata: shared\n\n"
    assert bodies[1] is bodies[0]  # one bytes object
    assert bodies[2] is bodies[0]
    log.end()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_a_sync_source_joins_too() -> None:
    hub = Broadcast()
    positions: list[int] = []

    def source() -> Iterator[Event | Join]:  # iterated in a worker thread
        yield Event("mine", id="1")
        join = hub.join(1)
        yield join
        positions.append(join.position)
        yield Event("mine again", id="3")

    peer = Peer()
    task = peer.run(EventStreamResponse(source(), ping=None))
    await wait_until(lambda: len(hub) == 1)
    hub.publish(2, Event("published", id="2"))
    hub.close()
    await asyncio.wait_for(task, timeout=5)
    assert datas(peer) == ["mine", "published", "mine again"]
    assert positions == [2]


async def test_a_source_behind_the_broadcast_is_not_taken_and_goes_on_alone() -> None:
    hub = Broadcast(position=5)  # published up to 5 already
    seen: list[int] = []

    async def source() -> AsyncIterator[Event | Join]:
        yield Event("1", id="1")
        join = hub.join(1)
        yield join
        seen.append(join.position)
        yield Event("2", id="2")

    peer = Peer()
    await asyncio.wait_for(peer.run(EventStreamResponse(source(), ping=None)), timeout=5)
    assert seen == [1]  # not joined: the source goes on from where it was
    assert datas(peer) == ["1", "2"]
    assert len(hub) == 0


async def test_a_stream_that_joined_ahead_skips_what_it_already_had() -> None:
    hub = Broadcast()
    positions: list[int] = []

    async def source() -> AsyncIterator[Event | Join]:
        yield Event("one", id="1")
        yield Event("two", id="2")
        join = hub.join(2)
        yield join
        positions.append(join.position)

    peer = Peer()
    task = peer.run(EventStreamResponse(source(), ping=None))
    await wait_until(lambda: len(hub) == 1)
    hub.publish(1, Event("one", id="1"))
    hub.publish(2, Event("two", id="2"))
    hub.publish(3, Event("three", id="3"))
    hub.close()
    await asyncio.wait_for(task, timeout=5)
    assert datas(peer) == ["one", "two", "three"]
    assert positions == [3]


async def test_a_reader_that_falls_behind_is_let_go_and_loses_nothing() -> None:
    log = Log()
    fast, slow = Peer(), Peer()
    tasks = [peer.run(EventStreamResponse(log.follow(), ping=None)) for peer in (fast, slow)]
    await wait_until(lambda: len(log.hub) == 2)
    slow.writable.clear()  # its buffers are full: a write has to wait
    sent: list[str] = []
    while len(log.hub) == 2:  # the slow one holds what it is given, up to a bound
        sent.append(f"{len(sent)} " + "x" * 1000)
        log.append(sent[-1])
        await asyncio.sleep(0)  # the fast one writes meanwhile
        assert len(sent) <= 100, "the slow reader was never let go"
    await wait_until(lambda: datas(fast) == sent)  # the others are never held up
    slow.writable.set()  # its own task finishes the writes, then catches up alone
    await wait_until(lambda: datas(slow) == sent)
    await wait_until(lambda: len(log.hub) == 2)  # and joins again
    log.append("last")
    log.end()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert datas(fast) == datas(slow) == [*sent, "last"]


async def test_a_reader_stuck_in_a_write_it_was_handed_is_dropped_after_send_timeout() -> None:
    log = Log()
    closed = Closed()
    peer = Peer()
    clock = FakeClock()
    response = EventStreamResponse(log.follow(closed), ping=None, send_timeout=30, clock=clock)
    task = peer.run(response)
    await wait_until(lambda: len(log.hub) == 1)
    peer.writable.clear()
    log.append("never taken")
    await asyncio.wait_for(peer.stuck.wait(), timeout=2)
    await clock.advance(30 - 0.01)  # never early
    await turns()
    assert not task.done()
    await clock.advance(30 / 4 + 0.01)  # at most one look (a quarter) late
    await asyncio.wait_for(task, timeout=2)
    assert closed.at is not None
    assert not peer.complete


async def test_the_reader_leaving_while_joined_ends_the_stream_and_closes_the_source(
    make_peer: MakePeer,
) -> None:
    log = Log()
    closed = Closed()
    peer = make_peer()
    task = peer.run(EventStreamResponse(log.follow(closed), ping=None))
    await wait_until(lambda: len(log.hub) == 1)
    peer.leave()
    await asyncio.wait_for(task, timeout=1)
    assert closed.at is not None
    assert len(log.hub) == 0
    log.append("after")  # nobody to write to: no error


async def test_shutdown_while_joined_ends_the_stream_cleanly(make_peer: MakePeer) -> None:
    log = Log()
    closed = Closed()
    shutdown = Shutdown()
    peer = make_peer()
    peer.scope[SCOPE_KEY] = shutdown
    task = peer.run(EventStreamResponse(log.follow(closed), ping=None))
    await wait_until(lambda: len(log.hub) == 1)
    shutdown.set()
    await asyncio.wait_for(task, timeout=1)
    assert peer.complete
    assert closed.at is not None


async def test_a_joined_stream_with_nothing_published_gets_heartbeats(make_peer: MakePeer) -> None:
    log = Log()
    log.append("open")
    peer = make_peer()
    task = peer.run(EventStreamResponse(log.follow(), ping=0.05))
    await wait_until(lambda: peer.body.count(b": ping\n\n") >= 2)
    log.append("more")  # written by the broadcast, or by the stream let go for a heartbeat
    log.append("and more")
    log.end()
    await asyncio.wait_for(task, timeout=2)
    assert datas(peer) == ["open", "more", "and more"]


async def test_a_joined_stream_gets_heartbeats_once_events_stop_and_is_not_dropped() -> None:
    log = Log()
    peer = Peer()
    task = peer.run(EventStreamResponse(log.follow(), ping=0.05, send_timeout=0.1))
    await wait_until(lambda: len(log.hub) == 1)
    log.append("written by the broadcast")
    await wait_until(lambda: peer.body.count(b": ping\n\n") >= 3)  # 0.15 s and more
    assert not task.done()  # a write that is over is not a write that hangs
    log.end()
    await asyncio.wait_for(task, timeout=2)
    assert peer.complete


async def test_events_that_keep_coming_hold_the_heartbeat_off() -> None:
    log = Log()
    peer = Peer()
    clock = FakeClock()
    task = peer.run(EventStreamResponse(log.follow(), ping=15, clock=clock))
    await wait_until(lambda: len(log.hub) == 1)
    for n in range(20):  # an event every 14 s: never 15 s of quiet
        log.append(str(n))
        await wait_until(lambda n=n: len(peer.events) == n + 1)
        await clock.advance(14)
    log.end()
    await asyncio.wait_for(task, timeout=2)
    assert b": ping" not in peer.body
    assert len(peer.events) == 20


async def test_a_write_that_fails_ends_the_stream_as_a_disconnect() -> None:
    class Gone(Peer):
        gone = False

        async def send(self, message: dict[str, Any]) -> None:
            if self.gone:
                raise OSError("the reader is gone")  # what ASGI 2.4 servers raise
            await super().send(message)

    log = Log()
    closed = Closed()
    peer = Gone()
    task = peer.run(EventStreamResponse(log.follow(closed), ping=None))
    await wait_until(lambda: len(log.hub) == 1)
    peer.gone = True
    log.append("lost")
    await asyncio.wait_for(task, timeout=1)
    assert closed.at is not None
    assert b"error" not in peer.body  # nobody to tell


async def test_a_reader_whose_send_breaks_does_not_hold_up_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Peer):
        broken = False

        async def send(self, message: dict[str, Any]) -> None:
            if self.broken:
                raise RuntimeError("a server bug")
            await super().send(message)

    log = Log()
    broken, fine = Broken(), Peer()
    tasks = [peer.run(EventStreamResponse(log.follow(), ping=None)) for peer in (broken, fine)]
    await wait_until(lambda: len(log.hub) == 2)
    broken.broken = True
    log.append("1")  # the publisher is not the one to fail
    log.append("2")
    log.end()
    await asyncio.wait_for(tasks[1], timeout=1)
    assert datas(fine) == ["1", "2"]
    await asyncio.wait_for(asyncio.wait([tasks[0]]), timeout=1)
    assert "a server bug" in caplog.text  # the broken stream's own failure, logged


def test_positions_must_increase() -> None:
    hub = Broadcast()
    hub.publish(1, "a")
    with pytest.raises(ValueError, match="not after 1"):
        hub.publish(1, "b")


async def test_nobody_joins_a_closed_broadcast() -> None:
    hub = Broadcast()
    hub.close()
    assert hub.closed
    join = hub.join(0)
    written: list[bytes] = []

    async def write(frame: bytes) -> None:
        written.append(frame)

    await asyncio.wait_for(attend(join, write), timeout=1)  # returns at once
    assert written == []
    assert len(hub) == 0
    assert join.position == 0
