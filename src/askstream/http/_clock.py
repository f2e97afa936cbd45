"""The time the timers read: a small :class:`Clock` protocol, the real one by default.

Everything in askstream that waits for time to pass (a stream's heartbeat
and slow-reader watchdog, its last write's deadline, the service's periodic
save of answers in progress) asks a ``Clock`` instead of asyncio, so a test
can hand it :class:`askstream.testing.FakeClock` and move time by hand rather
than sleep (house rule 14).

``call_later`` is in the protocol beside ``sleep`` because an idle stream's
timer must stay a bare timer handle: a task per idle stream would cost the
memory the stream is measured on (``bench/bench_http.py``, RSS per idle stream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

__all__ = ["Clock", "SystemClock", "Timer", "deadline"]


class Timer(Protocol):
    """What :meth:`Clock.call_later` hands back: it can be cancelled, once or more.

    asyncio's own ``TimerHandle`` is one::

        timer = clock.call_later(15.0, send_heartbeat)
        timer.cancel()  # the stream ended first
    """

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where askstream's timers read the time and wait for it.

    ``now()`` is monotonic seconds; ``sleep(seconds)`` suspends the calling task
    that long; ``call_later(delay, callback)`` runs ``callback()`` in the event
    loop after ``delay`` seconds, unless the returned :class:`Timer` is cancelled.
    :class:`SystemClock` is asyncio's time; ``askstream.testing.FakeClock``
    moves only when a test says so.

    >>> from askstream.http import Clock, SystemClock
    >>> clock: Clock = SystemClock()
    >>> clock.now() > 0
    True
    """

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer: ...


class SystemClock:
    """The real time: :func:`time.monotonic` and the running asyncio loop's timers.

    It holds no state, so one instance serves everything (the default wherever
    a ``clock`` is taken).

    >>> import asyncio
    >>> asyncio.run(SystemClock().sleep(0))
    """

    __slots__ = ()

    def now(self) -> float:
        # What asyncio's own loop.time() reads; uvloop's is coarser.
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


@asynccontextmanager
async def deadline(clock: Clock, seconds: float | None) -> AsyncIterator[None]:
    """Like ``asyncio.timeout(seconds)``, but ``seconds`` pass on ``clock``.

    The clock's timer only moves asyncio's own timeout to *now*, so raising
    ``TimeoutError`` and taking back the cancellation stay asyncio's (public) work.
    """
    if seconds is None:
        yield
        return
    async with asyncio.timeout(None) as scope:
        loop = asyncio.get_running_loop()
        timer = clock.call_later(seconds, lambda: scope.reschedule(loop.time()))
        try:
            yield
        finally:
            timer.cancel()
