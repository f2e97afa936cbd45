"""ChatHistory against both databases it supports: SQLite (aiosqlite) and PostgreSQL
(asyncpg, a database of each test's own). The same tests run on each."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from askstream.service._history import ChatHistory, create_engine

from .conftest import StartService, ask

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'history.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def history(database_url: str) -> AsyncIterator[ChatHistory]:
    history = ChatHistory(create_engine(database_url))
    await history.create_tables()
    await history.create_tables()  # a second start finds the tables there: no error
    yield history
    await history.aclose()


async def answered(history: ChatHistory, chat: str, n: int, *, new: bool) -> None:
    await history.begin_answer(chat, f"q{n}", f"{chat}-u{n}", f"{chat}-a{n}", new_chat=new)
    await history.finish_answer(f"{chat}-a{n}", f"a{n}", "complete", "stop")


async def test_a_question_and_its_answer_are_stored_in_order(history: ChatHistory) -> None:
    await history.begin_answer("c", "Why?", "u1", "a1", new_chat=True, first="Be")
    messages = await history.messages("c")
    assert [(m.id, m.role, m.content, m.status) for m in messages] == [
        ("u1", "user", "Why?", "complete"),
        ("a1", "assistant", "Be", "streaming"),
    ]
    await history.finish_answer("a1", "Because.", "complete", "stop")
    answer = (await history.messages("c"))[1]
    assert (answer.content, answer.status, answer.finish_reason, answer.error) == (
        "Because.",
        "complete",
        "stop",
        None,
    )


async def test_timestamps_come_back_in_utc(history: ChatHistory) -> None:
    before = dt.datetime.now(dt.UTC)
    await answered(history, "c", 1, new=True)
    chat = await history.chat("c", "")
    assert chat is not None
    for stamp in (
        chat.created_at,
        chat.updated_at,
        *(m.created_at for m in await history.messages("c")),
    ):
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == dt.timedelta(0)
        assert before - dt.timedelta(seconds=1) <= stamp <= dt.datetime.now(dt.UTC)


async def test_chats_list_newest_first(history: ChatHistory) -> None:
    for name in ("old", "mid", "new"):
        await answered(history, name, 1, new=True)
    assert [chat.id for chat in await history.list_chats("")] == ["new", "mid", "old"]


async def test_context_holds_questions_and_complete_answers_only(history: ChatHistory) -> None:
    await answered(history, "c", 1, new=True)
    await history.begin_answer("c", "q2", "u2", "a2", new_chat=False, first="partial")
    await history.finish_answer("a2", "partial", "failed", error="boom")
    await history.begin_answer("c", "q3", "u3", "a3", new_chat=False)  # still streaming
    context = await history.context("c", "", limit=50)
    assert context == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "user", "content": "q3"},
    ]
    assert await history.context("c", "", limit=2) == context[-2:]
    assert await history.context("c", "", limit=0) == []
    assert await history.context("nope", "", limit=5) is None


async def test_progress_saves_touch_only_answers_still_streaming(history: ChatHistory) -> None:
    await history.begin_answer("c", "q", "u1", "a1", new_chat=True)
    await history.begin_answer("c", "q", "u2", "a2", new_chat=False)
    await history.save_progress({"a1": "one so far", "a2": "two so far"})
    assert [m.content for m in await history.messages("c")][1::2] == ["one so far", "two so far"]
    await history.finish_answer("a1", "one, finished", "complete", "stop")
    await history.save_progress({"a1": "a late, shorter save", "a2": "two, more"})
    first, second = (await history.messages("c"))[1::2]
    assert (first.content, first.status) == ("one, finished", "complete")
    assert (second.content, second.status) == ("two, more", "streaming")
    await history.save_progress({})


async def test_deleting_a_chat_deletes_its_messages(history: ChatHistory) -> None:
    await answered(history, "c", 1, new=True)
    await answered(history, "d", 1, new=True)
    assert await history.delete_chat("c", "") is True
    assert await history.delete_chat("c", "") is False
    assert await history.chat("c", "") is None
    assert await history.messages("c") == []
    assert len(await history.messages("d")) == 2


async def test_unicode_is_stored_exactly(history: ChatHistory) -> None:
    text = "中文 🙂 \u2028 e\u0301 \t\r\n end"
    await history.begin_answer("c", text, "u", "a", new_chat=True)
    await history.finish_answer("a", text * 100, "complete", "stop")
    question, answer = await history.messages("c")
    assert (question.content, answer.content) == (text, text * 100)
    chat = await history.chat("c", "")
    assert chat is not None
    assert chat.title == "中文 🙂 \u2028 e\u0301"  # the first line, stripped


async def test_the_service_runs_on_postgresql(
    pg_database: str, start_service: StartService, client: httpx.AsyncClient
) -> None:
    service = start_service(ASKSTREAM_DATABASE_URL=pg_database)
    answer = await ask(client, service.url, "stored in PostgreSQL?")
    chat = (await client.get(f"{service.url}/api/chats/{answer.done['chatId']}")).json()
    assert chat["messages"][1]["content"] == answer.done["answer"] == answer.deltas
