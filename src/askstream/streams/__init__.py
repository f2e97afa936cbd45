"""The stream log: every answer is written to a log that any number of readers follow.

The HTTP response that streams an answer never produces it; it follows the
log. That one rule gives resume (replay after ``Last-Event-ID``), several
readers, cancel and, with a shared store, several instances.

Two stores behind one :class:`Store` interface: :class:`MemoryStore` (one
process, the default) and :class:`RedisStore` (Redis Streams, shared by every
instance; needs ``askstream[redis]``).

>>> import asyncio
>>> from askstream.streams import MemoryStore
>>> async def main() -> list[str | None]:
...     store = MemoryStore()
...     await store.create("m1")
...     await store.append("m1", "Hello")
...     await store.finish("m1")
...     return [event.id async for event in store.follow("m1")]
>>> asyncio.run(main())
['1']
"""

from ._errors import (
    InvalidEventId,
    StoreError,
    StoreFull,
    StoreUnavailable,
    StreamExpired,
    StreamNotFound,
)
from ._memory import MemoryStore
from ._redis import RedisStore
from ._store import FinishStatus, Store, StreamStatus

__all__ = [
    "FinishStatus",
    "InvalidEventId",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
    "StreamStatus",
]
