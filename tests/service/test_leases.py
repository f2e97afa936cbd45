"""In-process: answers whose instance died are reaped into a 503 and a failed message,
on a fake clock; a cancel relayed by the store stops the local generation.

The two-instance versions, over real sockets, are in test_instances.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from askstream.service._generation import Generations
from askstream.service._history import ChatHistory, create_engine
from askstream.service._reaper import LOST, LOST_DATA, answer_text, reap_forever, reap_once
from askstream.sse import Event
from askstream.streams import MemoryStore

from .test_generation import ScriptedBackend

pytestmark = pytest.mark.anyio


class DyingStore(MemoryStore):
    """A memory store whose producers can die: ``kill(id)`` lets a lease run out, and
    the next :meth:`take_over` hands those streams over, as a shared store would."""

    def __init__(self) -> None:
        super().__init__()
        self.dead: set[str] = set()

    def kill(self, stream_id: str) -> None:
        self.dead.add(stream_id)

    async def take_over(self) -> list[str]:
        taken = [s for s in sorted(self.dead) if await self.status(s) == "open"]
        self.dead.clear()
        return taken


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    await history.create_tables()
    yield history
    await history.aclose()


def test_the_lost_event_is_a_503_error_body() -> None:
    assert json.loads(LOST_DATA) == {"code": 503, "message": LOST}


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ([], ""),
        (['{"delta":"Hel"}', '{"delta":"lo"}'], "Hello"),
        (['{"delta":"多"}', '{"other":1}', "[1]", '{"delta":" 🙂"}'], "多 🙂"),
    ],
    ids=["none", "two", "odd-shapes"],
)
def test_the_text_of_a_lost_answer_is_the_deltas_its_readers_got(
    data: list[str], text: str
) -> None:
    assert answer_text(data) == text


async def test_a_reaped_answer_ends_with_503_and_is_stored_failed_with_what_was_read(
    history: ChatHistory,
) -> None:
    store = DyingStore()
    backend = ScriptedBackend("Hel", "lo", 60.0, "never")
    async with Generations(store=store, history=history, backend=backend) as generations:
        answer = await generations.start(None, "Hi?", [])

        async def reader() -> tuple[Event, str]:
            async for event in store.follow(answer.message_id):
                if event.event == "error":
                    # What a reader finds the moment it gets the error:
                    return event, (await history.messages(answer.chat_id))[-1].status
            raise AssertionError("the stream ended without an error")

        async with asyncio.TaskGroup() as tg:
            read = tg.create_task(reader())
            async with asyncio.timeout(5):
                async for event in store.follow(answer.message_id):
                    if event.id == "2":
                        break  # both pieces are in the log
            store.kill(answer.message_id)  # its instance is gone; this one notices
            assert await reap_once(store, history) == [answer.message_id]
            assert await reap_once(store, history) == []  # once
        error, status_at_receipt = read.result()
        reply = (await history.messages(answer.chat_id))[-1]
        # The "dead" producer is alive here, only silent: it must not live on.
        await generations.cancel(answer.message_id)
    assert json.loads(error.data) == {"code": 503, "message": LOST}
    assert status_at_receipt == "failed"  # stored before the error went out
    assert (reply.status, reply.content, reply.error) == ("failed", "Hello", LOST)


async def test_failing_an_answer_never_overwrites_one_that_ended(history: ChatHistory) -> None:
    await history.begin_answer("c", "Q?", "q", "a", new_chat=True)
    await history.finish_answer("a", "done text", "complete", "stop")
    assert not await history.fail_answer("a", LOST, "other text")
    reply = (await history.messages("c"))[-1]
    assert (reply.status, reply.content) == ("complete", "done text")


async def test_the_reaper_looks_every_interval_on_a_fake_clock(history: ChatHistory) -> None:
    """Sleeps are the fake clock's: each round sleeps ``interval``, then reaps."""
    store = DyingStore()
    slept: list[float] = []
    rounds = asyncio.Semaphore(0)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        rounds.release()
        await asyncio.sleep(0)

    await history.begin_answer("c", "Q?", "q", "m", new_chat=True)
    await store.create("m")
    task = asyncio.create_task(reap_forever(store, history, interval=1.0, sleep=sleep))
    try:
        async with asyncio.timeout(5):
            for _ in range(3):
                await rounds.acquire()
            store.kill("m")
            while await store.status("m") == "open":
                await rounds.acquire()
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert set(slept) == {1.0}
    assert (await history.messages("c"))[-1].status == "failed"


async def test_a_cancel_relayed_by_the_store_stops_the_local_generation(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    backend = ScriptedBackend("Hel", 60.0, "never")
    async with Generations(store=store, history=history, backend=backend) as generations:
        answer = await generations.start(None, "Hi?", [])
        # What another instance's cancel amounts to here: the store calls the producer.
        assert await store.cancel(answer.message_id) == "open"
        events = [e async for e in store.follow(answer.message_id)]
    assert backend.closed == 1  # the upstream request was closed
    assert events[-1].event == "done"
    assert json.loads(events[-1].data)["finishReason"] == "cancelled"
    assert (await history.messages(answer.chat_id))[-1].status == "cancelled"
