"""POST /api/ask end to end: the founding guide's flow, the event shapes, history, context.

Quoted from docs/api.md: each piece is a ``message`` event with an ``id`` and data
``{"chatId", "messageId", "delta"}``; the last is ``event: done`` with
``{"chatId", "messageId", "answer", "finishReason"}``; the response carries
``Content-Location: /api/streams/{messageId}``.
"""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from askstream.testing import ServerProcess

from .conftest import CHINESE, ask

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["demo", "llm"])
def service(request: pytest.FixtureRequest) -> ServerProcess:
    """The same tests against the demo model and the fake OpenAI-compatible upstream."""
    server: ServerProcess = request.getfixturevalue(request.param)
    return server


async def test_the_founding_guides_flow(service: ServerProcess) -> None:
    # The guide's browser code: POST with Content-Type text/event-stream and a JSON
    # body, read the body as text, cut at "\n\n", keep what follows "data: ".
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            service.url + "/api/ask",
            headers={"Content-Type": "text/event-stream"},
            content=json.dumps({"chatId": None, "question": "What is SSE?"}),
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"].startswith("no-")
        last_chunk = ""
        chunks: list[str] = []
        async for value in response.aiter_text():
            last_chunk += value
            while (eol := last_chunk.find("\n\n")) >= 0:
                message = last_chunk[:eol].strip()
                chunks += [line[6:] for line in message.split("\n") if line.startswith("data: ")]
                last_chunk = last_chunk[eol + 2 :]
    payloads = [json.loads(chunk) for chunk in chunks]
    final_chunk = "".join(p["delta"] for p in payloads if "delta" in p)
    assert final_chunk
    assert payloads[-1]["answer"] == final_chunk
    assert "What is SSE?" in final_chunk


async def test_events_have_ids_and_the_documented_shapes(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, service.url, "Hello there")
    assert answer.status == 200
    deltas = answer.data()
    assert len(deltas) > 2
    chat_id, message_id = deltas[0]["chatId"], deltas[0]["messageId"]
    assert all(d.keys() == {"chatId", "messageId", "delta"} for d in deltas)
    assert all((d["chatId"], d["messageId"]) == (chat_id, message_id) for d in deltas)
    assert [e.id for e in answer.events] == [str(n) for n in range(1, len(answer.events) + 1)]
    assert answer.last.event == "done"
    # Both back ends count tokens (the demo its pieces, the fake upstream reports them).
    assert answer.done.keys() == {"chatId", "messageId", "answer", "finishReason", "usage"}
    assert answer.done["finishReason"] == "stop"
    usage = answer.done["usage"]
    assert usage.keys() == {"promptTokens", "completionTokens", "totalTokens"}
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    assert usage["completionTokens"] == len(deltas)  # a piece a token, in both
    assert (answer.done["chatId"], answer.done["messageId"]) == (chat_id, message_id)
    assert answer.headers["content-location"] == f"/api/streams/{message_id}"


async def test_done_answer_equals_the_deltas_and_the_stored_message(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, service.url, "Tell me everything")
    assert answer.done["answer"] == answer.deltas
    chat = (await client.get(f"{service.url}/api/chats/{answer.done['chatId']}")).json()
    user, assistant = chat["messages"]
    assert (user["role"], user["content"], user["status"]) == (
        "user",
        "Tell me everything",
        "complete",
    )
    assert assistant["messageId"] == answer.done["messageId"]
    assert (assistant["role"], assistant["status"]) == ("assistant", "complete")
    assert assistant["content"] == answer.done["answer"]
    assert assistant["finishReason"] == "stop"


async def test_a_chinese_question_and_answer_arrive_intact(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, service.url, CHINESE)
    assert CHINESE in answer.deltas
    assert answer.done["answer"] == answer.deltas
    chat = (await client.get(f"{service.url}/api/chats/{answer.done['chatId']}")).json()
    assert chat["title"] == CHINESE
    assert chat["messages"][0]["content"] == CHINESE
    assert chat["messages"][1]["content"] == answer.deltas


async def test_a_chat_goes_on_with_its_earlier_messages_as_context(
    llm: ServerProcess, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    first = await ask(client, llm.url, "My name is Ada.")
    chat_id = first.done["chatId"]
    second = await ask(client, llm.url, "What is my name?", chat_id=chat_id)
    assert second.done["chatId"] == chat_id
    assert second.done["messageId"] != first.done["messageId"]
    requests = (await client.get(upstream.url + "/requests")).json()
    sent = next(r for r in reversed(requests) if r["messages"][-1]["content"] == "What is my name?")
    assert sent["stream"] is True
    assert sent["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.done["answer"]},
        {"role": "user", "content": "What is my name?"},
    ]
    chat = (await client.get(f"{llm.url}/api/chats/{chat_id}")).json()
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user", "assistant"]


async def test_the_demo_says_no_model_is_configured_and_how(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    first = await ask(client, demo.url, "Hi")
    text = first.done["answer"]
    assert "No language model is configured" in text
    for variable in ("ASKSTREAM_LLM_URL", "ASKSTREAM_LLM_MODEL", "ASKSTREAM_LLM_API_KEY"):
        assert variable in text
    second = await ask(client, demo.url, "Again", chat_id=first.done["chatId"])
    assert "This chat has 2 earlier messages." in second.done["answer"]


async def test_chats_are_listed_newest_first_with_timestamps(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    ids = [(await ask(client, service.url, f"question {n}")).done["chatId"] for n in range(3)]
    listed = (await client.get(service.url + "/api/chats")).json()["chats"]
    order = [chat["chatId"] for chat in listed if chat["chatId"] in ids]
    assert order == ids[::-1]
    newest = listed[0]
    assert newest.keys() == {"chatId", "title", "createdAt", "updatedAt"}
    assert newest["title"] == "question 2"
    created = dt.datetime.fromisoformat(newest["createdAt"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)


async def test_a_message_lists_role_content_status_and_timestamps(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, service.url, "Fields?")
    chat = (await client.get(f"{service.url}/api/chats/{answer.done['chatId']}")).json()
    assert chat.keys() == {"chatId", "title", "createdAt", "updatedAt", "messages"}
    for message in chat["messages"]:
        assert message.keys() == {
            "messageId", "role", "content", "status", "finishReason", "error",
            "createdAt", "updatedAt", "usage", "reasoning",
        }  # fmt: skip
        assert dt.datetime.fromisoformat(message["updatedAt"]) >= dt.datetime.fromisoformat(
            message["createdAt"]
        )


async def test_deleting_a_chat_removes_it(
    service: ServerProcess, client: httpx.AsyncClient
) -> None:
    chat_id = (await ask(client, service.url, "Forget me")).done["chatId"]
    response = await client.delete(f"{service.url}/api/chats/{chat_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{service.url}/api/chats/{chat_id}")).status_code == 404
    listed = (await client.get(service.url + "/api/chats")).json()["chats"]
    assert chat_id not in [chat["chatId"] for chat in listed]
    gone = await ask(client, service.url, "Still there?", chat_id=chat_id)
    assert (gone.status, gone.body["code"]) == (404, 404)


async def test_many_asks_at_once_each_get_their_own_answer(
    llm: ServerProcess, client: httpx.AsyncClient
) -> None:
    import asyncio

    questions = [f"parallel question {n}" for n in range(20)]
    answers = await asyncio.gather(*(ask(client, llm.url, q) for q in questions))
    for question, answer in zip(questions, answers, strict=True):
        assert answer.done["answer"] == f"Echo: {question}" == answer.deltas
    assert len({a.done["chatId"] for a in answers}) == 20
