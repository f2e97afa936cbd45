"""What one stream writes: its ASGI ``send``, and the frames held for the next write.

Batching means: all the source has *ready* goes out in one ``send``, and no
ready frame is held while the source waits for the next. ``await anext()``
cannot say whether the source waited, so the producer reads the clock around
it: an item that came after a wait is written at once (the usual token). One
that came at once is held, and the producer asks the loop to run
:meth:`Batch.waited` (``loop.call_soon``; ``marked`` says one is pending). The
loop runs it only once the producer suspends. So while ``marked`` is set the
source has not waited, and its items join the batch; as soon as it waits,
``waited`` starts a short *flusher* task that writes the batch in one
``send`` while the source waits.

A heartbeat comes from outside the producer (:meth:`offer`); it joins the
batch the same way. One write at a time:
the producer writes by itself only when nothing is held and no flusher runs.
The watchdog sees what is being written through :meth:`doing`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.types import Send

from ._clock import Clock, deadline

__all__ = ["Batch"]

logger = logging.getLogger("askstream")


class Batch:
    """A stream's writes. ``held``, ``marked``, ``flusher`` and ``state`` are read
    by the producer on its hot path (see ``_stream.py``), the rest only here."""

    __slots__ = ("_failed", "closed", "flusher", "held", "marked", "send", "state")

    def __init__(self, send: Send, failed: Callable[[], None]) -> None:
        self.send = send
        self._failed = failed  # a write found the reader gone
        self.held: list[bytes] = []
        # The message being written (a dict), or the body last written: a new
        # object per write, so the watchdog sees progress by identity.
        self.state: object = None
        self.flusher: asyncio.Task[None] | None = None
        self.marked = False  # `waited` is scheduled and has not run: no wait since
        self.closed = False  # the stream stops: offer nothing more

    def waited(self) -> None:
        """Run by the loop: the producer suspended since it scheduled this."""
        self.marked = False
        if self.held and self.flusher is None and type(self.state) is not dict:
            self._start_flusher()

    def offer(self, frame: bytes) -> None:
        """Hold ``frame`` for the next write (a heartbeat): from outside the producer."""
        if self.closed:
            return
        self.held.append(frame)
        if self.flusher is None and type(self.state) is not dict:
            self._start_flusher()  # the producer is suspended, not writing: write it now

    async def write(self, body: bytes) -> None:
        """The producer writes ``body`` now, after anything held (a broadcast's frames).

        Raises ``ConnectionError`` once the stream stops.
        """
        if self.flusher is not None:
            await asyncio.wait([self.flusher])
        if self.held:
            body = self._take() + body
        if self.closed:
            raise ConnectionError("the stream stops")
        message = {"type": "http.response.body", "body": body, "more_body": True}
        self.state = message  # (inline: a broadcast's reader passes here once per event)
        try:
            await self.send(message)
        except OSError:
            self._failed()
            raise
        self.state = body
        if self.held and self.flusher is None:  # a heartbeat came meanwhile
            self._start_flusher()

    def _start_flusher(self) -> None:
        loop = asyncio.get_running_loop()
        self.flusher = loop.create_task(self._flush(), name="askstream batch")

    async def _flush(self) -> None:
        held = self.held
        try:
            while held:
                await self._write(self._take())
        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
            self._failed()
        except Exception:
            logger.exception("the server's send failed; treating the reader as gone")
            self._failed()
        finally:
            self.flusher = None

    def _take(self) -> bytes:
        held = self.held
        body = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        return body

    async def _write(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": True}
        self.state = message
        await self.send(message)
        self.state = body

    async def flush(self) -> None:
        """Write everything held now (after the flusher under way, if any)."""
        if self.flusher is not None:
            await asyncio.wait([self.flusher])
        if self.held and not self.closed:
            try:
                await self._write(self._take())
            except OSError:
                self._failed()

    def take(self) -> bytes:
        """What is held, taken out (for the stream's last message)."""
        return self._take() if self.held else b""

    async def settle(self, limit: float | None, clock: Clock) -> None:
        """The stream ends: let the flusher finish, for at most ``limit`` seconds."""
        flusher = self.flusher
        if flusher is not None:
            try:
                async with deadline(clock, limit):
                    await asyncio.wait([flusher])  # (cancelling the wait spares the flusher)
            except TimeoutError:
                flusher.cancel()
                await asyncio.wait([flusher])
        self.flusher = None  # (one cancelled before it ran never cleared it)

    def cancel(self) -> None:
        """The reader is gone: stop writing."""
        self.closed = True
        flusher = self.flusher
        if flusher is not None and flusher is not asyncio.current_task():
            flusher.cancel()

    async def abandon(self) -> None:
        """The reader is gone: stop writing and wait for the flusher to be gone."""
        self.cancel()
        flusher = self.flusher
        if flusher is not None and flusher is not asyncio.current_task():
            await asyncio.wait([flusher])
            self.flusher = None  # (one cancelled before it ran never cleared it)

    def doing(self) -> tuple[object, bool]:
        """For the watchdog: what is being written or was last written, and which."""
        state = self.state
        return state, type(state) is dict

    def producer_writes(self) -> bool:
        """Whether the producer itself is in a write (not waiting on its source)."""
        return type(self.state) is dict and self.flusher is None
