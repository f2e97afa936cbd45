"""Stepping a source by hand tells ready items from pending ones, and loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from askstream.http._pull import END, PENDING, AsyncGenPull, AsyncPull, Pull, open_pull

pytestmark = pytest.mark.anyio


async def wait(pull: Pull) -> object:
    """What the response does, minus the reader and the timer: wait, resume, repeat."""
    item = pull.ready()
    while item is PENDING:
        blocker = pull.blocker
        if blocker is None:
            await asyncio.sleep(0)
        else:
            await asyncio.wait([blocker])
        item = pull.resume()
    return item


async def test_items_produced_without_suspending_are_ready() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2

    pull = AsyncPull(source())
    assert [pull.ready(), pull.ready(), pull.ready()] == [1, 2, END]


async def test_an_item_behind_an_await_is_pending_then_arrives() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        await gate.wait()
        yield "late"

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    assert pull.ready() is PENDING  # still the same step
    assert pull.blocker is not None
    assert not pull.blocker.done()
    asyncio.get_running_loop().call_later(0.01, gate.set)
    assert await wait(pull) == "late"
    assert pull.ready() is END


async def test_a_bare_yield_to_the_loop_is_pending_without_a_blocker() -> None:
    async def source() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield "after a yield"

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    assert pull.blocker is None
    assert await wait(pull) == "after a yield"


async def test_the_sources_exceptions_come_out_of_ready_and_resume() -> None:
    async def fails_at_once() -> AsyncIterator[str]:
        raise ValueError("now")
        yield "never"

    async def fails_later() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        raise ValueError("later")
        yield "never"

    with pytest.raises(ValueError, match="now"):
        AsyncPull(fails_at_once()).ready()
    pull = AsyncPull(fails_later())
    assert pull.ready() is PENDING
    with pytest.raises(ValueError, match="later"):
        await wait(pull)


async def test_a_failed_future_is_thrown_in_as_a_task_would() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def source() -> AsyncIterator[str]:
        try:
            await future
        except KeyError:
            yield "caught"

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    future.set_exception(KeyError("x"))
    assert await wait(pull) == "caught"


async def test_throw_cancels_the_source_where_it_waits_and_its_cleanup_may_await() -> None:
    cleaned: list[str] = []
    waited_on: list[asyncio.Future[None]] = []

    async def source() -> AsyncIterator[str]:
        future = asyncio.get_running_loop().create_future()
        waited_on.append(future)
        try:
            await future
            yield "never"
        finally:
            await asyncio.sleep(0)  # cleanup may await
            cleaned.append("finally")

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    assert pull.throw(asyncio.CancelledError()) is PENDING  # its cleanup awaits
    assert waited_on[0].cancelled()  # as Task.cancel() leaves it
    with pytest.raises(asyncio.CancelledError):
        await wait(pull)
    assert cleaned == ["finally"]


async def test_aclose_of_a_source_mid_step_runs_its_finally() -> None:
    cleaned: list[str] = []

    async def source() -> AsyncIterator[str]:
        try:
            await asyncio.Event().wait()
            yield "never"
        finally:
            await asyncio.sleep(0)
            cleaned.append("finally")

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    await pull.aclose()
    assert cleaned == ["finally"]


async def test_a_redelivered_cancellation_the_source_handles_gives_its_next_item() -> None:
    async def source() -> AsyncIterator[str]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            yield "handled"

    pull = AsyncPull(source())
    assert pull.ready() is PENDING
    pull.redeliver(asyncio.CancelledError())
    assert pull.ready() == "handled"


async def test_a_yield_that_is_not_a_future_is_thrown_back_in() -> None:
    class Odd:
        def __await__(self):  # type: ignore[no-untyped-def]
            yield "not a future"

    async def source() -> AsyncIterator[str]:
        try:
            await Odd()
        except RuntimeError as exc:
            yield str(exc)

    # As Task.__step answers a bad yield: a RuntimeError where the source awaits.
    assert "not a future" in str(AsyncPull(source()).ready())


async def test_async_generators_get_the_pull_whose_steps_may_be_awaited() -> None:
    async def generator() -> AsyncIterator[str]:
        yield "x"

    class Iterator:
        def __aiter__(self) -> Iterator:
            return self

        async def __anext__(self) -> str:
            raise StopAsyncIteration

    assert type(open_pull(generator(), None)) is AsyncGenPull
    assert type(open_pull(Iterator(), None)) is AsyncPull


async def test_a_step_run_by_hand_and_adopted_goes_on_as_if_the_pull_had_run_it() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        await gate.wait()
        yield "late"
        yield "next"

    pull = AsyncGenPull(source())
    step = anext(pull.iterator)
    yielded = step.send(None)  # type: ignore[attr-defined]
    assert pull.adopt(step, yielded) is PENDING
    assert pull.blocker is yielded
    gate.set()
    assert await wait(pull) == "late"
    assert pull.ready() == "next"
