"""EventStreamResponse spoken to in-process over a fake ASGI server (tests/http/peers.py):
no sockets. Deadlines here are generous behaviour bounds, never benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from askstream import Event, EventStreamResponse
from askstream.http._shutdown import SCOPE_KEY, Shutdown
from askstream.http._stream import ERROR_EVENT
from askstream.testing import FakeClock

from .peers import BodyBlockedPeer, Closed, MakePeer, open_then_wait, stream, turns, wait_until

pytestmark = pytest.mark.anyio


# What goes out -------------------------------------------------------------


async def test_retry_goes_first_then_the_events_then_a_clean_end(make_peer: MakePeer) -> None:
    async def source() -> AsyncIterator[object]:
        yield "token"
        yield Event("x", event="done", id="2")
        yield {"delta": "你好"}

    peer = await stream(EventStreamResponse(source(), retry=2500), make_peer())
    assert peer.messages[0]["status"] == 200
    assert peer.body.startswith(b"retry: 2500\n\n")
    assert peer.events == [
        Event("token"),
        Event("x", event="done", id="2"),
        Event('{"delta":"你好"}', id="2"),
    ]
    assert peer.complete


async def test_sync_sources_lists_and_generators_stream_the_same(make_peer: MakePeer) -> None:
    def generator() -> Iterator[str]:
        yield from ["a", "b", "c"]

    from_list = await stream(EventStreamResponse(["a", "b", "c"]), make_peer())
    from_generator = await stream(EventStreamResponse(generator()), make_peer())
    assert from_list.events == from_generator.events == [Event("a"), Event("b"), Event("c")]
    assert from_list.complete
    assert from_generator.complete


async def test_a_head_request_gets_the_headers_and_never_touches_the_source(
    make_peer: MakePeer,
) -> None:
    async def source() -> AsyncIterator[str]:
        raise AssertionError("HEAD must not open the stream")
        yield "never"

    peer = await stream(EventStreamResponse(source()), make_peer("HEAD"))
    assert peer.body == b""
    assert peer.complete


@pytest.mark.parametrize(("header", "handed"), [("41", "41"), (None, None), ("", None)])
async def test_a_callable_source_is_handed_the_requests_last_event_id(
    make_peer: MakePeer, header: str | None, handed: str | None
) -> None:
    seen: list[str | None] = []

    async def source(last_event_id: str | None) -> AsyncIterator[str]:
        seen.append(last_event_id)
        yield "resumed"

    headers = {"Last-Event-ID": header} if header is not None else {}
    peer = await stream(EventStreamResponse(source), make_peer(headers=headers))
    assert seen == [handed]
    assert peer.events == [Event("resumed")]


@pytest.mark.parametrize("source", ["text", b"bytes", {"a": 1}], ids=["str", "bytes", "dict"])
def test_a_single_value_is_not_taken_for_a_source(source: Any) -> None:
    with pytest.raises(TypeError, match="not an event source"):
        EventStreamResponse(source)


@pytest.mark.parametrize(
    "kwargs",
    [{"ping": 0}, {"send_timeout": -1}, {"retry": -5}, {"retry": 1.5}, {"on_disconnect": "x"}],
    ids=["ping", "send-timeout", "negative-retry", "float-retry", "on-disconnect"],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        EventStreamResponse([], **kwargs)


# Errors ---------------------------------------------------------------------


async def test_a_failing_source_ends_with_an_error_event_and_logs_the_detail(
    make_peer: MakePeer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def source() -> AsyncIterator[str]:
        yield "before"
        raise RuntimeError("password=hunter2")

    with caplog.at_level(logging.ERROR, logger="askstream"):
        peer = await stream(EventStreamResponse(source()), make_peer())
    before, error = peer.events
    assert before == Event("before")
    assert error.event == "error"
    assert json.loads(error.data) == {"code": 500, "message": "The event source failed."}
    assert b"hunter2" not in peer.body
    assert peer.complete
    assert "password=hunter2" in caplog.text


async def test_a_callable_that_returns_no_iterable_is_an_error_event(make_peer: MakePeer) -> None:
    response = EventStreamResponse(lambda last_event_id: 42)  # type: ignore[arg-type,return-value]
    peer = await stream(response, make_peer())
    assert peer.body == ERROR_EVENT
    assert peer.complete


async def test_an_item_of_the_wrong_type_is_an_error_event_and_the_source_is_closed(
    make_peer: MakePeer,
) -> None:
    closed = Closed()

    async def source() -> AsyncIterator[object]:
        try:
            yield "fine"
            yield 3.14
        finally:
            closed()

    peer = await stream(EventStreamResponse(source()), make_peer())
    assert peer.body == b"data: fine\n\n" + ERROR_EVENT
    assert closed.at is not None


# The reader leaving ----------------------------------------------------------


async def test_the_reader_leaving_closes_the_source_at_once(make_peer: MakePeer) -> None:
    closed = Closed()

    peer = make_peer()
    task = peer.run(EventStreamResponse(open_then_wait(closed)))
    await wait_until(lambda: peer.events)
    peer.leave()
    await asyncio.wait_for(task, timeout=1)
    assert closed.at is not None  # its finally ran before the response ended
    assert not peer.complete  # nobody to finish for


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_source_that_never_awaits_is_stopped_when_the_reader_leaves(
    make_peer: MakePeer, kind: str
) -> None:
    closed = Closed()

    async def async_source() -> AsyncIterator[str]:
        try:
            while True:
                yield "spin"
        finally:
            closed()

    def sync_source() -> Iterator[str]:
        try:
            while True:
                yield "spin"
        finally:
            closed()

    peer = make_peer()
    source = async_source() if kind == "async" else sync_source()
    task = peer.run(EventStreamResponse(source))
    await wait_until(lambda: len(peer.bodies) > 3)
    peer.leave()
    await asyncio.wait_for(task, timeout=2)
    assert closed.at is not None


async def test_drain_pulls_the_source_to_its_end_after_the_reader_left(make_peer: MakePeer) -> None:
    pulled: list[int] = []
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        for n in range(5):
            if n == 1:
                await gate.wait()
            pulled.append(n)
            yield f"n{n}"

    peer = make_peer()
    task = peer.run(EventStreamResponse(source(), on_disconnect="drain"))
    await wait_until(lambda: peer.events)
    peer.leave()
    await peer.disconnected.wait()  # the response knows, while the source still waits
    gate.set()
    await asyncio.wait_for(task, timeout=2)
    assert pulled == [0, 1, 2, 3, 4]
    assert peer.events == [Event("n0")]  # nothing is sent after the reader left


# Shutdown -------------------------------------------------------------------


async def test_server_shutdown_ends_open_streams_cleanly(make_peer: MakePeer) -> None:
    closed = Closed()

    shutdown = Shutdown()
    peer = make_peer()
    peer.scope[SCOPE_KEY] = shutdown
    task = peer.run(EventStreamResponse(open_then_wait(closed)))
    await wait_until(lambda: peer.events)
    shutdown.set()
    await asyncio.wait_for(task, timeout=1)
    assert peer.complete
    assert closed.at is not None


async def test_a_stream_opened_during_shutdown_ends_at_once(make_peer: MakePeer) -> None:
    shutdown = Shutdown()
    shutdown.set()
    peer = make_peer()
    peer.scope[SCOPE_KEY] = shutdown
    await stream(EventStreamResponse(itertools.repeat("x")), peer)
    assert peer.body == b""
    assert peer.complete


# Timing: heartbeats and slow readers, on a fake clock ----------------------------
# ping=15 and send_timeout=30 (the defaults): the watchdog looks every 3.75 s.
# The documented bounds: a heartbeat goes out between `ping` and `ping + every`
# after the last write, a write that takes nothing is dropped between
# `send_timeout` and `send_timeout + every` after it began; never early.

PING, SEND_TIMEOUT = 15.0, 30.0
EVERY = PING / 4


async def test_an_idle_stream_gets_a_heartbeat_after_ping_seconds_and_not_before(
    make_peer: MakePeer,
) -> None:
    clock = FakeClock()
    peer = make_peer()
    task = peer.run(EventStreamResponse(open_then_wait(Closed()), ping=PING, clock=clock))
    await wait_until(lambda: peer.events)
    await clock.advance(PING - 0.01)
    await turns()
    assert b": ping" not in peer.body
    await clock.advance(EVERY + 0.01)
    await wait_until(lambda: peer.body.count(b": ping\n\n") == 1)
    await clock.advance(PING - 0.01)  # the heartbeat was a write: quiet starts again
    await turns()
    assert peer.body.count(b": ping\n\n") == 1
    await clock.advance(EVERY + 0.01)
    await wait_until(lambda: peer.body.count(b": ping\n\n") == 2)
    assert peer.events == [Event("open")]  # comments are not events
    peer.leave()
    await asyncio.wait_for(task, timeout=1)


async def test_a_stream_opened_between_two_looks_still_gets_its_heartbeat_no_earlier_than_ping(
    make_peer: MakePeer,
) -> None:
    # Streams of one loop share the watchdog's timer (_ticker.py): the second
    # stream's first look comes sooner than EVERY after it opened, and its
    # heartbeat must still wait `ping` seconds from its own start.
    clock = FakeClock()
    first, second = make_peer(), make_peer()
    first_task = first.run(EventStreamResponse(open_then_wait(Closed()), ping=PING, clock=clock))
    await wait_until(lambda: first.events)
    await clock.advance(3.0)  # 0.75 s before the first look
    second_task = second.run(EventStreamResponse(open_then_wait(Closed()), ping=PING, clock=clock))
    await wait_until(lambda: second.events)
    await clock.advance(PING - 0.01)  # 3.0 + ping - 0.01 after the first opened
    await turns()
    assert b": ping" not in second.body
    await clock.advance(EVERY)  # 3.0 + ping + every - 0.01: both are
    await wait_until(lambda: b": ping" in first.body and b": ping" in second.body)
    assert clock.now() - 3.0 <= PING + EVERY
    for peer, task in ((first, first_task), (second, second_task)):
        peer.leave()
        await asyncio.wait_for(task, timeout=1)
    assert clock.next_due() is None  # the shared timer went with the last stream


async def test_a_stream_with_events_gets_no_heartbeat(make_peer: MakePeer) -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        for n in range(6):
            yield f"event {n}"
            await gate.wait()
            gate.clear()

    peer = make_peer()
    task = peer.run(EventStreamResponse(source(), ping=PING, clock=clock))
    for n in range(1, 6):  # an event every ping - 1 seconds
        await wait_until(lambda n=n: len(peer.events) == n)
        await clock.advance(PING - 1)
        gate.set()
    await wait_until(lambda: len(peer.events) == 6)
    gate.set()
    await asyncio.wait_for(task, timeout=1)
    assert b": ping" not in peer.body
    assert len(peer.events) == 6


async def test_a_reader_that_takes_nothing_is_dropped_after_send_timeout(
    make_peer: MakePeer,
) -> None:
    clock = FakeClock()
    closed = Closed()

    async def source() -> AsyncIterator[str]:
        try:
            for n in itertools.count():
                yield f"event {n}"
                await asyncio.sleep(0)
        finally:
            closed()

    peer = make_peer()
    task = peer.run(EventStreamResponse(source(), send_timeout=SEND_TIMEOUT, clock=clock))
    await wait_until(lambda: peer.events)
    peer.writable.clear()  # the reader's buffers are full from now on
    await asyncio.wait_for(peer.stuck.wait(), timeout=2)
    await clock.advance(SEND_TIMEOUT - 0.01)
    await turns()
    assert not task.done()
    assert closed.at is None  # a slow reader is not dropped early
    await clock.advance(EVERY + 0.01)
    await asyncio.wait_for(task, timeout=2)
    assert closed.at is not None
    assert not peer.complete  # returning unfinished makes the server close the connection


async def test_a_heartbeat_that_takes_nothing_drops_the_reader_too(make_peer: MakePeer) -> None:
    clock = FakeClock()
    closed = Closed()

    peer = make_peer()
    response = EventStreamResponse(
        open_then_wait(closed), ping=PING, send_timeout=SEND_TIMEOUT, clock=clock
    )
    task = peer.run(response)
    await wait_until(lambda: peer.events)
    peer.writable.clear()  # from now on even a heartbeat waits forever
    while not peer.stuck.is_set():  # look by look, until the heartbeat is being written
        assert clock.now() <= PING + EVERY
        await clock.advance(EVERY)
        await turns()
    began = clock.now()
    await clock.advance(SEND_TIMEOUT - 0.01)
    await turns()
    assert not task.done()
    await clock.advance(began + SEND_TIMEOUT + EVERY - clock.now())
    await asyncio.wait_for(task, timeout=2)
    assert closed.at is not None
    assert not peer.complete


async def test_the_last_write_to_a_reader_that_takes_nothing_ends_after_send_timeout(
    make_peer: MakePeer,
) -> None:
    clock = FakeClock()
    shutdown = Shutdown()
    peer = make_peer()
    peer.scope[SCOPE_KEY] = shutdown
    task = peer.run(EventStreamResponse(open_then_wait(Closed()), ping=None, clock=clock))
    await wait_until(lambda: peer.events)
    peer.writable.clear()
    shutdown.set()  # the stream ends: its last write waits on the reader
    await asyncio.wait_for(peer.stuck.wait(), timeout=2)
    await clock.advance(SEND_TIMEOUT - 0.01)
    await turns()
    assert not task.done()
    await clock.advance(0.01)
    await asyncio.wait_for(task, timeout=2)
    assert not peer.complete  # the end never went out; the server closes the connection


# Batching -----------------------------------------------------------------------


async def test_events_the_source_has_ready_go_out_in_one_write(make_peer: MakePeer) -> None:
    async def source() -> AsyncIterator[str]:
        for n in range(1000):
            yield f"t{n}"

    peer = await stream(EventStreamResponse(source()), make_peer())
    assert len(peer.events) == 1000
    # A batch or two, then the end; the first event may go alone when the
    # generator's start looks like a wait (under a tracer such as coverage).
    assert len(peer.bodies) <= 4


async def test_what_was_ready_is_sent_before_the_source_waits(make_peer: MakePeer) -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        await gate.wait()
        yield "c"

    peer = make_peer()
    task = peer.run(EventStreamResponse(source()))
    await wait_until(lambda: len(peer.events) == 2)
    assert peer.bodies[0] == b"data: a\n\ndata: b\n\n"  # one write, before the wait
    gate.set()
    await asyncio.wait_for(task, timeout=1)
    assert [event.data for event in peer.events] == ["a", "b", "c"]


async def test_a_source_timeout_that_fires_while_we_send_still_reaches_the_source() -> None:
    # The source waits under its own asyncio.timeout while the response is
    # stuck writing what came before: the timeout's cancellation lands in our
    # write, and must be handed on to the source, as a plain await would.
    async def source() -> AsyncIterator[str]:
        yield "first"
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()
        except TimeoutError:
            fired.set()
            yield "timed out"
        await asyncio.sleep(0)
        yield "after"

    fired = asyncio.Event()
    peer = BodyBlockedPeer()
    peer.writable.clear()
    task = peer.run(EventStreamResponse(source()))
    # The source's own timeout runs on the loop's real clock (the point here). It
    # fires while "first" is held for the reader, unless a slow tracer (coverage)
    # made "first" look like it came after a wait: then it fires after the write.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(fired.wait(), timeout=1)
    peer.writable.set()
    await asyncio.wait_for(task, timeout=1)
    assert [event.data for event in peer.events] == ["first", "timed out", "after"]
    assert peer.complete


async def test_a_source_timeout_that_fires_while_it_waits_reaches_it(make_peer: MakePeer) -> None:
    async def source() -> AsyncIterator[str]:
        yield "first"
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()
        except TimeoutError:
            yield "timed out"

    peer = await stream(EventStreamResponse(source()), make_peer())
    assert [event.data for event in peer.events] == ["first", "timed out"]
    assert peer.complete


async def test_every_kind_of_await_in_the_source_behaves_as_in_a_task(make_peer: MakePeer) -> None:
    # Futures, tasks and timers are awaited on the hot path, a bare yield to
    # the loop takes the careful one: each must look to the source exactly as
    # awaiting it in a task of its own does, a failed future included.
    loop = asyncio.get_running_loop()

    async def answer() -> str:
        await asyncio.sleep(0)
        return "from a task"

    async def source() -> AsyncIterator[str]:
        yield "start"
        yield await loop.create_task(answer())
        await asyncio.sleep(0)
        yield "after a bare yield"
        failed: asyncio.Future[str] = loop.create_future()
        loop.call_soon(failed.set_exception, KeyError("lost"))
        try:
            await failed
        except KeyError as exc:
            yield f"caught {exc}"
        await asyncio.sleep(0.01)
        yield "after a timer"

    peer = await stream(EventStreamResponse(source()), make_peer())
    assert [event.data for event in peer.events] == [
        "start",
        "from a task",
        "after a bare yield",
        "caught 'lost'",
        "after a timer",
    ]
    assert peer.complete


async def test_an_async_iterator_that_is_not_a_generator_streams_the_same(
    make_peer: MakePeer,
) -> None:
    class Countdown:
        def __init__(self, n: int) -> None:
            self.n = n

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> str:
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            await asyncio.sleep(0.001)
            return str(self.n)

    peer = await stream(EventStreamResponse(Countdown(3)), make_peer())
    assert [event.data for event in peer.events] == ["2", "1", "0"]
    assert peer.complete


async def test_the_source_sees_the_context_variables_of_the_request(make_peer: MakePeer) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-41")

    async def source() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield request_id.get("unset")

    peer = await stream(EventStreamResponse(source()), make_peer())
    assert peer.events == [Event("r-41")]


async def test_cancelling_the_response_closes_the_source_and_is_not_swallowed(
    make_peer: MakePeer,
) -> None:
    closed = Closed()

    peer = make_peer()
    task = peer.run(EventStreamResponse(open_then_wait(closed)))
    await wait_until(lambda: peer.events)
    task.cancel()  # as a middleware's task group, or the server, may do
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1)
    assert closed.at is not None
    assert not peer.complete


async def test_a_cancel_scope_in_the_source_is_left_in_the_task_that_entered_it(
    make_peer: MakePeer, caplog: pytest.LogCaptureFixture
) -> None:
    # anyio refuses to exit a cancel scope in another task than the one that
    # entered it: the source must be closed where it ran.
    closed = Closed()

    async def source() -> AsyncIterator[str]:
        try:
            with anyio.move_on_after(30):
                yield "open"
                await asyncio.Event().wait()
        finally:
            closed()

    peer = make_peer()
    task = peer.run(EventStreamResponse(source()))
    await wait_until(lambda: peer.events)
    peer.leave()
    with caplog.at_level(logging.ERROR, logger="askstream"):
        await asyncio.wait_for(task, timeout=1)
    assert closed.at is not None
    assert "event source failed" not in caplog.text


async def test_a_fast_source_lets_the_rest_of_the_loop_run(make_peer: MakePeer) -> None:
    async def source() -> AsyncIterator[str]:
        for _ in range(300_000):
            yield "token"

    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    tick = asyncio.get_running_loop().create_task(ticker())
    peer = await stream(EventStreamResponse(source()), make_peer())
    tick.cancel()
    body = 300_000 * len(b"data: token\n\n")
    assert len(peer.body) == body
    # The producer gives the loop a turn after every batch, and a batch is at most
    # 64 KiB: counted in turns, not timed, so a loaded machine cannot fail it.
    assert turns >= body // (64 * 1024)
