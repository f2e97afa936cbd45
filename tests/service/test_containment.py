"""Failure stays where it happened, in-process with fakes: the generation supervisor,
the dependency tracker (one line down, one line back) and the graceful stop's steps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from askstream.service import ServiceError, Unavailable
from askstream.service._fanout import Fanout
from askstream.service._generation import SHUTDOWN, Generations
from askstream.service._health import DATABASE, STORE, Dependencies, unavailable
from askstream.service._history import ChatHistory, create_engine
from askstream.service._reaper import VANISHED, sweep_once
from askstream.service._stopping import Stopping
from askstream.sse import Event
from askstream.streams import MemoryStore, StoreUnavailable

from .test_generation import ScriptedBackend

pytestmark = pytest.mark.anyio


class Broken(Exception):
    """A bug in the store, not an outage."""


class DoomedStore(MemoryStore):
    """A memory store on which every write to one stream fails, status included:
    the answer's own handlers and its last line of defence all meet the failure."""

    def __init__(self) -> None:
        super().__init__()
        self.doomed: str | None = None

    async def append(self, stream_id: str, data: str, event: str = "message") -> Event:
        if stream_id == self.doomed:
            raise Broken("append")
        return await super().append(stream_id, data, event)

    async def create(self, stream_id: str, **kwargs: object) -> None:
        await super().create(stream_id, **kwargs)  # type: ignore[arg-type]
        if self.doomed is None:
            self.doomed = stream_id  # the first answer's stream

    async def status(self, stream_id: str) -> object:  # type: ignore[override]
        if stream_id == self.doomed:
            raise Broken("status")
        return await super().status(stream_id)


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    await history.create_tables()
    yield history
    await history.aclose()


async def test_a_failing_answer_stops_no_other_answer_nor_the_saver(
    history: ChatHistory, caplog: pytest.LogCaptureFixture
) -> None:
    store = DoomedStore()
    backend = ScriptedBackend("a", 0.05, "b", 0.05, "c")
    async with Generations(
        store=store, history=history, backend=backend, save_interval=0.01
    ) as gens:
        with pytest.raises(ServiceError) as doomed:  # its first append fails
            await gens.start(None, "first", [])
        assert doomed.value.status == 500
        other = await gens.start(None, "second", [])
        done = [e async for e in store.follow(other.message_id)]
        assert done[-1].event == "done"
        assert json.loads(done[-1].data)["answer"] == "abc"
        # The doomed one is over too: its task ended, nothing escaped it.
        assert await gens.wait_idle(5.0)
        assert gens.failures == 1
        # The instance goes on: a new answer after the failure, and the saver still saves.
        third = await gens.start(None, "third", [])
        async for _ in store.follow(third.message_id):
            pass
        messages = await history.messages(third.chat_id)
        assert messages[-1].status == "complete"
        assert gens._saver_task is not None
        assert not gens._saver_task.done()
    assert "could not be closed" in caplog.text
    assert "ending its stream failed" in caplog.text  # logged, not raised


async def test_an_outage_before_the_first_piece_is_503_and_told_once(
    history: ChatHistory, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryStore):
        async def create(self, stream_id: str, **kwargs: object) -> None:
            raise ConnectionRefusedError("the store is away")

    async def failing() -> None:
        raise ConnectionRefusedError("still away")

    caplog.set_level(logging.WARNING, "askstream")
    async with (
        Dependencies({STORE: failing}, interval=3600) as deps,
        Generations(
            store=Down(), history=history, backend=ScriptedBackend("x"), dependencies=deps
        ) as gens,
    ):
        with pytest.raises(Unavailable) as first:
            await gens.start(None, "q", [])
        assert first.value.status == 503
        for _ in range(3):  # known to be down: refused before anything is written
            with pytest.raises(Unavailable):
                await gens.start(None, "q", [])
        assert gens.failures == 0
    assert caplog.text.count("is unreachable") == 1
    assert "Traceback" not in caplog.text


def test_what_counts_as_an_outage() -> None:
    import redis.exceptions
    import sqlalchemy.exc

    assert unavailable(ConnectionRefusedError()).dependency == DATABASE  # type: ignore[union-attr]
    assert unavailable(redis.exceptions.ConnectionError()).dependency == STORE  # type: ignore[union-attr]
    assert unavailable(StoreUnavailable("m", "gone")).dependency == STORE  # type: ignore[union-attr]
    lost = sqlalchemy.exc.DBAPIError("SELECT 1", None, OSError(), connection_invalidated=True)
    assert unavailable(lost).dependency == DATABASE  # type: ignore[union-attr]
    # SQLite's "no such table" is a bug, not an outage; nor is a bad value.
    import sqlite3

    missing = sqlalchemy.exc.OperationalError("SELECT", None, sqlite3.OperationalError("no table"))
    assert unavailable(missing) is None
    assert unavailable(ValueError()) is None
    assert unavailable(redis.exceptions.ResponseError("WRONGTYPE")) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept.set()
        await asyncio.sleep(0)


async def test_the_tracker_says_down_once_and_back_once(caplog: pytest.LogCaptureFixture) -> None:
    reachable = False

    async def probe() -> None:
        if not reachable:
            raise ConnectionRefusedError("refused")

    clock = FakeClock()
    caplog.set_level(logging.WARNING, "askstream")
    tracker = Dependencies({DATABASE: probe}, interval=1.0, clock=clock, sleep=clock.sleep)
    async with tracker as deps:
        for _ in range(100):  # a hundred failing requests: one line
            deps.down(DATABASE, ConnectionRefusedError("refused"))
        with pytest.raises(Unavailable):
            deps.check_up()
        for _ in range(5):
            await asyncio.sleep(0)
        assert deps.unreachable == [DATABASE]  # the probe keeps finding it down
        reachable = True
        for _ in range(5):  # the next probe finds it back
            await asyncio.sleep(0)
        assert deps.unreachable == []
        deps.check_up()
        assert (await deps.ready()).status_code == 200
        deps.stopping = True
        stopping = await deps.ready()
        assert stopping.status_code == 503
        assert stopping.headers["Retry-After"] == "2"
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "is unreachable" in line]) == 1
    assert len([line for line in lines if "is back after" in line]) == 1


async def test_ready_names_what_is_down() -> None:
    async def up() -> None:
        return None

    async def down() -> None:
        raise ConnectionRefusedError

    async with Dependencies({DATABASE: up, STORE: down}, interval=3600) as deps:
        response = await deps.ready()
    assert response.status_code == 503
    assert json.loads(bytes(response.body)) == {
        "code": 503,
        "message": "not ready: the stream store is unreachable",
    }


async def test_stopping_lets_answers_finish_then_ends_the_streams(history: ChatHistory) -> None:
    store = MemoryStore()
    stopping = Stopping(timeout=5.0, poll_interval=0.01)
    async with (
        Dependencies({}) as deps,
        Generations(store=store, history=history, backend=ScriptedBackend("a", 0.05, "b")) as gens,
    ):
        fanout = Fanout(store)
        answer = await gens.start(None, "q", [])
        watcher = asyncio.get_running_loop().create_task(stopping.stop(gens, fanout, deps))
        await asyncio.sleep(0)  # stopping begins
        with pytest.raises(Unavailable):  # no new asks once stopping began
            await gens.start(None, "late", [])
        assert not stopping.streams_must_end()  # the answer in flight is still going
        await asyncio.wait_for(watcher, 5)
        assert stopping.streams_must_end()
        assert deps.stopping
        assert (await history.messages(answer.chat_id))[-1].status == "complete"
        await fanout.aclose()


async def test_stopping_cancels_what_outlives_the_timeout(history: ChatHistory) -> None:
    store = MemoryStore()
    stopping = Stopping(timeout=0.05, should_exit=lambda: True, poll_interval=0.01)
    async with (
        Dependencies({}) as deps,
        Generations(store=store, history=history, backend=ScriptedBackend("a", 60.0, "b")) as gens,
    ):
        fanout = Fanout(store)
        answer = await gens.start(None, "q", [])
        await asyncio.wait_for(stopping.watch(gens, fanout, deps), 5)
        assert stopping.streams_must_end()
        last = (await store.read(answer.message_id))[-1]
        assert (last.event, json.loads(last.data)) == ("error", {"code": 503, "message": SHUTDOWN})
        stored = (await history.messages(answer.chat_id))[-1]
        assert (stored.status, stored.content) == ("cancelled", "a")
        await fanout.aclose()


async def test_the_sweep_fails_stale_answers_that_have_no_stream_only(
    history: ChatHistory,
) -> None:
    store = MemoryStore()
    await history.begin_answer("c1", "lost?", "q1", "lost", new_chat=True)
    await history.begin_answer("c1", "alive?", "q2", "alive", new_chat=False)
    await store.create("alive")  # its producer still writes its stream
    assert await sweep_once(store, history, idle=3600) == []  # not stale yet
    assert await sweep_once(store, history, idle=0) == ["lost"]
    statuses = {m.id: (m.status, m.error) for m in await history.messages("c1")}
    assert statuses["lost"] == ("failed", VANISHED)
    assert statuses["alive"] == ("streaming", None)
    assert await sweep_once(store, history, idle=0) == []  # once
