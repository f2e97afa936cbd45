"""Generations in-process, with a scripted back end (a fake, not a mock): when the ask
is answered, what is stored and what the log says on every way an answer can end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path

import pytest

from askstream.service import ChatMessage, Chunk, ModelOptions, ServiceError, UpstreamError
from askstream.service._generation import Generations
from askstream.service._history import ChatHistory, create_engine
from askstream.streams import MemoryStore

pytestmark = pytest.mark.anyio


class ScriptedBackend:
    """Plays a script: a str is a piece, an exception is raised, a float is a pause."""

    def __init__(self, *script: str | float | BaseException) -> None:
        self.script = script
        self.closed = 0
        self.seen: list[list[ChatMessage]] = []

    async def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        self.seen.append(list(messages))
        try:
            for step in self.script:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    yield Chunk(step)
            yield Chunk(finish_reason="stop")
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


class Rig:
    def __init__(self, store: MemoryStore, history: ChatHistory, backend: ScriptedBackend) -> None:
        self.store, self.history, self.backend = store, history, backend


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    await history.create_tables()
    yield history
    await history.aclose()


def generations(history: ChatHistory, backend: ScriptedBackend, store: MemoryStore) -> Generations:
    return Generations(store=store, history=history, backend=backend, save_interval=0.05)


async def events(store: MemoryStore, message_id: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.event, json.loads(e.data)) async for e in store.follow(message_id)]


async def test_start_returns_after_the_first_piece_is_in_the_log(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("Hel", 0.2, "lo")
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "Hi?", [])
        assert [e.data for e in await store.read(answer.message_id)] == [
            f'{{"chatId":"{answer.chat_id}","messageId":"{answer.message_id}","delta":"Hel"}}'
        ]
        assert await store.status(answer.message_id) == "open"
        got = await events(store, answer.message_id)
    assert got[-1] == (
        "done",
        {"chatId": answer.chat_id, "messageId": answer.message_id, "answer": "Hello",
         "finishReason": "stop"},
    )  # fmt: skip
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status) == ("Hello", "complete")


async def test_a_failure_before_the_first_piece_raises_and_leaves_nothing(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    ok = ScriptedBackend("first answer")
    async with generations(history, ok, store) as gens:
        chat_id = (await gens.start(None, "one", [])).chat_id
        await asyncio.sleep(0.01)
    before = await history.messages(chat_id)
    failing = ScriptedBackend(UpstreamError("connection refused"))
    async with generations(history, failing, store) as gens:
        with pytest.raises(UpstreamError, match="connection refused"):
            await gens.start(chat_id, "two", [])
        with pytest.raises(UpstreamError):
            await gens.start(None, "a new chat", [])
    assert await history.messages(chat_id) == before  # the continued chat is untouched
    assert [chat.id for chat in await history.list_chats("")] == [chat_id]  # no new chat


async def test_an_unexpected_error_before_the_first_piece_is_a_500(history: ChatHistory) -> None:
    backend = ScriptedBackend(RuntimeError("bug"))
    async with generations(history, backend, MemoryStore()) as gens:
        with pytest.raises(ServiceError) as caught:
            await gens.start(None, "hi", [])
    assert (caught.value.status, caught.value.message) == (500, "generating the answer failed")
    assert "bug" not in str(caught.value)


async def test_a_failure_after_the_first_piece_ends_with_an_error_event(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("part", UpstreamError("broke off"))
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
        got = await events(store, answer.message_id)
    assert got[-1] == ("error", {"code": 502, "message": "broke off"})
    assert await store.status(answer.message_id) == "failed"
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status, stored.error) == ("part", "failed", "broke off")
    assert backend.closed == 1


async def test_an_empty_answer_is_a_done_with_no_pieces(history: ChatHistory) -> None:
    store = MemoryStore()
    async with generations(history, ScriptedBackend(), store) as gens:
        answer = await gens.start(None, "say nothing", [])
        got = await events(store, answer.message_id)
    assert [kind for kind, _ in got] == ["done"]
    assert got[0][1]["answer"] == ""


async def test_cancel_ends_with_done_cancelled_and_closes_the_back_end(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("so far", 10.0, "never")
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
        assert await gens.cancel(answer.message_id) is True
        assert await gens.cancel(answer.message_id) is False  # not running any more
        got = await events(store, answer.message_id)
    assert got[-1][0] == "done"
    assert got[-1][1]["finishReason"] == "cancelled"
    assert got[-1][1]["answer"] == "so far"
    assert backend.closed == 1
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status) == ("so far", "cancelled")


async def test_leaving_cancels_what_runs_with_a_shutdown_error(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("a", 10.0)
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
    got = await events(store, answer.message_id)
    assert got[-1] == ("error", {"code": 503, "message": "the server is shutting down"})
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.status, stored.error) == ("cancelled", "the server is shutting down")


async def test_progress_is_saved_while_streaming(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("one ", "two ", 0.3, "three")
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
        await asyncio.sleep(0.15)  # three save intervals
        stored = (await history.messages(answer.chat_id))[1]
        assert (stored.content, stored.status) == ("one two ", "streaming")
        await events(store, answer.message_id)
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status) == ("one two three", "complete")


async def test_the_context_and_the_question_go_to_the_back_end(history: ChatHistory) -> None:
    backend = ScriptedBackend("ok")
    context: list[ChatMessage] = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "reply"},
    ]
    async with generations(history, backend, MemoryStore()) as gens:
        first = await gens.start(None, "seed", [])
        await gens.start(first.chat_id, "now", context)
    assert backend.seen[-1] == [*context, {"role": "user", "content": "now"}]


async def test_start_outside_the_context_manager_is_a_usage_error(history: ChatHistory) -> None:
    gens = generations(history, ScriptedBackend(), MemoryStore())
    with pytest.raises(RuntimeError, match="async with"):
        await gens.start(None, "hi", [])
