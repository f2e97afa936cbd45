"""One event stream being sent: the machinery behind :class:`EventStreamResponse`.

Two tasks per stream, as a bare ``async for`` + ``send`` loop has. The
response's own task (``Stream.run``) sends the start, starts the *producer*,
then only awaits ``receive()`` (``http.disconnect``: the reader left). It sits
deep under the server's and the framework's frames, and a wake-up resumes every
frame of a task, so the events never pass through it. The producer task, one
frame deep, pulls from the source, writes, and waits on what the source waits
on as a plain ``await`` would; it also closes the source (so its ``finally``
and cancel scopes run in the task that ran it) and ends the body, and wakes the
response's task by cancelling its ``receive()`` when it ends first.

Everything else arrives by callback: a timer looks now and then at what the
producer's coroutine awaits (``_doing``; ``Watchdog`` decides on heartbeats and
slow readers), so an event pays nothing for them; a heartbeat is written by a
short task that lives while it writes; ``ShutdownMiddleware`` calls back. Any
of them stops the producer by setting a reason and cancelling it, but only in
one of its own awaits (the source, a write, a yield), never in the cleanup.
Task.cancel() also cancels the future the source waits on, which closing the
source needs anyway; with ``on_disconnect="drain"`` a leaving reader never
cancels a waiting source.

The hot path, ``_produce_async``, serves async generators (nearly every source):
the step of ``anext()`` runs by hand only to the source's first suspension,
which tells a ready item from one to come. If the source waits, what the
producer holds is written, and the rest of the step is one plain ``await`` of
the step, so whatever it waits on (its outcome, a cancellation) reaches the
source exactly as in a task of its own. What does not fit (a write cut
mid-step, a wait on something that is not a future) goes to ``_careful``, which
hands the step to the ``Pull``'s exact, slower path; other sources go through
``_produce``, which asks the ``Pull`` for every item.

Batching: all the source has ready goes out in one ``send``, up to
``_BATCH_BYTES`` or ``_BATCH_SECONDS`` of work; then the producer yields to the
loop. uvicorn's ``send`` returns without suspending while the socket takes the
bytes, so without that yield a fast source would starve the rest of the worker,
and a source that never awaits would never let the reader's disconnect in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Literal, cast

from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Send

from ..sse import Event, comment, encode
from ._broadcast import Join
from ._items import encode_item
from ._pull import END, PENDING, AsyncGenPull, AsyncPull, Pull, Source, open_pull
from ._shutdown import Shutdown
from ._watchdog import Action, Watchdog

__all__ = ["ERROR_EVENT", "Stream"]

logger = logging.getLogger("askstream")

_BATCH_BYTES = 64 * 1024
_BATCH_SECONDS = 0.002
_BATCH_CHECK_EVERY = 16  # ready events between looks at the clock
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
        "_busy",
        "_cancelled",
        "_cursor",
        "_dog",
        "_listening",
        "_main",
        "_on_disconnect",
        "_parked",
        "_pinger",
        "_reason",
        "_send",
        "_send_timeout",
        "_stoppable",
        "_task",
        "_timer",
    )

    def __init__(
        self,
        send: Send,
        *,
        ping: float | None,
        send_timeout: float | None,
        on_disconnect: Literal["close", "drain"],
    ) -> None:
        self._send = send
        self._send_timeout = send_timeout
        self._on_disconnect = on_disconnect
        self._dog = Watchdog(ping=ping, send_timeout=send_timeout)
        self._reason: Reason | None = None
        self._main: asyncio.Task[Any] | None = None  # the response's own task
        self._task: asyncio.Task[None] | None = None  # the producer
        self._listening = False  # the response's task awaits receive()
        self._stoppable = False  # the producer sits in one of its own awaits
        self._cancelled = False  # we cancelled the producer and have not taken it back
        # What the producer's helpers are busy with (the hot path is read from
        # its coroutine instead, see _doing): the message they write (a dict)
        # or what they wait on for the source.
        self._busy: object = None
        self._pinger: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Joined to a broadcast (see _park): what the producer awaits until it
        # is let go, and the position of the last item the stream was given.
        self._parked: asyncio.Future[object] | None = None
        self._cursor = 0

    async def run(
        self,
        start: Message,
        receive: Receive,
        source: Source,
        *,
        last_event_id: str | None,
        head: bytes,
        shutdown: Shutdown | None,
        background: BackgroundTask | None,
    ) -> None:
        """The whole response: the start, the stream until it ends or is stopped, the background."""
        main = self._main = asyncio.current_task()
        assert main is not None
        await self._send(start)
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
            if type(pull) is AsyncGenPull:
                produce = self._produce_async(pull, head, shutdown)
            else:
                produce = self._produce(pull, head, shutdown)
            loop = asyncio.get_running_loop()
            producer = self._task = loop.create_task(produce, name=_PRODUCER_NAME)
            if self._dog.every is not None:
                self._timer = loop.call_later(self._dog.every, self._on_timer)
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

    def _quiet(self, shutdown: Shutdown | None) -> None:
        """Stop the timer, the heartbeat and the shutdown callback: nothing may stop us now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pinger is not None:
            self._pinger.cancel()
        if shutdown is not None:
            shutdown.unsubscribe(self._on_shutdown)
        if self._cancelled:  # the source swallowed our cancellation
            self._take_back_cancel()

    async def _end(self, pull: Pull, shutdown: Shutdown | None, pending: bytes) -> None:
        """The producer's last act: close the source and end the body (or not)."""
        self._stoppable = False
        if self._listening:  # the response's task still listens: wake it, it is over
            self._listening = False
            assert self._main is not None
            self._main.cancel()
        self._quiet(shutdown)
        if self._reason in ("disconnect", "slow") and self._on_disconnect == "drain":
            await pull.drain()
        else:
            await pull.aclose()
        if self._reason == "shutdown":
            # The server stops: the last event, if the middleware has one, says so.
            await self._finish(b"" if shutdown is None else shutdown.final)
        elif self._reason in (None, "error"):
            # An error: what the source yielded before goes out, then the error event.
            await self._finish(pending + ERROR_EVENT if self._reason == "error" else b"")
        # "disconnect": nobody to tell. "slow": returning without finishing
        # makes the server close the connection (ASGI has no abort message).
        # "cancelled": the response's task is being cancelled; it says no more.

    def _failed(self) -> bool:
        """The source failed (the exception is being handled): whether that ends the stream."""
        if self._reason is not None:
            return False  # it was being stopped anyway
        logger.exception("event source failed; the stream ends with an error event")
        self._reason = "error"
        return True

    # Stopping ---------------------------------------------------------------------

    def _stop(self, reason: Reason) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        if self._pinger is not None:
            self._pinger.cancel()
        parked = self._parked
        if parked is not None and not parked.done():
            # Joined to a broadcast: the source is between two items, nothing to cancel.
            parked.set_result(None)
            return
        if (
            self._on_disconnect == "drain"
            and reason in ("disconnect", "slow")
            and not self._doing()[1]  # not writing: waiting on the source
        ):
            return  # the source must not be cancelled; the producer stops after this item
        if self._stoppable and not self._cancelled:
            assert self._task is not None
            self._cancelled = True
            self._task.cancel()

    def _take_back_cancel(self) -> bool:
        """After a cancellation: whether it was only ours (then it is taken back)."""
        if not self._cancelled:
            return False
        self._cancelled = False
        assert self._task is not None
        return self._task.uncancel() == 0

    def _on_shutdown(self) -> None:
        self._stop("shutdown")

    # The timer and the heartbeat -----------------------------------------------------

    def _on_timer(self) -> None:
        pinger = self._pinger
        if pinger is not None:  # a heartbeat is being written: that is the write to watch
            action = self._dog.look(pinger, writing=True)
        else:
            busy, writing = self._doing()
            action = self._dog.look(busy, writing=writing)
        if action is Action.DROP:
            self._timer = None
            logger.warning("dropping a reader that took nothing for %ss", self._send_timeout)
            self._stop("slow")
            return
        if action is Action.PING and self._reason is None:
            self._pinger = asyncio.get_running_loop().create_task(self._ping())
        every = self._dog.every
        assert every is not None  # a timer runs only when there is something to watch
        self._timer = asyncio.get_running_loop().call_later(every, self._on_timer)

    def _doing(self) -> tuple[object, bool]:
        """What the producer is busy with now, and whether that is a write.

        The hot path keeps no account of it; what its coroutine awaits
        (``cr_await``, the view ``inspect`` documents) tells: a step of the
        source (an async generator's ``asend``) is a wait on the source, one of
        our helpers keeps ``_busy`` for itself, anything else is the hot path's
        write (or its wait for a heartbeat to be written). Asked only by the
        timer and when stopping, never per event.
        """
        awaited = None if self._task is None else getattr(self._task.get_coro(), "cr_await", None)
        if type(awaited).__name__ == "async_generator_asend":
            return awaited, False
        if awaited is None or getattr(awaited, "cr_code", None) in _ACCOUNTED:
            busy = self._busy
            return busy, type(busy) is dict
        return awaited, True

    async def _ping(self) -> None:
        try:
            await self._send({"type": "http.response.body", "body": PING, "more_body": True})
        except Exception:  # OSError (ASGI 2.4) or anything the server raised
            self._pinger = None
            self._stop("disconnect")
            return
        self._pinger = None

    # The producer: async generators -------------------------------------------------

    async def _produce_async(
        self, pull: AsyncGenPull, body: bytes, shutdown: Shutdown | None
    ) -> None:
        # The producer task's coroutine, and the hot path: each event of an
        # async generator passes here once, so it is one flat loop over locals
        # that touches `self` only to read two flags (one cache line; a store
        # per event to a stream object gone cold cost measurably more). Per
        # event: one hand step that stops where the source waits, one write,
        # one plain await. Measured with bench/bench_http.py (server CPU per
        # event at 1,000 streams x 20 events/s).
        send = self._send
        source: Any = pull.iterator  # an async generator
        pending = b""
        try:
            self._stoppable = True
            while self._reason is None:
                step = anext(source)
                try:
                    waits_on = step.send(None)
                except StopIteration as ready:
                    held, body = body, b""
                    gathered = await self._gather(pull, held, ready.value)
                    if gathered is None:
                        return
                    body, step, waits_on = gathered
                except StopAsyncIteration:
                    break
                # From here until the step ends only `step` knows where the
                # source is: every way out that leaves it mid-step goes
                # through _careful, which hands it to the pull to close.
                try:
                    if body:  # the source waits: what we hold goes out first
                        if self._pinger is not None:  # one writer at a time
                            await asyncio.wait([self._pinger])
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        body = b""
                    # The source's await yielded the future and took it, as
                    # Task.__step would. Untaken, the step resumed yields it
                    # again: the rest of the step is one plain await, and the
                    # future's outcome (a cancellation, too) reaches the source
                    # exactly as in a task that awaited it.
                    waits_on._asyncio_future_blocking = False
                except BaseException as exc:
                    # The write was cut (the body is still held), or the source
                    # waits on something other than a future (a bare yield).
                    held, body = body, b""
                    item = await self._careful(pull, step, waits_on, held, exc if held else None)
                    if item is END or item is PENDING:
                        break
                else:
                    try:
                        item = await step
                    except StopAsyncIteration:
                        break
                if type(item) is str and "\n" not in item and "\r" not in item:
                    body = f"data: {item}\n\n".encode()  # encode_item's hot path
                elif type(item) is Join:
                    await self._park(item, b"")  # what came before is written
                else:
                    body = encode_item(item)
            if body and self._reason is None:
                await self._write(body, None)
        except asyncio.CancelledError:
            if not self._take_back_cancel():
                raise
        except Exception:
            if self._failed():
                pending = body
        finally:
            await self._end(pull, shutdown, pending)

    async def _gather(
        self, pull: AsyncGenPull, body: bytes, item: object
    ) -> tuple[bytes, Any, Any] | None:
        """The source had ``item`` ready at once: take all it has ready, in batches.

        Full batches go out as they fill, each followed by a yield to the event
        loop. Once the source must wait, returns what is left to write, the step
        under way and what it waits on. ``None``: the source ended (everything
        is written) or the stream was stopped.
        """
        source: Any = pull.iterator
        chunks = [body] if body else []
        size = len(body)
        batch_end = 0.0  # when a long batch must go out; 0: not timed yet
        try:
            while True:
                if type(item) is Join:
                    body = b"".join(chunks)
                    chunks.clear()
                    size = 0
                    batch_end = 0.0
                    await self._park(item, body)
                    if self._reason is not None:
                        return None
                else:
                    if type(item) is str and "\n" not in item and "\r" not in item:
                        chunk = f"data: {item}\n\n".encode()  # encode_item's hot path
                    else:
                        chunk = encode_item(item)
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= _BATCH_BYTES or not len(chunks) % _BATCH_CHECK_EVERY:
                        now = asyncio.get_running_loop().time()
                        if not batch_end:
                            batch_end = now + _BATCH_SECONDS
                        if size >= _BATCH_BYTES or now >= batch_end:
                            await self._write(b"".join(chunks), None)
                            chunks.clear()
                            size = 0
                            await asyncio.sleep(0)  # let the rest of the worker run
                            if self._reason is not None:
                                return None
                            batch_end = 0.0
                step = anext(source)
                try:
                    waits_on = step.send(None)
                except StopIteration as ready:
                    item = ready.value
                    continue
                except StopAsyncIteration:
                    break
                return b"".join(chunks), step, waits_on
        except Exception:
            # The source failed: what it yielded before still goes out, first.
            if chunks and self._reason is None:
                await self._write(b"".join(chunks), None)
            raise
        if chunks and self._reason is None:
            await self._write(b"".join(chunks), None)
        return None

    async def _careful(
        self,
        pull: AsyncPull,
        step: Any,
        waits_on: Any,
        body: bytes,
        exc: BaseException | None,
    ) -> object:
        """Finish a step the hot path could not: the pull takes it over.

        The source is mid-step, suspended where it yielded ``waits_on``, and
        ``body`` is still to be written. ``exc`` cut that write; ``None``:
        ``waits_on`` is not a future (a bare yield), nothing went wrong.
        Returns the step's item, ``END``, or ``PENDING`` if the stream stops
        meanwhile (the pull then holds the step, so that closing or draining
        finds it).
        """
        item = pull.adopt(step, waits_on)
        if isinstance(exc, asyncio.CancelledError):
            if self._cancelled:
                raise exc
            try:
                pull.redeliver(exc)  # not ours: meant for the source's wait (see _write)
            except Exception:
                await self._write(body, None)  # what it yielded before goes out first
                raise
        elif isinstance(exc, OSError):  # ASGI 2.4 servers raise it once the reader is gone
            self._reason = self._reason or "disconnect"
            return PENDING
        elif exc is not None:
            raise exc
        if body:
            await self._write(body, pull)
            if item is PENDING:  # a redelivered cancellation may have ended the step
                item = pull.ready()
        return await self._wait_source(pull, item)

    # The producer: any source ------------------------------------------------------

    async def _produce(self, pull: Pull, head: bytes, shutdown: Shutdown | None) -> None:
        # The producer task's coroutine for any source but an async generator:
        # the pull tells ready items from ones to come (a sync source runs in a
        # worker thread, a list inline).
        chunks: list[bytes] = [head] if head else []
        size = len(head)
        batch_end = 0.0  # when a long batch must go out; 0: not timed yet
        pending = b""
        try:
            self._stoppable = True
            while self._reason is None:
                item = pull.ready()
                if item is PENDING:
                    if chunks:
                        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                        chunks.clear()
                        size = 0
                        await self._write(body, pull)
                        item = pull.ready()  # a redelivered cancellation may have ended the step
                    item = await self._wait_source(pull, item)
                    batch_end = 0.0
                if item is END or item is PENDING or self._reason is not None:
                    break
                if type(item) is Join:
                    body = b"".join(chunks)
                    chunks.clear()
                    size = 0
                    batch_end = 0.0
                    await self._park(item, body)
                    continue
                chunk = encode_item(item)
                chunks.append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES or not len(chunks) % _BATCH_CHECK_EVERY:
                    now = asyncio.get_running_loop().time()
                    if not batch_end:
                        batch_end = now + _BATCH_SECONDS
                    if size >= _BATCH_BYTES or now >= batch_end:
                        await self._write(b"".join(chunks), None)
                        chunks.clear()
                        size = 0
                        await asyncio.sleep(0)  # let the rest of the worker run
                        batch_end = 0.0
            if chunks and self._reason is None:
                await self._write(b"".join(chunks), None)
        except asyncio.CancelledError:
            if not self._take_back_cancel():
                raise
        except Exception:
            if self._failed():
                pending = b"".join(chunks)
        finally:
            await self._end(pull, shutdown, pending)

    async def _wait_source(self, pull: Pull, item: object) -> object:
        """Until the step under way gives its item (``PENDING``: stopped meanwhile)."""
        while item is PENDING and self._reason is None:
            blocker = pull.blocker
            self._busy = pull if blocker is None else blocker
            try:
                if blocker is None:
                    await asyncio.sleep(0)  # the source yielded to the loop bare
                else:
                    # What the source's own await does: the task sleeps on the
                    # future; the source reads its outcome on resume().
                    await blocker
            except asyncio.CancelledError as exc:
                if self._cancelled:
                    raise
                # Not ours: had the task been awaiting the source, the source
                # would have got it. So it does.
                item = pull.throw(exc)
                continue
            except Exception:  # noqa: S110 - the source's own await raises it
                pass
            item = pull.resume()
        return item

    async def _write(self, body: bytes, waiting: Pull | None) -> None:
        """Send ``body``; ``waiting`` is the source if it is mid-step meanwhile."""
        if self._pinger is not None:  # one writer at a time
            await asyncio.wait([self._pinger])
        message = {"type": "http.response.body", "body": body, "more_body": True}
        self._busy = message
        try:
            await self._send(message)
        except asyncio.CancelledError as exc:
            if waiting is None or self._cancelled:
                raise
            # Not ours, so it was meant for the task's real wait, the source's
            # (its own timeout, say): the source gets it, may take it and go
            # on, and the write is made again. If it lets it through, so do we.
            waiting.redeliver(exc)
            await self._write(body, waiting)
        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
            self._reason = self._reason or "disconnect"

    # Joined to a broadcast ----------------------------------------------------------

    async def _park(self, join: Join, body: bytes) -> None:
        """The source yielded ``join``: write ``body``, then let the broadcast write.

        The producer waits here until the broadcast lets go (see ``_offer``) or
        the stream stops, then sets ``join.position`` for the source.
        """
        if body:
            await self._write(body, None)
        broadcast = join.broadcast
        if self._reason is not None or not broadcast._admit(self, join.position):
            return  # stopping, or the broadcast is past the source: it goes on alone
        self._cursor = join.position
        parked = self._parked = asyncio.get_running_loop().create_future()
        self._busy = parked  # for the watchdog: a wait, not a write
        try:
            outcome = await parked
        finally:
            self._parked = None
            broadcast._leave(self)
            join.position = self._cursor
        if outcome is None:
            return
        try:
            if isinstance(outcome, BaseException):
                raise outcome  # the broadcast's write failed
            # A write the broadcast began and that has to wait: finished here,
            # as a write of this stream's own (the watchdog sees _busy, a message).
            if type(outcome) is tuple:
                write, waits_on = cast("tuple[Coroutine[Any, Any, None], object]", outcome)
                await _rest_of(write, waits_on)
            else:
                await cast("Awaitable[None]", outcome)
        except OSError:  # ASGI 2.4 servers raise it once the reader is gone
            self._reason = self._reason or "disconnect"

    def _offer(self, frame: bytes, position: int) -> bool:
        """The broadcast publishes ``frame``: write it now if that needs no wait.

        Called in the publisher's task. ``False``: the stream lets go (it is
        stopping, a heartbeat is being written, or the write must wait: then
        the producer finishes it) and must be dropped from the broadcast.
        """
        parked = self._parked
        if parked is None or parked.done():
            return False
        if position <= self._cursor:  # joined ahead of the broadcast: it has this one
            return True
        outcome: object = None  # let go, nothing to finish: a heartbeat is being written
        if self._pinger is None:  # one writer at a time
            message = {"type": "http.response.body", "body": frame, "more_body": True}
            self._cursor = position
            self._busy = message  # a write, for the watchdog, until it is done
            try:
                write: Any = self._send(message)
                if type(write) is not types.CoroutineType:
                    outcome = write  # some other awaitable: the producer awaits it
                else:
                    # uvicorn's send returns without suspending while the socket
                    # takes the bytes: the common case, one call, no task woken.
                    outcome = (write, write.send(None))
            except StopIteration:
                self._busy = frame  # progress, for the watchdog
                return True
            except Exception as exc:  # one reader's failure is its own, not the publisher's
                outcome = exc
        parked.set_result(outcome)
        return False

    def _let_go(self, outcome: object) -> None:
        """The broadcast closes: the producer goes back to its source."""
        parked = self._parked
        if parked is not None and not parked.done():
            parked.set_result(outcome)

    async def _finish(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": False}
        # A reader that takes nothing more: the server closes the connection.
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(self._send_timeout):
                await self._send(message)


@types.coroutine
def _rest_of(
    coroutine: Coroutine[Any, Any, None], waits_on: object
) -> Generator[object, Any, None]:
    """Await the rest of ``coroutine``, begun by hand and suspended where it
    yielded ``waits_on``: what ``await`` would have done from there on.

    ``waits_on`` goes to the awaiting task untouched, as the coroutine yielded
    it (a future still marked as awaited); the task's outcome for it, a value
    or an exception, goes back in. Resuming the coroutine first would not do:
    a future awaited by nobody refuses to be resumed before it is done.
    """
    while True:
        try:
            sent = yield waits_on
        except BaseException as exc:
            try:
                waits_on = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waits_on = coroutine.send(sent)
            except StopIteration:
                return


# The producer's helpers, which keep Stream._busy themselves (see Stream._doing).
_ACCOUNTED = frozenset(
    method.__code__
    for method in (
        Stream._park,
        Stream._gather,
        Stream._careful,
        Stream._wait_source,
        Stream._write,
        Stream._end,
    )
)
