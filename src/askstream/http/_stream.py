"""One event stream being sent: the machinery behind :class:`EventStreamResponse`.

Two tasks per stream, as a bare ``async for`` + ``send`` loop has. The
response's own task (:meth:`Stream.run`) sends the start, starts the
*producer*, then only awaits ``receive()`` (``http.disconnect``: the reader
left). The producer task (:meth:`Stream._produce`) is that bare loop: it awaits
the source's next item exactly as ``async for`` would, whatever kind of source
it is (``_pull.py``), so the source's awaits, timeouts and cancel scopes behave
as in any task; it closes the source and ends the body.

Batching, the one thing a bare loop lacks, is the :class:`~._batch.Batch`: an
item that comes while the source did not wait since the last one (it was
*ready*), or while a write is under way, is put in the batch rather than
written; the batch is written in one ``send`` as soon as the producer waits
for anything, by a short task of its own. So ready events share a write, and
no ready event is held while the source waits for the next.

Fairness: a source that never waits would keep the producer running for ever.
Every ``_BATCH_SECONDS`` of work (or ``_BATCH_BYTES``) the producer writes the
batch and then waits until the rest of the worker has had a turn
(:func:`~._turn.take_turn`), so a flood costs the worker's other requests no
more than a source that awaits between events does.

Everything else arrives by callback: a timer (one for all the loop's streams,
``_ticker.py``) looks now and then at what the batch is writing (``Watchdog``
decides on heartbeats and slow readers), a heartbeat is put in the batch like
any frame, ``ShutdownMiddleware`` calls back. A source may hand its stream to
a broadcast (``_broadcast.py``): the producer then waits there and writes,
with the batch's ``write``, the frames the broadcast queues for it. Any of
them stops the producer by setting a reason and cancelling it, but only in
one of its own awaits (the source, a write, a turn), never in the cleanup;
with ``on_disconnect="drain"`` a leaving reader never cancels a waiting source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal

from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Send

from ..sse import Event, comment, encode
from ._batch import Batch
from ._broadcast import Join, enter
from ._clock import Clock, deadline
from ._items import encode_item
from ._pull import Pull, Source, open_pull
from ._shutdown import Shutdown
from ._ticker import Ticker, ticker
from ._turn import take_turn
from ._watchdog import Action, Watchdog

__all__ = ["ERROR_EVENT", "Stream"]

logger = logging.getLogger("askstream")

_BATCH_BYTES = 64 * 1024
_BATCH_SECONDS = 0.002
_BATCH_CHECK_EVERY = 16  # ready events between looks at the clock
# An item the source gave within this many seconds of being asked was (most
# likely) ready: it is held, in case more are. A wait of the source takes at
# least a pass of the event loop; one taken for "ready" costs a pass of delay.
_READY_WITHIN = 0.000_01
# One shared name: a task left to name itself makes a new "Task-N" string per stream.
_PRODUCER_NAME = "askstream producer"

PING = comment("ping")
ERROR_EVENT = encode(
    Event(json.dumps({"code": 500, "message": "The event source failed."}), event="error")
)

Reason = Literal["error", "disconnect", "shutdown", "slow", "cancelled"]


class Stream:
    """Sends one source's events over one ASGI response: :meth:`run` is the response."""

    __slots__ = (
        "_attending",
        "_batch",
        "_cancelled",
        "_clock",
        "_dog",
        "_listening",
        "_main",
        "_on_disconnect",
        "_reason",
        "_send_timeout",
        "_stoppable",
        "_task",
        "_ticker",
    )

    def __init__(
        self,
        send: Send,
        *,
        ping: float | None,
        send_timeout: float | None,
        on_disconnect: Literal["close", "drain"],
        clock: Clock,
    ) -> None:
        self._clock = clock  # the watchdog's looks and the last write's deadline
        self._batch = Batch(send, self._write_failed)
        self._send_timeout = send_timeout
        self._on_disconnect = on_disconnect
        self._dog = Watchdog(ping=ping, send_timeout=send_timeout)
        self._reason: Reason | None = None
        self._main: asyncio.Task[Any] | None = None  # the response's own task
        self._task: asyncio.Task[None] | None = None  # the producer
        self._listening = False  # the response's task awaits receive()
        self._stoppable = False  # the producer sits in one of its own awaits
        self._cancelled = False  # we cancelled the producer and have not taken it back
        self._attending = False  # the producer is handed to a broadcast
        self._ticker: Ticker | None = None  # the watchdog's looks, shared with other streams

    async def run(
        self,
        start: Message | None,
        receive: Receive,
        source: Source,
        *,
        last_event_id: str | None,
        head: bytes,
        shutdown: Shutdown | None,
        background: BackgroundTask | None,
    ) -> None:
        """The whole response: the start (``None``: sent already), the stream until it
        ends or is stopped, the background."""
        main = self._main = asyncio.current_task()
        assert main is not None
        if start is not None:  # None: it went out already (_handoff.py)
            await self._batch.send(start)
        if shutdown is not None and not shutdown.subscribe(self._on_shutdown):
            self._reason = "shutdown"
        try:
            pull = open_pull(source, last_event_id)
        except Exception:
            logger.exception("event source failed; the stream ends with an error event")
            self._reason = "error"
            self._quiet(shutdown)
            await self._finish(ERROR_EVENT)
        else:
            loop = asyncio.get_running_loop()
            producer = self._task = loop.create_task(
                self._produce(pull, head, shutdown), name=_PRODUCER_NAME
            )
            if self._dog.every is not None:
                self._ticker = ticker(self._clock, self._dog.every)
                self._ticker.add(self._on_timer)
            self._listening = True
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass  # a request body chunk nobody reads
            except asyncio.CancelledError:
                # The producer ended and woke us (then _listening is off), or
                # a real cancellation: the producer stops and cleans up first.
                if self._listening or main.uncancel():
                    self._listening = False
                    self._stop("cancelled")
                    await asyncio.wait([producer])
                    raise
            except Exception:
                logger.exception("receive() failed; treating the reader as gone")
                self._listening = False
                self._stop("disconnect")
            else:
                self._listening = False
                self._stop("disconnect")
            await producer
        if background is not None:
            await background()

    # The producer -------------------------------------------------------------------

    async def _produce(self, pull: Pull, head: bytes, shutdown: Shutdown | None) -> None:
        # The producer task's coroutine, and the hot path: each event passes
        # here once. Per event that came after a wait: one await of the
        # source, two clock reads, one look at the batch, one write; nothing
        # stored on a stream object gone cold but the message being written.
        batch = self._batch
        held = batch.held
        send = batch.send
        next_ = pull.next
        waited = batch.waited
        call_soon = asyncio.get_running_loop().call_soon
        create_future = asyncio.get_running_loop().create_future
        clock = time.perf_counter  # not loop.time(): uvloop's stands still within a pass
        if head:  # out with the first batch, or alone if the source waits first
            held.append(head)
            batch.marked = True
            call_soon(waited)
        size = count = 0
        batch_end = 0.0  # when a long batch must go out; 0: not timed yet
        try:
            self._stoppable = True
            while self._reason is None:
                asked = clock()
                try:
                    item = await next_()
                except StopAsyncIteration:
                    break
                if self._reason is not None:
                    break
                if type(item) is str and "\n" not in item and "\r" not in item:
                    chunk = f"data: {item}\n\n".encode()  # encode_item's hot path
                elif type(item) is Join:
                    # Write what is held, then let the broadcast write: attend()'s
                    # loop, inline. A joined reader waits here for as long as it
                    # stays, and each frame more would cost every one ~0.2-0.3 KiB.
                    await batch.flush()
                    if self._reason is not None:
                        break
                    self._attending = True
                    try:
                        member = enter(item, batch.write)
                        if member is not None:
                            try:
                                while (step := member.step(create_future)) is not None:
                                    await step
                            finally:
                                await member.leave(item)
                    finally:
                        self._attending = False
                    continue
                else:
                    chunk = encode_item(item)
                if not (batch.marked or held or batch.flusher is not None):
                    if clock() - asked >= _READY_WITHIN:
                        # The source waited, nothing else is to be written: a plain write.
                        message = {"type": "http.response.body", "body": chunk, "more_body": True}
                        batch.state = message
                        try:
                            await send(message)
                        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
                            self._reason = self._reason or "disconnect"
                            break
                        batch.state = chunk
                        size = count = 0
                        batch_end = 0.0
                        continue
                    # It came at once: the source may have more ready. Hold it,
                    # and learn from the loop when the producer next waits.
                    batch.marked = True
                    call_soon(waited)
                held.append(chunk)  # ready at once, or a write is under way
                size += len(chunk)
                count += 1
                if size >= _BATCH_BYTES or not count % _BATCH_CHECK_EVERY:
                    now = clock()
                    if not batch_end:
                        batch_end = now + _BATCH_SECONDS
                    if size >= _BATCH_BYTES or now >= batch_end:
                        await batch.flush()
                        await take_turn()  # let the rest of the worker run
                        size = count = 0
                        batch_end = 0.0
            await batch.flush()
        except asyncio.CancelledError:
            if not self._take_back_cancel():
                raise
        except Exception:
            if self._reason is None:  # else it was being stopped anyway
                logger.exception("event source failed; the stream ends with an error event")
                self._reason = "error"
        finally:
            await self._end(pull, shutdown)

    async def _end(self, pull: Pull, shutdown: Shutdown | None) -> None:
        """The producer's last act: close the source and end the body (or not)."""
        self._stoppable = False
        if self._listening:  # the response's task still listens: wake it, it is over
            self._listening = False
            assert self._main is not None
            self._main.cancel()
        self._quiet(shutdown)
        reason = self._reason
        ends_body = reason in (None, "error", "shutdown")
        if ends_body:
            # What was held goes out, then the end (an error event after an error).
            await self._batch.settle(self._send_timeout, self._clock)
        else:
            await self._batch.abandon()
        if reason in ("disconnect", "slow") and self._on_disconnect == "drain":
            await pull.drain()
        else:
            await pull.aclose()
        if ends_body:
            # What was held goes out, then the end: an error event after an error;
            # when the server stops, the last event the middleware has, if any.
            last = b""
            if reason == "error":
                last = ERROR_EVENT
            elif reason == "shutdown" and shutdown is not None:
                last = shutdown.final
            await self._finish(self._batch.take() + last)
        # "disconnect": nobody to tell. "slow": returning without finishing
        # makes the server close the connection (ASGI has no abort message).
        # "cancelled": the response's task is being cancelled; it says no more.

    async def _finish(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": False}
        # A reader that takes nothing more: the server closes the connection.
        with contextlib.suppress(TimeoutError, OSError):
            async with deadline(self._clock, self._send_timeout):
                await self._batch.send(message)

    # Stopping ---------------------------------------------------------------------

    def _stop(self, reason: Reason) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        if reason in ("disconnect", "slow", "cancelled"):
            self._batch.cancel()  # nobody takes what it writes
        if (
            self._on_disconnect == "drain"
            and reason in ("disconnect", "slow")
            and not self._attending
            and not self._batch.producer_writes()
        ):
            return  # waiting on the source, which must not be cancelled: it stops after this item
        if self._stoppable and not self._cancelled and self._task is not asyncio.current_task():
            # (The producer stopping itself sees the reason at its next item.)
            assert self._task is not None
            self._cancelled = True
            self._task.cancel()

    def _write_failed(self) -> None:
        """A write found the reader gone (ASGI 2.4 servers raise OSError then)."""
        self._stop("disconnect")

    def _take_back_cancel(self) -> bool:
        """After a cancellation: whether it was only ours (then it is taken back)."""
        if not self._cancelled:
            return False
        self._cancelled = False
        assert self._task is not None
        return self._task.uncancel() == 0

    def _on_shutdown(self) -> None:
        self._stop("shutdown")

    def _quiet(self, shutdown: Shutdown | None) -> None:
        """Stop the timer and the shutdown callback: nothing may stop us now."""
        if self._ticker is not None:
            self._ticker.discard(self._on_timer)
            self._ticker = None
        if shutdown is not None:
            shutdown.unsubscribe(self._on_shutdown)
        if self._cancelled:  # the source swallowed our cancellation
            self._take_back_cancel()

    # The timer and the heartbeat -----------------------------------------------------

    def _on_timer(self) -> None:
        busy, writing = self._batch.doing()
        action = self._dog.look(busy, writing=writing)
        if action is Action.DROP:
            if self._ticker is not None:
                self._ticker.discard(self._on_timer)
                self._ticker = None
            logger.warning("dropping a reader that took nothing for %ss", self._send_timeout)
            self._stop("slow")
            return
        if action is Action.PING and self._reason is None:
            self._batch.offer(PING)
