"""A source that fails, after any kind of suspension, is reported as itself.

The log holds exactly the source's own exception (one record, one traceback,
nothing of ours chained before it) and the reader gets the ``error`` event
after what the source yielded before. One test per kind of source and the
suspension it made before failing (issue 13: an ``await asyncio.sleep(0)``
then a raise used to log an internal ``AttributeError`` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest

from askstream import Event, EventStreamResponse

from .peers import BodyBlockedPeer, MakePeer, Peer, stream, wait_until

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def _failed_future_caught() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_exception, KeyError("its own"))
    with contextlib.suppress(KeyError):
        await future


async def _own_timeout() -> None:
    try:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
    except TimeoutError:
        pass


async def _a_task() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 1

    await asyncio.get_running_loop().create_task(work())


async def _a_future() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, None)
    await future


async def _nothing() -> None:
    pass


SUSPENSIONS: dict[str, Callable[[], Awaitable[object]]] = {
    "none (ready at once)": _nothing,
    "a bare yield (sleep(0))": lambda: asyncio.sleep(0),
    "a timer": lambda: asyncio.sleep(0.001),
    "a future": _a_future,
    "a task": _a_task,
    "a failed future it caught": _failed_future_caught,
    "its own timeout": _own_timeout,
    "a worker thread": lambda: asyncio.to_thread(time.sleep, 0),
    "anyio": lambda: anyio.sleep(0.001),
}


def async_generator(suspend: Callable[[], Awaitable[object]]) -> AsyncIterator[str]:
    async def source() -> AsyncIterator[str]:
        yield "before"
        await suspend()
        raise Boom("mine")

    return source()


class _Iterator:
    def __init__(self, suspend: Callable[[], Awaitable[object]]) -> None:
        self.suspend = suspend
        self.step = 0

    def __aiter__(self) -> _Iterator:
        return self

    async def __anext__(self) -> str:
        self.step += 1
        if self.step == 1:
            return "before"
        await self.suspend()
        raise Boom("mine")


def async_iterator(suspend: Callable[[], Awaitable[object]]) -> AsyncIterator[str]:
    return _Iterator(suspend)


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "askstream" and r.levelno >= logging.ERROR]


def assert_reported_as_itself(peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    before, error = peer.events
    assert before == Event("before")
    assert error.event == "error"
    assert json.loads(error.data) == {"code": 500, "message": "The event source failed."}
    assert peer.complete
    (record,) = failures(caplog)  # exactly one record
    assert record.exc_info is not None
    exc = record.exc_info[1]
    assert type(exc) is Boom
    assert str(exc) == "mine"
    assert exc.__context__ is None  # nothing of ours chained before it
    assert exc.__cause__ is None
    assert caplog.text.count("Traceback (most recent call last)") == 1
    assert "During handling" not in caplog.text


@pytest.mark.parametrize("suspension", list(SUSPENSIONS))
@pytest.mark.parametrize("kind", [async_generator, async_iterator], ids=lambda k: k.__name__)
async def test_an_async_source_failing_after_a_suspension_is_reported_as_itself(
    make_peer: MakePeer,
    caplog: pytest.LogCaptureFixture,
    kind: Callable[[Callable[[], Awaitable[object]]], AsyncIterator[str]],
    suspension: str,
) -> None:
    with caplog.at_level(logging.ERROR, logger="askstream"):
        peer = await stream(EventStreamResponse(kind(SUSPENSIONS[suspension])), make_peer())
    assert_reported_as_itself(peer, caplog)


@pytest.mark.parametrize("blocking", [False, True], ids=["ready", "after blocking"])
async def test_a_sync_source_failing_is_reported_as_itself(
    make_peer: MakePeer, caplog: pytest.LogCaptureFixture, blocking: bool
) -> None:
    def source() -> Iterator[str]:  # run in a worker thread, item by item
        yield "before"
        if blocking:
            time.sleep(0.01)
        raise Boom("mine")

    with caplog.at_level(logging.ERROR, logger="askstream"):
        peer = await stream(EventStreamResponse(source()), make_peer())
    assert_reported_as_itself(peer, caplog)


@pytest.mark.parametrize("suspension", ["none (ready at once)", "a timer", "its own timeout"])
async def test_a_source_failing_while_its_reader_is_slow_is_reported_as_itself(
    caplog: pytest.LogCaptureFixture, suspension: str
) -> None:
    # "before" is being written (the reader's buffers are full) while the
    # source goes on and fails: the write finishes, then the error event.
    peer = BodyBlockedPeer()
    peer.writable.clear()
    with caplog.at_level(logging.ERROR, logger="askstream"):
        task = peer.run(EventStreamResponse(async_generator(SUSPENSIONS[suspension])))
        await asyncio.sleep(0.05)
        peer.writable.set()
        await asyncio.wait_for(task, timeout=5)
    assert_reported_as_itself(peer, caplog)


async def test_a_source_failing_after_a_broadcast_let_it_go_is_reported_as_itself(
    make_peer: MakePeer, caplog: pytest.LogCaptureFixture
) -> None:
    from askstream import Broadcast, Join

    hub = Broadcast()

    async def source() -> AsyncIterator[Event | Join]:
        yield Event("before")
        yield hub.join(0)  # suspended in the broadcast until it closes
        raise Boom("mine")

    with caplog.at_level(logging.ERROR, logger="askstream"):
        peer = make_peer()
        task = peer.run(EventStreamResponse(source()))
        await wait_until(lambda: len(hub) == 1)
        hub.close()
        await asyncio.wait_for(task, timeout=5)
    assert_reported_as_itself(peer, caplog)
