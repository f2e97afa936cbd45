"""Stores for the stream-log tests: the memory store, and a Redis store on 127.0.0.1:6379.

Every Redis store of a test gets a key prefix of its own (``askstream-test-<hex>:``),
and every key under it is deleted after the test. Without Redis the Redis
variant skips loudly, and fails under CI=true (``askstream.testing.require``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from askstream.streams import MemoryStore, RedisStore, Store
from askstream.testing import require

from ..conftest import REDIS_URL, redis_available

MakeStore = Callable[..., Awaitable[Store]]


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def open_redis_stores() -> AsyncIterator[Callable[..., Awaitable[RedisStore]]]:
    """A factory of RedisStores on a fresh key prefix; on exit every store is
    closed and every key under the prefix deleted."""
    require(redis_available(), f"Redis at {REDIS_URL}")
    prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
    try:
        async with AsyncExitStack() as stack:

            async def make(**options: Any) -> RedisStore:
                options.setdefault("prefix", prefix)
                return await stack.enter_async_context(RedisStore(REDIS_URL, **options))

            yield make
    finally:
        await delete_prefix(prefix)


@pytest.fixture
async def redis_stores() -> AsyncIterator[Callable[..., Awaitable[RedisStore]]]:
    """``await redis_stores(**options)``: an open RedisStore on this test's own key
    prefix; several calls give several stores sharing it, as several instances
    would, all closed after the test."""
    async with open_redis_stores() as make:
        yield make


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """``await make_store(**options)``: a fresh store of each kind; the contract
    tests run once per kind."""
    if request.param == "memory":

        async def memory(**options: Any) -> Store:
            return MemoryStore(**options)

        yield memory
        return
    async with open_redis_stores() as make:
        yield make


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()
