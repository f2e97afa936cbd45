"""Every kind of source answers the same ``await pull.next()``, closes, and drains."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from askstream.http._pull import AsyncPull, SyncPull, open_pull

pytestmark = pytest.mark.anyio


async def _agen() -> AsyncIterator[str]:
    yield "a"
    await asyncio.sleep(0)
    yield "b"


class _Countdown:
    def __init__(self) -> None:
        self.n = 2

    def __aiter__(self) -> _Countdown:
        return self

    async def __anext__(self) -> str:
        if self.n == 0:
            raise StopAsyncIteration
        self.n -= 1
        await asyncio.sleep(0)
        return "ab"[1 - self.n]


def _gen() -> Iterator[str]:
    yield "a"
    yield "b"


@pytest.mark.parametrize(
    "make",
    [_agen, _Countdown, _gen, lambda: ["a", "b"], lambda: ("a", "b")],
    ids=["async generator", "async iterator", "sync generator", "list", "tuple"],
)
async def test_every_kind_of_source_gives_its_items_then_end(make: Any) -> None:
    pull = open_pull(make(), None)
    assert [await pull.next(), await pull.next()] == ["a", "b"]
    with pytest.raises(StopAsyncIteration):
        await pull.next()
    await pull.aclose()


async def test_a_sync_source_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    def source() -> Iterator[str]:
        threads.append(threading.get_ident())
        yield "x"

    pull = open_pull(source(), None)
    assert type(pull) is SyncPull
    assert await pull.next() == "x"
    assert threads
    assert threads[0] != threading.get_ident()


async def test_the_sources_exception_comes_out_of_next_as_itself() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(0)
        raise KeyError("mine")

    pull = open_pull(source(), None)
    assert await pull.next() == "a"
    with pytest.raises(KeyError, match="mine") as caught:
        await pull.next()
    assert caught.value.__context__ is None  # nothing of ours chained before it


async def test_aclose_runs_the_finally_of_a_source_that_was_started() -> None:
    closed: list[str] = []

    async def source() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            await asyncio.sleep(0)  # its cleanup may await
            closed.append("closed")

    pull = open_pull(source(), None)
    assert type(pull) is AsyncPull
    assert await pull.next() == "a"
    await pull.aclose()
    assert closed == ["closed"]


async def test_a_stop_during_a_thread_hop_never_abandons_the_generator() -> None:
    release = threading.Event()
    entered = threading.Event()
    closed = threading.Event()

    def source() -> Iterator[str]:
        try:
            entered.set()
            release.wait(5)
            yield "late"
        finally:
            closed.set()

    pull = open_pull(source(), None)
    task = asyncio.get_running_loop().create_task(pull.next())  # type: ignore[arg-type]
    await asyncio.to_thread(entered.wait, 5)
    task.cancel()  # a stop while the thread runs the generator
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not closed.is_set()
    release.set()
    await pull.aclose()  # waits for the hop, then closes the generator in a thread
    assert closed.is_set()


async def test_drain_pulls_to_the_end_and_logs_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for n in range(600):  # more than one drain turn
            pulled.append(n)
            yield n
        raise RuntimeError("failed late")

    pull = open_pull(source(), None)
    with caplog.at_level(logging.ERROR, logger="askstream"):
        await pull.drain()
    assert pulled == list(range(600))
    assert "failed late" in caplog.text


def test_a_single_value_is_not_a_source() -> None:
    with pytest.raises(TypeError, match="not an event source"):
        open_pull("text", None)  # type: ignore[arg-type]
