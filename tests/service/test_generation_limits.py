"""Generation limits with plain calls: the counter, then Generations keyed on ``owner``;
and what Generations makes of bad model text and a full store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path

import pytest

from askstream.service import ChatMessage, Chunk, ModelOptions, ServiceError, UpstreamError
from askstream.service._generation import Generations
from askstream.service._history import ChatHistory, create_engine
from askstream.service._limits import GenerationLimits
from askstream.streams import MemoryStore

pytestmark = pytest.mark.anyio


# -- the counter ------------------------------------------------------------------


def refusal(limits: GenerationLimits, owner: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        limits.acquire(owner)
    return caught.value


def test_a_user_past_their_share_is_429_with_retry_after() -> None:
    limits = GenerationLimits(total=10, per_user=2)
    limits.acquire("ann")
    limits.acquire("ann")
    error = refusal(limits, "ann")
    assert (error.status, error.code, error.headers) == (429, 429, {"Retry-After": "5"})
    limits.acquire("bob")  # another user is not held up
    assert (limits.running("ann"), limits.running("bob"), limits.running()) == (2, 1, 3)


def test_everyone_past_the_total_is_503_with_retry_after() -> None:
    limits = GenerationLimits(total=2, per_user=5)
    limits.acquire("ann")
    limits.acquire("bob")
    error = refusal(limits, "cy")
    assert (error.status, error.headers) == (503, {"Retry-After": "5"})
    assert limits.running() == 2  # a refusal takes nothing


def test_a_release_gives_the_slot_back_and_forgets_the_user() -> None:
    limits = GenerationLimits(total=1, per_user=1)
    limits.acquire("")  # anonymous is one user like any other
    assert refusal(limits, "").status == 429
    limits.release("")
    limits.acquire("")
    limits.release("")
    assert limits.running() == 0
    assert limits._by_owner == {}  # no entry left per user who ever asked


def test_a_release_without_an_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="without an acquire"):
        GenerationLimits(total=1, per_user=1).release("ann")


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GenerationLimits(total=0, per_user=1)


# -- Generations ------------------------------------------------------------------


class GatedBackend:
    """Yields ``pieces``, then waits for ``gate`` before it ends (or raises ``error``)."""

    def __init__(self, *pieces: str, error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error
        self.gate = asyncio.Event()

    async def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        if self.error is not None:
            raise self.error
        for piece in self.pieces:
            yield Chunk(piece)
        await self.gate.wait()
        yield Chunk(finish_reason="stop")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    await history.create_tables()
    yield history
    await history.aclose()


async def wait_done(store: MemoryStore, message_id: str) -> list[tuple[str, str]]:
    return [(e.event, e.data) async for e in store.follow(message_id)]


async def test_generations_hold_each_owner_to_their_share(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = GatedBackend("Hi")
    limits = GenerationLimits(total=3, per_user=1)
    async with Generations(store=store, history=history, backend=backend, limits=limits) as gens:
        first = await gens.start(None, "one", [], owner="ann")
        with pytest.raises(ServiceError) as caught:
            await gens.start(None, "two", [], owner="ann")
        assert caught.value.status == 429
        await gens.start(None, "three", [], owner="bob")
        assert limits.running() == 2
        backend.gate.set()
        await wait_done(store, first.message_id)
        await asyncio.sleep(0)  # the task's done callbacks run after its last step
        again = await gens.start(None, "four", [], owner="ann")
        await wait_done(store, again.message_id)
    assert limits.running() == 0


async def test_an_ask_that_fails_gives_its_slot_back(history: ChatHistory) -> None:
    limits = GenerationLimits(total=1, per_user=1)
    backend = GatedBackend(error=UpstreamError("connection refused"))
    async with Generations(
        store=MemoryStore(), history=history, backend=backend, limits=limits
    ) as gens:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await gens.start(None, "hi", [], owner="ann")
            await asyncio.sleep(0)
    assert limits.running() == 0


async def test_lone_surrogates_from_the_model_are_stored_and_sent_as_fffd(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = GatedBackend("Hi ", "\ud83d", "\ude42", "!")
    backend.gate.set()
    async with Generations(store=store, history=history, backend=backend) as gens:
        answer = await gens.start(None, "emoji?", [])
        got = await wait_done(store, answer.message_id)
    assert got[-1][0] == "done"
    assert json.loads(got[-1][1])["answer"] == "Hi \ufffd\ufffd!"
    for _, data in got:
        data.encode()  # every event can go out as UTF-8
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status) == ("Hi \ufffd\ufffd!", "complete")


async def test_a_full_store_refuses_a_new_ask_with_503(history: ChatHistory) -> None:
    store = MemoryStore(max_bytes=100)
    backend = GatedBackend("x" * 200)
    async with Generations(store=store, history=history, backend=backend) as gens:
        live = await gens.start(None, "fill it", [])
        with pytest.raises(ServiceError) as caught:
            await gens.start(None, "no room", [])
        assert (caught.value.status, caught.value.headers) == (503, {"Retry-After": "5"})
        backend.gate.set()
        await wait_done(store, live.message_id)
    # The refused ask left nothing behind: one chat, the one that got its answer.
    assert [chat.id for chat in await history.list_chats("")] == [live.chat_id]
