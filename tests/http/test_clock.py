"""The Clock the response's timers read, the FakeClock tests drive them with, and
``deadline`` (asyncio's timeout, counted on a clock)."""

from __future__ import annotations

import asyncio

import pytest

from askstream import Clock, SystemClock
from askstream.http._clock import deadline
from askstream.testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_timers_run_in_the_order_they_fall_due_and_only_when_advanced() -> None:
    clock = FakeClock(start=100.0)
    ran: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: ran.append(("b", clock.now())))
    clock.call_later(1.0, lambda: ran.append(("a", clock.now())))
    clock.call_later(
        2.0, lambda: ran.append(("c", clock.now()))
    )  # same time: set later, runs later
    cancelled = clock.call_later(1.5, lambda: ran.append(("never", clock.now())))
    cancelled.cancel()
    await clock.advance(0.99)
    assert ran == []
    await clock.advance(5)
    assert ran == [("a", 101.0), ("b", 102.0), ("c", 102.0)]
    assert clock.now() == 105.99
    assert clock.next_due() is None


async def test_advance_returns_once_a_woken_loop_sleeps_again() -> None:
    clock = FakeClock()
    rounds: list[float] = []
    gate = asyncio.Event()

    async def periodic() -> None:
        while True:
            await clock.sleep(1.0)
            await asyncio.sleep(0)  # work that takes loop passes
            await asyncio.sleep(0)
            rounds.append(clock.now())

    async def after_a_wait() -> None:
        await clock.sleep(2.5)
        await gate.wait()

    task = asyncio.get_running_loop().create_task(periodic())
    await clock.wait_sleepers(1)
    await clock.advance(3.0)
    assert rounds == [1.0, 2.0, 3.0]
    assert clock.sleepers == 1
    other = asyncio.get_running_loop().create_task(after_a_wait())
    await clock.wait_sleepers(2)
    advancing = asyncio.get_running_loop().create_task(clock.advance(3.0))
    await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not advancing.done()  # the woken task waits on something else than the clock
    gate.set()
    await asyncio.wait_for(advancing, timeout=2)
    assert other.done()
    assert rounds == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    task.cancel()
    await asyncio.wait([task])


async def test_a_clock_does_not_go_back() -> None:
    with pytest.raises(ValueError, match="back"):
        await FakeClock().advance(-1)


async def test_a_deadline_on_a_fake_clock_fires_when_the_clock_passes_it() -> None:
    clock = FakeClock()
    entered = asyncio.Event()

    async def waits_forever() -> None:
        async with deadline(clock, 5.0):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(waits_forever())
    await entered.wait()
    await clock.advance(4.99)
    await asyncio.sleep(0)
    assert not task.done()
    await clock.advance(0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, timeout=2)


async def test_a_deadline_that_is_not_reached_leaves_no_timer_behind() -> None:
    clock = FakeClock()
    async with deadline(clock, 5.0):
        await asyncio.sleep(0)
    assert clock.next_due() is None
    async with deadline(clock, None):  # None: no deadline at all
        await asyncio.sleep(0)
    assert clock.next_due() is None


async def test_the_system_clock_is_asyncios_time() -> None:
    clock: Clock = SystemClock()
    fired = asyncio.Event()
    before = clock.now()
    clock.call_later(0, fired.set)
    await clock.sleep(0)
    await asyncio.wait_for(fired.wait(), timeout=2)
    assert clock.now() >= before
    assert repr(clock) == "SystemClock()"
