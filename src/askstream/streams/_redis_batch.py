"""Appends to Redis in batches: every append a process makes while the previous
batch is on its way goes out together, as one script call.

A thousand answers streaming at once each append a token every few tens of
milliseconds. One command per token costs a round trip and, in redis-py, some
60 µs of Python each; one ``EVALSHA`` carrying a few hundred appends costs
little more than one. Nothing waits to fill a batch: when no batch is in
flight an append goes out at the next turn of the event loop, alone if it is
alone, so a quiet stream pays no delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["AppendBatcher"]

logger = logging.getLogger("askstream")

# Appends in one script call at most: the script holds Redis for its run
# (~2 µs per append), so a batch stays well under a millisecond of it.
MAX_BATCH = 256

Send = Callable[[Sequence[str], Sequence[str | int]], Awaitable[list[int]]]


class AppendBatcher:
    """Collects appends and runs them through ``send(keys, args)`` in batches.

    ``send`` is the APPEND script (see ``_redis_scripts.py``): for each append,
    two keys (the stream's hash and log) and two arguments (data, event type),
    after the length cap; it returns each append's event number (or -1, -2).
    :meth:`run` is the one task that sends; it must be running.
    """

    def __init__(self, send: Send, cap: int) -> None:
        self._send = send
        self._cap = cap
        self._pending: list[tuple[str, str, str, str, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()

    def append(self, meta: str, log: str, data: str, event: str) -> asyncio.Future[int]:
        """Queue one append; the future gets its number (or -1 / -2, as the script)."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((meta, log, data, event, future))
        self._wake.set()
        return future

    async def run(self, errors: tuple[type[Exception], ...], closing: Callable[[], bool]) -> None:
        try:
            while not closing():
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    await self._flush(batch, errors)
        finally:
            for *_, future in self._pending:
                future.cancel()
            self._pending.clear()

    async def _flush(
        self,
        batch: list[tuple[str, str, str, str, asyncio.Future[int]]],
        errors: tuple[type[Exception], ...],
    ) -> None:
        keys: list[str] = []
        args: list[str | int] = [self._cap]
        for meta, log, data, event, _ in batch:
            keys += (meta, log)
            args += (data, event)
        try:
            numbers = await self._send(keys, args)
        except errors as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for *_, future in batch:
                future.cancel()
            raise
        for (*_, future), number in zip(batch, numbers, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(int(number))
