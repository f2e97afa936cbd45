"""Pulling items from a response's source, telling ready items from ones to come.

The response packs every item its source has *ready* into one ``send`` and must
send what it holds *before* it waits for the source, or a token would sit in a
buffer while the source waits for the next one. ``await anext(source)`` cannot
say which of the two happened, so an async source is stepped by hand, as
``asyncio.Task`` steps a coroutine: :meth:`AsyncPull.ready` runs the source up
to its first suspension. If it produced an item without suspending, the item is
ready. Otherwise it returns ``PENDING`` and :attr:`Pull.blocker` is the future
the source waits on; once that is done, :meth:`Pull.resume` continues the step
exactly as the task would have (``Task.__wakeup``: the future's exception, if
any, is thrown in).

An async *generator* gets :class:`AsyncGenPull`: what ``anext()`` returns for it
is its own awaitable, so the response's hot path steps it by hand only to its
first suspension and then simply awaits the rest (see ``_stream.py``); a step
it cannot finish that way it hands over with :meth:`AsyncPull.adopt`.

A sync source is iterated in a worker thread, one item per hop, as Starlette's
``StreamingResponse`` does: it may block. Lists and tuples are iterated inline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import AsyncGeneratorType
from typing import Any, Final, TypeAlias

import anyio.to_thread

from ._items import Item

__all__ = [
    "END",
    "PENDING",
    "AsyncGenPull",
    "AsyncPull",
    "Pull",
    "SequencePull",
    "Source",
    "SyncPull",
    "open_pull",
]

logger = logging.getLogger("askstream")


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


PENDING: Final = _Marker("PENDING")  # the source must wait: send what you hold, then wait
END: Final = _Marker("END")  # the source is exhausted

_Gen = Generator[Any, None, object]

Items: TypeAlias = AsyncIterable[Item] | Iterable[Item]
Source: TypeAlias = Items | Callable[[str | None], Items]
"""What :class:`EventStreamResponse` streams: items, or a function of Last-Event-ID to items."""


class Pull:
    """What the response needs from a source, whatever its kind.

    ``blocker`` (a plain attribute: it is read once per event): after
    ``PENDING``, what the source waits on (``None``: a bare yield).
    """

    __slots__ = ("blocker",)

    def __init__(self) -> None:
        self.blocker: asyncio.Future[Any] | None = None

    def ready(self) -> object:
        """The next item if the source has it at hand; else ``PENDING`` or ``END``."""
        raise NotImplementedError

    def resume(self) -> object:
        """After the blocker is done: the item, ``PENDING`` again, or ``END``."""
        raise NotImplementedError

    def throw(self, exc: BaseException) -> object:
        """Throw ``exc`` into the waiting source; then as :meth:`resume`."""
        raise exc

    def redeliver(self, exc: BaseException) -> None:
        """As :meth:`throw`, keeping the outcome for the next :meth:`ready`."""
        raise exc

    async def aclose(self) -> None:
        """Close the source so that its ``finally`` blocks run."""

    async def drain(self) -> None:
        """Pull the source to its end, throwing the items away (an error is logged).

        For a source whose work must complete after its reader left.
        """
        count = 0
        try:
            while True:
                item = self.ready()
                while item is PENDING:
                    blocker = self.blocker
                    if blocker is None:
                        await asyncio.sleep(0)
                    else:
                        await asyncio.wait([blocker])
                    item = self.resume()
                if item is END:
                    return
                count += 1
                if count % _DRAIN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a source that never waits must not hog the loop
        except Exception:
            logger.exception("event source failed after its reader left")


class AsyncPull(Pull):
    """Steps an async iterator by hand (see the module docstring).

    The step is kept flat (no ``Step`` object): this runs twice per event.
    """

    __slots__ = ("_gen", "_outcome", "iterator")

    def __init__(self, iterator: AsyncIterator[object]) -> None:
        super().__init__()
        self.iterator = iterator
        self._gen: _Gen | None = None  # the step under way
        self._outcome: object = PENDING  # what a redelivered exception produced

    def ready(self) -> object:
        if self._gen is not None:
            return PENDING
        if self._outcome is not PENDING:
            outcome, self._outcome = self._outcome, PENDING
            return outcome
        gen: _Gen = anext(self.iterator).__await__()
        try:
            yielded = gen.send(None)
        except StopIteration as stop:
            return stop.value
        except StopAsyncIteration:
            return END
        self._gen = gen
        return self._waits_on(yielded)

    def adopt(self, step: Any, yielded: Any) -> object:
        """Take over a step someone ran by hand until it yielded ``yielded``.

        ``step`` is the ``__await__`` iterator of an ``anext()`` of this source
        (an async generator's ``anext()`` is its own). Then as :meth:`ready`:
        ``PENDING`` with :attr:`blocker` set, or what the step gave if the
        yield was not a future and the ``RuntimeError`` thrown in for it ended
        the step.
        """
        self._gen = step
        return self._waits_on(yielded)

    def _waits_on(self, yielded: Any) -> object:
        if yielded is not None:
            if getattr(yielded, "_asyncio_future_blocking", None) is None:
                return self.throw(RuntimeError(f"an await yielded {yielded!r}, not a future"))
            # Taken, as Task.__step takes it; the response's own await sets it again.
            yielded._asyncio_future_blocking = False
        self.blocker = yielded
        return PENDING

    def resume(self) -> object:
        # Future.__await__ calls result() once resumed, so a failed future
        # raises inside the source just as Task.__wakeup's throw would.
        gen = self._gen
        assert gen is not None
        try:
            yielded = gen.send(None)
        except StopIteration as stop:
            self._gen = self.blocker = None
            return stop.value
        except StopAsyncIteration:
            self._gen = self.blocker = None
            return END
        except BaseException:
            self._gen = self.blocker = None
            raise
        return self._waits_on(yielded)

    def throw(self, exc: BaseException) -> object:
        gen = self._gen
        assert gen is not None
        if self.blocker is not None:
            self.blocker.cancel()  # as Task.cancel() leaves it
        try:
            yielded = gen.throw(exc)
        except StopIteration as stop:
            self._gen = self.blocker = None
            return stop.value
        except StopAsyncIteration:
            self._gen = self.blocker = None
            return END
        except BaseException:
            self._gen = self.blocker = None
            raise
        return self._waits_on(yielded)

    def redeliver(self, exc: BaseException) -> None:
        # A cancellation that was meant for the source (its own asyncio.timeout,
        # say) reached the task while it was writing: throw it where the task
        # would have been waiting had it not been writing.
        if self._gen is None:
            raise exc
        outcome = self.throw(exc)
        if outcome is not PENDING:
            self._outcome = outcome

    async def aclose(self) -> None:
        try:
            if self._gen is not None:
                # Stopped while the source waited: cancel it where it waits, as a
                # cancelled task would, and let its cleanup run (it may await).
                item = self.throw(asyncio.CancelledError())
                while item is PENDING:
                    if self.blocker is None:
                        await asyncio.sleep(0)
                    else:
                        await asyncio.wait([self.blocker])
                    item = self.resume()
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("event source failed while it was being closed")
        self._gen = self.blocker = None
        aclose: Callable[[], Awaitable[object]] | None = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                logger.exception("event source failed while it was being closed")


class AsyncGenPull(AsyncPull):
    """An async generator: what ``anext()`` returns for it may be sent into by
    hand and then awaited (the response's hot path does both; see ``_stream.py``)."""

    __slots__ = ()


def _next_or_end(iterator: Iterator[object]) -> object:
    return next(iterator, END)


class SyncPull(Pull):
    """Iterates a sync iterator in a worker thread, one item per hop."""

    __slots__ = ("_hop", "_iterator")

    def __init__(self, iterator: Iterator[object]) -> None:
        super().__init__()
        self._iterator = iterator
        self._hop: asyncio.Future[object] | None = None

    def ready(self) -> object:
        if self._hop is None:
            coroutine = anyio.to_thread.run_sync(_next_or_end, self._iterator)
            self._hop = asyncio.ensure_future(coroutine)
            # What the response waits on: cancelling the wait must not abandon a
            # generator running in a thread; aclose() waits for it, then closes it.
            self.blocker = asyncio.shield(self._hop)
        return PENDING

    def resume(self) -> object:
        hop = self._hop
        assert hop is not None
        if not hop.done():
            return PENDING
        self._hop = self.blocker = None
        return hop.result()

    def throw(self, exc: BaseException) -> object:
        # Never abandon a generator running in a thread: aclose() waits for it.
        raise exc

    async def aclose(self) -> None:
        hop, self._hop = self._hop, None
        shielded, self.blocker = self.blocker, None
        if shielded is not None and shielded.done() and not shielded.cancelled():
            shielded.exception()  # retrieved: it is the hop's, reported there
        if hop is not None:
            done, _ = await asyncio.wait([hop], timeout=_HOP_CLOSE_TIMEOUT)
            if not done:
                logger.warning(
                    "a sync event source blocked for %ss after the stream ended; left running",
                    _HOP_CLOSE_TIMEOUT,
                )
                return
            if hop.cancelled() or hop.exception() is not None:
                return  # it failed: nothing left to close
        close: Callable[[], object] | None = getattr(self._iterator, "close", None)
        if close is not None:
            try:
                await anyio.to_thread.run_sync(close)
            except Exception:
                logger.exception("event source failed while it was being closed")


_HOP_CLOSE_TIMEOUT = 5.0
_DRAIN_YIELD_EVERY = 256


class SequencePull(Pull):
    """A list or tuple: every item is ready at once."""

    __slots__ = ("_iterator",)

    def __init__(self, items: Sequence[object]) -> None:
        super().__init__()
        self._iterator = iter(items)

    def ready(self) -> object:
        return next(self._iterator, END)


def open_pull(source: Source, last_event_id: str | None) -> Pull:
    """The right puller for ``source``; a callable is called with ``last_event_id`` first."""
    if callable(source) and not isinstance(source, AsyncIterable | Iterable):
        source = source(last_event_id)
    if isinstance(source, AsyncIterable):
        iterator = aiter(source)
        if isinstance(iterator, AsyncGeneratorType):
            return AsyncGenPull(iterator)
        return AsyncPull(iterator)
    if isinstance(source, list | tuple):
        return SequencePull(source)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping):
        return SyncPull(iter(source))
    raise TypeError(f"not an event source: {type(source).__name__}")
