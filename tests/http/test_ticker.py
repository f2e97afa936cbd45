"""One timer for the streams of a loop that look at the same period (``_ticker.py``)."""

from __future__ import annotations

import logging

import pytest

from askstream.http._ticker import ticker
from askstream.testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_streams_of_one_loop_clock_and_period_share_one_ticker_and_one_timer() -> None:
    clock = FakeClock()
    shared = ticker(clock, 5.0)
    assert ticker(clock, 5.0) is shared
    assert ticker(clock, 2.0) is not shared
    assert ticker(FakeClock(), 5.0) is not shared
    looks: list[tuple[str, float]] = []
    shared.add(lambda: looks.append(("a", clock.now())))
    await clock.advance(2.0)
    shared.add(lambda: looks.append(("b", clock.now())))  # between two ticks
    assert len(shared) == 2
    assert clock.next_due() == 5.0  # the one timer, not one per stream
    await clock.advance(8.0)
    assert looks == [("a", 5.0), ("b", 5.0), ("a", 10.0), ("b", 10.0)]


async def test_the_last_callback_gone_stops_its_timer_and_lets_the_ticker_go() -> None:
    clock = FakeClock()
    ticks = ticker(clock, 5.0)

    def look() -> None:
        raise AssertionError("discarded: never called")

    ticks.add(look)
    ticks.discard(look)
    ticks.discard(look)  # twice is harmless
    assert clock.next_due() is None
    assert ticker(clock, 5.0) is not ticks  # a new one, made on the next use


async def test_a_callback_that_fails_is_logged_and_the_others_keep_their_ticks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    ticks = ticker(clock, 1.0)
    looks: list[float] = []

    def broken() -> None:
        raise RuntimeError("one stream's bug")

    ticks.add(broken)
    ticks.add(lambda: looks.append(clock.now()))
    with caplog.at_level(logging.ERROR, logger="askstream"):
        await clock.advance(2.0)
    assert looks == [1.0, 2.0]
    failures = [r for r in caplog.records if r.getMessage() == "a stream's timer failed"]
    assert len(failures) == 2
    assert all(isinstance(r.exc_info[1], RuntimeError) for r in failures if r.exc_info)


async def test_a_callback_discarded_by_an_earlier_one_in_the_same_tick_is_not_called() -> None:
    clock = FakeClock()
    ticks = ticker(clock, 1.0)
    called: list[str] = []

    def second() -> None:
        called.append("second")

    def first() -> None:
        called.append("first")
        ticks.discard(second)  # one stream's look stops another

    ticks.add(first)
    ticks.add(second)
    await clock.advance(1.0)
    assert called == ["first"]
