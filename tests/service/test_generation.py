"""Generations in-process, with a scripted back end (a fake, not a mock): when the ask
is answered, what is stored and what the log says on every way an answer can end.

Time is a FakeClock: the back end's pauses and the periodic saver pass only when
a test advances it."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path

import pytest

from askstream.http import Clock, SystemClock
from askstream.service import ChatMessage, Chunk, ModelOptions, ServiceError, UpstreamError
from askstream.service._generation import Generations
from askstream.service._history import ChatHistory, create_engine
from askstream.streams import MemoryStore
from askstream.testing import FakeClock

pytestmark = pytest.mark.anyio


class ScriptedBackend:
    """Plays a script: a str is a piece, an exception is raised, a float is a pause
    (on ``clock``: real seconds unless a test passes a FakeClock)."""

    def __init__(self, *script: str | float | BaseException, clock: Clock | None = None) -> None:
        self.script = script
        self.clock = clock or SystemClock()
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
                    await self.clock.sleep(step)
                else:
                    yield Chunk(step)
            yield Chunk(finish_reason="stop")
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


class Scripted(ScriptedBackend):
    """A ScriptedBackend on a FakeClock of its own: its pauses, and the saver of
    the Generations built on it here, pass only when the test advances it."""

    def __init__(self, *script: str | float | BaseException) -> None:
        self.clock: FakeClock = FakeClock()
        super().__init__(*script, clock=self.clock)


class Rig:
    def __init__(self, store: MemoryStore, history: ChatHistory, backend: ScriptedBackend) -> None:
        self.store, self.history, self.backend = store, history, backend


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    await history.create_tables()
    yield history
    await history.aclose()


SAVE_INTERVAL = 0.05


def generations(history: ChatHistory, backend: Scripted, store: MemoryStore) -> Generations:
    return Generations(
        store=store,
        history=history,
        backend=backend,
        save_interval=SAVE_INTERVAL,
        clock=backend.clock,
    )


async def events(store: MemoryStore, message_id: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.event, json.loads(e.data)) async for e in store.follow(message_id)]


async def test_start_returns_after_the_first_piece_is_in_the_log(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = Scripted("Hel", 0.2, "lo")
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "Hi?", [])
        await backend.clock.wait_sleepers(2)  # the saver, and the back end in its pause
        assert [e.data for e in await store.read(answer.message_id)] == [
            f'{{"chatId":"{answer.chat_id}","messageId":"{answer.message_id}","delta":"Hel"}}'
        ]
        assert await store.status(answer.message_id) == "open"
        await backend.clock.advance(0.2)
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
    ok = Scripted("first answer")
    async with generations(history, ok, store) as gens:
        first = await gens.start(None, "one", [])
        await events(store, first.message_id)  # it ends before the context does
        chat_id = first.chat_id
    before = await history.messages(chat_id)
    failing = Scripted(UpstreamError("connection refused"))
    async with generations(history, failing, store) as gens:
        with pytest.raises(UpstreamError, match="connection refused"):
            await gens.start(chat_id, "two", [])
        with pytest.raises(UpstreamError):
            await gens.start(None, "a new chat", [])
    assert await history.messages(chat_id) == before  # the continued chat is untouched
    assert [chat.id for chat in await history.list_chats("")] == [chat_id]  # no new chat


async def test_an_unexpected_error_before_the_first_piece_is_a_500(history: ChatHistory) -> None:
    backend = Scripted(RuntimeError("bug"))
    async with generations(history, backend, MemoryStore()) as gens:
        with pytest.raises(ServiceError) as caught:
            await gens.start(None, "hi", [])
    assert (caught.value.status, caught.value.message) == (500, "generating the answer failed")
    assert "bug" not in str(caught.value)


async def test_a_failure_after_the_first_piece_ends_with_an_error_event(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = Scripted("part", UpstreamError("broke off"))
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
    async with generations(history, Scripted(), store) as gens:
        answer = await gens.start(None, "say nothing", [])
        got = await events(store, answer.message_id)
    assert [kind for kind, _ in got] == ["done"]
    assert got[0][1]["answer"] == ""


async def test_cancel_ends_with_done_cancelled_and_closes_the_back_end(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = Scripted("so far", 10.0, "never")
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
    backend = Scripted("a", 10.0)
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
    got = await events(store, answer.message_id)
    assert got[-1] == ("error", {"code": 503, "message": "the server is shutting down"})
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.status, stored.error) == ("cancelled", "the server is shutting down")


async def test_progress_is_saved_while_streaming(history: ChatHistory) -> None:
    store = MemoryStore()
    backend = Scripted("one ", "two ", 0.3, "three")
    clock = backend.clock
    async with generations(history, backend, store) as gens:
        answer = await gens.start(None, "hi", [])
        await clock.wait_sleepers(2)  # the saver, and the back end in its pause
        stored = (await history.messages(answer.chat_id))[1]
        assert (stored.content, stored.status) == ("", "streaming")  # no save yet
        await clock.advance(SAVE_INTERVAL)  # one save: the saver is asleep again after it
        stored = (await history.messages(answer.chat_id))[1]
        assert (stored.content, stored.status) == ("one two ", "streaming")
        await clock.advance(0.3)
        await events(store, answer.message_id)
    stored = (await history.messages(answer.chat_id))[1]
    assert (stored.content, stored.status) == ("one two three", "complete")


async def test_the_context_and_the_question_go_to_the_back_end(history: ChatHistory) -> None:
    backend = Scripted("ok")
    context: list[ChatMessage] = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "reply"},
    ]
    async with generations(history, backend, MemoryStore()) as gens:
        first = await gens.start(None, "seed", [])
        await gens.start(first.chat_id, "now", context)
    assert backend.seen[-1] == [*context, {"role": "user", "content": "now"}]


async def test_start_outside_the_context_manager_is_a_usage_error(history: ChatHistory) -> None:
    gens = generations(history, Scripted(), MemoryStore())
    with pytest.raises(RuntimeError, match="async with"):
        await gens.start(None, "hi", [])
