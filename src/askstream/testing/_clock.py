"""A clock that moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from ..http import Timer

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "order", "when")

    def __init__(self, when: float, order: int, callback: Callable[[], object]) -> None:
        self.when = when
        self.order = order  # timers due at the same time run in the order they were set
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _FakeTimer) -> bool:
        return (self.when, self.order) < (other.when, other.order)


class FakeClock:
    """An :class:`askstream.http.Clock` whose time stands still until :meth:`advance`.

    Pass it wherever askstream takes a ``clock`` (``EventStreamResponse``, the
    service's ``Generations``), then move time by hand: heartbeats, slow-reader
    drops and periodic saves happen when the test advances past them, never on
    their own, and no test waits for real seconds.

    :meth:`advance` runs the timers that fall due in order of their time, and
    after each it lets the event loop run until every task it woke from
    :meth:`sleep` is asleep on this clock again or has ended: when it returns,
    a periodic loop has done its round.

    >>> import asyncio
    >>> async def demo() -> list[float]:
    ...     clock = FakeClock()
    ...     ticks: list[float] = []
    ...     async def ticker() -> None:
    ...         while True:
    ...             await clock.sleep(1.0)
    ...             ticks.append(clock.now())
    ...     task = asyncio.create_task(ticker())
    ...     await clock.advance(0)  # the ticker starts and goes to sleep
    ...     await clock.advance(3.5)
    ...     task.cancel()
    ...     return ticks
    >>> asyncio.run(demo())
    [1.0, 2.0, 3.0]
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[_FakeTimer] = []
        self._order = itertools.count()
        self._asleep: dict[asyncio.Task[object], int] = {}  # task -> its sleep's number
        self._sleeps = itertools.count()
        self._woken: list[tuple[asyncio.Task[object], int]] = []  # by the timer just run
        self._watchers: list[asyncio.Event] = []  # woken when a sleep begins or ends

    def now(self) -> float:
        """The fake time: ``start`` plus every advance so far."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` once the clock has advanced ``delay`` seconds from now."""
        timer = _FakeTimer(self._now + max(delay, 0.0), next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task until the clock has advanced ``seconds``."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        task = asyncio.current_task()
        assert task is not None
        number = next(self._sleeps)
        woken = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)
                self._woken.append((task, number))

        timer = self.call_later(seconds, wake)
        self._asleep[task] = number
        self._note_change()
        try:
            await woken
        finally:
            timer.cancel()
            if self._asleep.get(task) == number:
                del self._asleep[task]
            self._note_change()

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock now."""
        return len(self._asleep)

    async def wait_sleepers(self, count: int = 1) -> None:
        """Until at least ``count`` tasks are asleep on this clock (a loop reached its sleep)."""
        while len(self._asleep) < count:
            await self._watch().wait()

    def next_due(self) -> float | None:
        """When the next timer falls due (``None``: no timer is set)."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].when if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` forward, running what falls due on the way (see above).

        A task woken from :meth:`sleep` that then waits for something else
        than this clock (a test's event) holds ``advance`` up until it does.
        """
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._now + seconds
        await asyncio.sleep(0)  # what is ready now (a task about to sleep) runs first
        while (due := self.next_due()) is not None and due <= target:
            timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.when)
            timer.callback()
            await self._settle()
        self._now = target

    async def _settle(self) -> None:
        """Let the loop run until every task just woken sleeps again or has ended."""
        await asyncio.sleep(0)  # what the callback scheduled runs once at least
        woken, self._woken = self._woken, []
        while True:
            busy = [
                task
                for task, number in woken
                if not task.done() and self._asleep.get(task, number) == number
            ]
            if not busy:
                return
            change = asyncio.ensure_future(self._watch().wait())
            try:
                await asyncio.wait([change, *busy], return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()

    def _watch(self) -> asyncio.Event:
        """Set at the next sleep on this clock that begins or ends (watched from now on)."""
        changed = asyncio.Event()
        self._watchers.append(changed)
        return changed

    def _note_change(self) -> None:
        watchers, self._watchers = self._watchers, []
        for changed in watchers:
            changed.set()

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleepers={len(self._asleep)})"
