"""GET /api/streams/{messageId}: resume after Last-Event-ID, several readers, cancel,
and what a reader sees when its answer is cut short (docs/api.md, "Resuming")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from askstream.sse import Event
from askstream.testing import ServerProcess

from .conftest import Answer, StartService, ask, llm_env, read_events

pytestmark = pytest.mark.anyio


async def test_resume_after_last_event_id_replays_only_what_came_after(
    llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    whole = await ask(client, llm.url, "resume me please, all of it")
    location = whole.headers["content-location"]
    after_two = await ask(
        client, llm.url, method="GET", path=location, headers={"Last-Event-ID": "2"}
    )
    assert after_two.status == 200
    assert after_two.events == whole.events[2:]
    by_query = await ask(client, llm.url, method="GET", path=location + "?lastEventId=3")
    assert by_query.events == whole.events[3:]
    replay = await ask(client, llm.url, method="GET", path=location)
    assert replay.events == whole.events


@pytest.mark.parametrize("last_id", ["999", "abc", "-1"])
async def test_a_last_event_id_the_stream_never_gave_is_400(
    llm: ServerProcess, client: httpx.AsyncClient, last_id: str
) -> None:
    whole = await ask(client, llm.url, "short")
    response = await client.get(
        llm.url + whole.headers["content-location"], headers={"Last-Event-ID": last_id}
    )
    assert response.status_code == 400
    assert response.json()["code"] == 400


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    return [await anext(events) for _ in range(count)]


async def test_a_second_reader_joins_live_and_both_see_the_same_events(
    slow_llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", slow_llm.url + "/api/ask", json={"chatId": None, "question": "one two three"}
    ) as first:
        location = first.headers["content-location"]
        events = read_events(first)
        head = await take(events, 1)
        second = await ask(client, slow_llm.url, method="GET", path=location)
        rest = [event async for event in events]
    assert head + rest == second.events
    assert second.last.event == "done"


async def test_a_reader_that_leaves_stops_nothing(
    slow_llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", slow_llm.url + "/api/ask", json={"chatId": None, "question": "keep going"}
    ) as response:
        location = response.headers["content-location"]
        await take(read_events(response), 1)
    # Gone after one piece; the answer still completes in the log and the history.
    answer = await ask(client, slow_llm.url, method="GET", path=location)
    assert answer.done["answer"] == "Echo: keep going"


async def test_cancel_ends_the_answer_with_done_cancelled_and_closes_upstream(
    slow_llm: ServerProcess, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    question = "cancel this long answer before it is over " * 3
    async with client.stream(
        "POST", slow_llm.url + "/api/ask", json={"chatId": None, "question": question}
    ) as response:
        events = read_events(response)
        head = await take(events, 1)
        message_id = json.loads(head[0].data)["messageId"]
        cancelled = await client.post(f"{slow_llm.url}/api/streams/{message_id}/cancel")
        assert cancelled.status_code == 204
        rest = [event async for event in events]
    answer = Answer(200, response.headers, head + rest)
    assert answer.done["finishReason"] == "cancelled"
    assert answer.done["answer"] == answer.deltas
    assert len(answer.data()) < 5
    chat = (await client.get(f"{slow_llm.url}/api/chats/{answer.done['chatId']}")).json()
    assert chat["messages"][1]["status"] == "cancelled"
    assert chat["messages"][1]["content"] == answer.deltas
    again = await client.post(f"{slow_llm.url}/api/streams/{message_id}/cancel")
    assert again.status_code == 204  # cancelling a cancelled answer changes nothing
    requests = (await client.get(upstream.url + "/requests")).json()
    record = next(r for r in requests if r["messages"][-1]["content"] == question)
    assert record["outcome"] == "disconnected"
    # The upstream request closed at the cancel, not at the answer's end: it had
    # sent at most the piece under way beyond what reached the reader, and no more after.
    assert record["sentBeforeDisconnect"] <= len(answer.data()) + 1
    assert record["sent"] == record["sentBeforeDisconnect"]


async def test_cancelling_a_finished_answer_is_409(
    llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, llm.url, "done already")
    response = await client.post(f"{llm.url}/api/streams/{answer.done['messageId']}/cancel")
    assert response.status_code == 409
    assert response.json() == {
        "code": 409,
        "message": "the answer has already ended (complete)",
    }


async def test_deleting_a_chat_mid_answer_ends_its_stream_with_an_error_and_closes_upstream(
    slow_llm: ServerProcess, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    question = "delete me while I am still talking " * 3
    async with client.stream(
        "POST", slow_llm.url + "/api/ask", json={"chatId": None, "question": question}
    ) as response:
        events = read_events(response)
        head = await take(events, 1)
        chat_id = json.loads(head[0].data)["chatId"]
        deleted = await client.delete(f"{slow_llm.url}/api/chats/{chat_id}")
        assert deleted.status_code == 204
        rest = [event async for event in events]
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data) == {"code": 410, "message": "the chat was deleted"}
    requests = (await client.get(upstream.url + "/requests")).json()
    record = next(r for r in requests if r["messages"][-1]["content"] == question)
    assert record["outcome"] == "disconnected"


async def test_the_answer_is_saved_while_it_streams(
    slow_llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", slow_llm.url + "/api/ask", json={"chatId": None, "question": "save as you go"}
    ) as response:
        events = read_events(response)
        head = await take(events, 3)
        chat_id = json.loads(head[0].data)["chatId"]
        so_far = "".join(json.loads(e.data)["delta"] for e in head)
        stored = await saved(client, slow_llm.url, chat_id, so_far)
        assert stored["status"] == "streaming"
        rest = [event async for event in events]
    assert rest[-1].event == "done"


async def saved(
    client: httpx.AsyncClient, url: str, chat_id: str, so_far: str
) -> dict[str, object]:
    """The answer's row once the service's periodic save holds at least ``so_far``:
    the server's saver runs on the real clock in its own process, so we look."""
    async with asyncio.timeout(10):
        while True:
            stored = (await client.get(f"{url}/api/chats/{chat_id}")).json()["messages"][1]
            if so_far and stored["content"].startswith(so_far):
                return dict(stored)
            await asyncio.sleep(0.02)


async def test_a_crash_mid_answer_leaves_the_message_streaming_not_nothing(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = tmp_path / "crash"
    service = start_service(data, **llm_env(upstream, "fake-slow"))
    async with client.stream(
        "POST", service.url + "/api/ask", json={"chatId": None, "question": "crash now please"}
    ) as response:
        events = read_events(response)
        head = await take(events, 2)
        chat_id = json.loads(head[0].data)["chatId"]
        so_far = "".join(json.loads(e.data)["delta"] for e in head)
        await saved(client, service.url, chat_id, so_far)  # by the periodic save
        service.kill()  # SIGKILL: no shutdown, no last save
    again = start_service(data, **llm_env(upstream))
    chat = (await client.get(f"{again.url}/api/chats/{chat_id}")).json()
    question, answer = chat["messages"]
    assert question["content"] == "crash now please"
    assert answer["status"] == "streaming"
    assert answer["content"].startswith("".join(json.loads(e.data)["delta"] for e in head))


async def test_a_shutdown_mid_answer_stores_it_as_cancelled(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = tmp_path / "shutdown"
    service = start_service(data, **llm_env(upstream, "fake-slow"))
    async with client.stream(
        "POST", service.url + "/api/ask", json={"chatId": None, "question": "stop the server"}
    ) as response:
        events = read_events(response)
        head = await take(events, 1)
        service.terminate()  # SIGTERM: uvicorn gives the stream 1 s, then cuts it
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in events:
                pass
        service.wait(10)
    chat_id = json.loads(head[0].data)["chatId"]
    again = start_service(data, **llm_env(upstream))
    chat = (await client.get(f"{again.url}/api/chats/{chat_id}")).json()
    assert chat["messages"][1]["status"] == "cancelled"
    assert chat["messages"][1]["error"] == "the server is shutting down"
