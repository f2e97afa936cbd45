"""One event stream being sent: the machinery behind :class:`EventStreamResponse`.

The response's own task is the *producer*. It pulls from the source, writes,
and waits on the future the source waits on, exactly as a plain ``await``
would: a token costs one task wake-up, nothing more. Everything else arrives
by callback, so an idle stream holds one task, one timer and a few small
objects (memory per idle connection is a measured claim, docs/benchmarks.md):

* The reader leaving: ``receive()`` returns ``http.disconnect``. When
  ``receive`` is uvicorn's own, which awaits a plain ``asyncio.Event``, its
  await is driven by hand from done-callbacks (``Step`` in ``_pull.py``); any
  other (a middleware's wrapper may run anyio cancel scopes) is awaited in a
  small listener task.
* Heartbeats and slow readers: one timer (``Watchdog`` decides). A heartbeat
  is written by a short task that exists only while it writes.
* Server shutdown: a callback from ``ShutdownMiddleware``.

Any of them stops the producer by setting a reason and cancelling it, but only
while it sits in one of its own awaits (the source, a write, a yield), so a
cancellation never lands in the cleanup. Task.cancel() also cancels the future
the source waits on, which is what closing the source needs anyway; with
``on_disconnect="drain"`` a leaving reader never cancels a waiting source.

Batching: everything the source has ready goes out in one ``send``, up to
``_BATCH_BYTES`` or ``_BATCH_SECONDS`` of work, then the task yields to the
event loop. uvicorn's ``send`` returns without suspending while the socket
takes the bytes, so without that yield a fast source would starve every other
request of the worker, and a source that never awaits would never let the
reader's disconnect in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Literal

from starlette.types import Message, Receive, Send

from ..sse import Event, comment, encode
from ._items import encode_item
from ._pull import END, PENDING, Pull, Source, Step, open_pull
from ._shutdown import Shutdown
from ._watchdog import Action, Watchdog

__all__ = ["ERROR_EVENT", "Stream"]

logger = logging.getLogger("askstream")

_BATCH_BYTES = 64 * 1024
_BATCH_SECONDS = 0.002
_DRAIN_YIELD_EVERY = 256
_BATCH_CHECK_EVERY = 16  # ready events between looks at the clock

PING = comment("ping")
ERROR_EVENT = encode(
    Event(json.dumps({"code": 500, "message": "The event source failed."}), event="error")
)

Reason = Literal["error", "disconnect", "shutdown", "slow"]


def _steppable(receive: Receive) -> bool:
    """Whether ``receive()`` may be driven by hand: uvicorn's, a plain ``Event.wait()``."""
    owner = getattr(receive, "__self__", None)
    return type(owner).__module__.startswith("uvicorn.protocols.http.")


class Stream:
    """Sends one source's events over one started ASGI response, then ends it."""

    __slots__ = (
        "_cancelled",
        "_dog",
        "_listener",
        "_loop",
        "_on_disconnect",
        "_pinger",
        "_reader",
        "_reason",
        "_receive",
        "_send",
        "_send_timeout",
        "_stoppable",
        "_task",
        "_timer",
        "_waiting_on_source",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        ping: float | None,
        send_timeout: float | None,
        on_disconnect: Literal["close", "drain"],
    ) -> None:
        self._receive = receive
        self._send = send
        self._send_timeout = send_timeout
        self._on_disconnect = on_disconnect
        self._loop = asyncio.get_running_loop()
        self._dog = Watchdog(ping=ping, send_timeout=send_timeout, now=self._loop.time())
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._reason: Reason | None = None
        self._stoppable = False  # the producer sits in one of its own awaits
        self._waiting_on_source = False
        self._cancelled = False  # we cancelled the producer and have not taken it back
        self._reader: Step | None = None  # receive(), driven by hand
        self._listener: asyncio.Task[None] | None = None  # or awaited in a task
        self._pinger: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def run(
        self, source: Source, last_event_id: str | None, head: bytes, shutdown: Shutdown | None
    ) -> None:
        """Stream until the source ends or something stops it."""
        if shutdown is not None and not shutdown.subscribe(self._on_shutdown):
            self._reason = "shutdown"
        pull: Pull | None = None
        try:
            pull = open_pull(source, last_event_id)
            if _steppable(self._receive):
                self._listen()
            else:
                self._listener = self._loop.create_task(self._listen_in_task())
            self._arm()
            await self._produce(pull, head)
        except asyncio.CancelledError:
            if not self._take_back_cancel():
                raise
        except Exception:
            if self._reason is None:
                logger.exception("event source failed; the stream ends with an error event")
                self._reason = "error"
        finally:
            self._quiet(shutdown)
            if pull is None:
                pass
            elif self._reason in ("disconnect", "slow") and self._on_disconnect == "drain":
                await self._drain(pull)
            else:
                await pull.aclose()
        if self._reason in (None, "error", "shutdown"):
            await self._finish(ERROR_EVENT if self._reason == "error" else b"")
        # "disconnect": nobody to tell. "slow": returning without finishing
        # makes the server close the connection (ASGI has no abort message).

    def _quiet(self, shutdown: Shutdown | None) -> None:
        """Stop every timer, callback and helper task: nothing may stop us any more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reader is not None:
            if self._reader.blocker is not None:
                self._reader.blocker.remove_done_callback(self._listen)
            self._reader.close()
            self._reader = None
        for helper in (self._listener, self._pinger):
            if helper is not None:
                helper.cancel()
        if shutdown is not None:
            shutdown.unsubscribe(self._on_shutdown)
        if self._cancelled:  # the source swallowed our cancellation
            self._take_back_cancel()

    # Stopping ---------------------------------------------------------------------

    def _stop(self, reason: Reason) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        if self._pinger is not None:
            self._pinger.cancel()
        if self._waiting_on_source and self._on_disconnect == "drain" and reason != "shutdown":
            return  # the source must not be cancelled; the producer stops after this item
        if self._stoppable and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    def _take_back_cancel(self) -> bool:
        """After a cancellation: whether it was only ours (then it is taken back)."""
        if not self._cancelled:
            return False
        self._cancelled = False
        return self._task.uncancel() == 0

    def _on_shutdown(self) -> None:
        self._stop("shutdown")

    # The reader ---------------------------------------------------------------------

    def _listen(self, _: object = None) -> None:
        """Drive ``receive()`` on as far as it goes (first call in the task, then callbacks)."""
        step = self._reader
        try:
            while True:
                if step is None:
                    step = Step(self._receive())
                else:
                    step.resume()
                if not step.done:
                    break
                message: Message = step.value  # type: ignore[assignment]
                step = None
                if message["type"] == "http.disconnect":
                    self._reader = None
                    self._stop("disconnect")
                    return
                # A request body chunk nobody read: listen on.
        except Exception:
            logger.exception("receive() failed; treating the reader as gone")
            self._reader = None
            self._stop("disconnect")
            return
        self._reader = step
        if step.blocker is None:
            self._loop.call_soon(self._listen)
        else:
            step.blocker.add_done_callback(self._listen)

    async def _listen_in_task(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._stop("disconnect")

    # The timer and the heartbeat -----------------------------------------------------

    def _arm(self) -> None:
        when = self._dog.next_wake(self._loop.time())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if when is None else self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        action = self._dog.due(self._loop.time())
        if action is Action.DROP:
            logger.warning("dropping a reader that took nothing for %ss", self._send_timeout)
            self._stop("slow")
        elif action is Action.PING and self._pinger is None and self._reason is None:
            self._pinger = self._loop.create_task(self._ping())
        else:
            self._arm()

    async def _ping(self) -> None:
        dog, loop = self._dog, self._loop
        dog.sending(loop.time())
        self._arm()  # a heartbeat that stalls is a slow reader too
        try:
            await self._send({"type": "http.response.body", "body": PING, "more_body": True})
        except Exception:  # OSError (ASGI 2.4) or anything the server raised
            self._pinger = None
            self._stop("disconnect")
            return
        dog.sent(loop.time())
        self._pinger = None
        self._arm()

    # The producer -------------------------------------------------------------------

    async def _produce(self, pull: Pull, head: bytes) -> None:
        # The hot path: each event passes here once. One flat loop, few calls,
        # the write inlined (_write_again is its rare slow path); measured with
        # bench/bench_http.py (server CPU per event).
        loop, dog, send = self._loop, self._dog, self._send
        ready, resume = pull.ready, pull.resume
        chunks: list[bytes] = [head] if head else []
        size = len(head)
        batch_end = 0.0  # when a long batch must go out; 0: not timed yet
        self._stoppable = True
        try:
            while self._reason is None:
                item = ready()
                if item is PENDING:
                    if chunks:
                        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                        chunks.clear()
                        size = 0
                        if self._pinger is not None:  # one writer at a time
                            await asyncio.wait([self._pinger])
                        dog.sending_since = started = loop.time()
                        try:
                            await send(
                                {"type": "http.response.body", "body": body, "more_body": True}
                            )
                        except asyncio.CancelledError as exc:
                            if self._cancelled:
                                raise
                            await self._write_again(body, pull, exc)
                        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
                            self._reason = self._reason or "disconnect"
                        dog.sending_since = None
                        dog.last_write = started
                    while item is PENDING and self._reason is None:
                        blocker = pull.blocker
                        self._waiting_on_source = True
                        try:
                            if blocker is None:
                                await asyncio.sleep(0)  # the source yielded to the loop bare
                            else:
                                # What the source's own await does: the task sleeps on
                                # the future; the source reads its outcome on resume().
                                await blocker
                        except asyncio.CancelledError as exc:
                            self._waiting_on_source = False
                            if self._cancelled:
                                raise
                            # Not ours: had the task been awaiting the source, the
                            # source would have got it. So it does.
                            item = pull.throw(exc)
                            continue
                        except Exception:  # noqa: S110 - the source's own await raises it
                            pass
                        self._waiting_on_source = False
                        item = resume()
                    batch_end = 0.0
                if item is END or item is PENDING or self._reason is not None:
                    break
                if type(item) is str and "\n" not in item and "\r" not in item:
                    chunk = ("data: " + item + "\n\n").encode()  # encode_item's hot path
                else:
                    chunk = encode_item(item)
                chunks.append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES or not len(chunks) % _BATCH_CHECK_EVERY:
                    now = loop.time()
                    if not batch_end:
                        batch_end = now + _BATCH_SECONDS
                    if size >= _BATCH_BYTES or now >= batch_end:
                        await self._write(b"".join(chunks), None)
                        chunks.clear()
                        size = 0
                        await asyncio.sleep(0)  # let the rest of the worker run
                        batch_end = 0.0
        except Exception:
            # The source failed: what it yielded before still goes out, first.
            if chunks and self._reason is None:
                await self._write(b"".join(chunks), None)
            raise
        else:
            if chunks and self._reason is None:
                await self._write(b"".join(chunks), None)
        finally:
            self._stoppable = False
            self._waiting_on_source = False

    async def _write(self, body: bytes, waiting: Pull | None) -> None:
        """Send ``body``; ``waiting`` is the source if it is mid-step meanwhile."""
        if self._pinger is not None:  # one writer at a time
            await asyncio.wait([self._pinger])
        dog = self._dog
        dog.sending_since = started = self._loop.time()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except asyncio.CancelledError as exc:
            if waiting is None or self._cancelled:
                raise
            await self._write_again(body, waiting, exc)
        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
            self._reason = self._reason or "disconnect"
        dog.sending_since = None
        dog.last_write = started

    async def _write_again(self, body: bytes, waiting: Pull, exc: asyncio.CancelledError) -> None:
        """A cancellation that was not ours cut a write while the source was mid-step.

        It was meant for the task's real wait, the source's (its own timeout,
        say): the source gets it, may take it and go on, and the write is made
        again. If the source lets it through, so do we.
        """
        waiting.redeliver(exc)
        await self._write(body, waiting)

    async def _drain(self, pull: Pull) -> None:
        # The reader left and the caller asked for the source to run to its end.
        count = 0
        try:
            while True:
                item = pull.ready()
                while item is PENDING:
                    blocker = pull.blocker
                    if blocker is None:
                        await asyncio.sleep(0)
                    else:
                        await asyncio.wait([blocker])
                    item = pull.resume()
                if item is END:
                    return
                count += 1
                if count % _DRAIN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except Exception:
            logger.exception("event source failed after its reader left")

    async def _finish(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": False}
        # A reader that takes nothing more: the server closes the connection.
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(self._send_timeout):
                await self._send(message)
