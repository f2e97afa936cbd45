"""A response's source, whatever its kind, as one awaitable ``next()``.

The producer (``_stream.py``) asks every source the same thing: ``await
pull.next()``, the next item, or ``StopAsyncIteration`` at the end. An async
iterator is awaited as ``async for`` would (its ``__anext__``), in the
producer's own task, so whatever the
source awaits, its timeouts, its cancel scopes and its context variables
behave exactly as in a plain loop. A sync iterator runs in a worker thread, one
item per hop, as Starlette's ``StreamingResponse`` does: it may block. Lists and
tuples are read inline. Nothing here steps a coroutine by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, ClassVar, Protocol, TypeAlias

import anyio.to_thread

from ..sse import Event
from ._broadcast import Join

__all__ = ["Pull", "Source", "open_pull"]

logger = logging.getLogger("askstream")


class JSONModel(Protocol):
    """A Pydantic (v2) model, as a source's item: it is sent as its own JSON."""

    def model_dump_json(self) -> str: ...


class DataclassInstance(Protocol):
    """A dataclass instance, as a source's item: sent as the JSON of its fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


Item: TypeAlias = Event | str | Mapping[str, object] | JSONModel | DataclassInstance | Join
"""An :class:`~askstream.Event`, a ``str`` (the data of a message), a mapping, a
Pydantic model or a dataclass (JSON data), or a :class:`~askstream.Join` (the
stream joins a broadcast)."""
Items: TypeAlias = AsyncIterable[Item] | Iterable[Item]
Source: TypeAlias = Items | Callable[[str | None], Items]
"""What :class:`EventStreamResponse` streams: items, or a function of Last-Event-ID to items."""

_END = object()  # what the worker thread's next() returns at the end
_HOP_CLOSE_TIMEOUT = 5.0
_DRAIN_YIELD_EVERY = 256


class Pull:
    """What the producer needs from a source: ``next``, ``aclose`` and ``drain``.

    ``next`` is a plain attribute (a bound callable), read once per stream:
    for an async iterator it is its own ``__anext__``, so an event costs no
    frame of ours. At the end it raises ``StopAsyncIteration``.
    """

    __slots__ = ("next",)

    def __init__(self, next_: Callable[[], Awaitable[object]]) -> None:
        self.next = next_

    async def aclose(self) -> None:
        """Close the source so that its ``finally`` blocks run (in the caller's task)."""

    async def drain(self) -> None:
        """Pull the source to its end, throwing the items away (an error is logged).

        For a source whose work must complete after its reader left.
        """
        next_ = self.next
        count = 0
        try:
            while True:
                await next_()
                count += 1
                if count % _DRAIN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a source that never waits must not hog the loop
        except StopAsyncIteration:
            return
        except Exception:
            logger.exception("event source failed after its reader left")


class AsyncPull(Pull):
    """An async iterator, awaited as ``async for`` does."""

    __slots__ = ("iterator",)

    def __init__(self, iterator: AsyncIterator[object]) -> None:
        super().__init__(iterator.__anext__)
        self.iterator = iterator

    async def aclose(self) -> None:
        aclose: Callable[[], Awaitable[object]] | None = getattr(self.iterator, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except Exception:
            logger.exception("event source failed while it was being closed")


async def _inline(items: Sequence[object]) -> AsyncIterator[object]:
    for item in items:
        yield item


class SyncPull(Pull):
    """A sync iterator, one item per hop to a worker thread.

    A hop is never abandoned: a stop that lands while the thread runs is raised
    in the producer, and :meth:`aclose` waits for the hop before it closes the
    iterator (a generator cannot be closed while it runs).
    """

    __slots__ = ("_hop", "_iterator")

    def __init__(self, iterator: Iterator[object]) -> None:
        super().__init__(self._next)
        self._iterator = iterator
        self._hop: asyncio.Future[object] | None = None

    async def _next(self) -> object:
        step = anyio.to_thread.run_sync(next, self._iterator, _END)
        hop = self._hop = asyncio.ensure_future(step)
        item = await asyncio.shield(hop)
        self._hop = None
        if item is _END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        hop, self._hop = self._hop, None
        if hop is not None:
            done, _ = await asyncio.wait([hop], timeout=_HOP_CLOSE_TIMEOUT)
            if not done:
                logger.warning(
                    "a sync event source blocked for %ss after the stream ended; left running",
                    _HOP_CLOSE_TIMEOUT,
                )
                return
            if hop.cancelled() or hop.exception() is not None:
                return  # it failed (reported where it was awaited): nothing left to close
        close: Callable[[], object] | None = getattr(self._iterator, "close", None)
        if close is not None:
            try:
                await anyio.to_thread.run_sync(close)
            except Exception:
                logger.exception("event source failed while it was being closed")


def open_pull(source: Source, last_event_id: str | None) -> Pull:
    """The right puller for ``source``; a callable is called with ``last_event_id`` first."""
    if callable(source) and not isinstance(source, AsyncIterable | Iterable):
        source = source(last_event_id)
    if isinstance(source, AsyncIterable):
        return AsyncPull(aiter(source))
    if isinstance(source, list | tuple):
        return AsyncPull(_inline(source))
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping):
        return SyncPull(iter(source))
    raise TypeError(f"not an event source: {type(source).__name__}")
