"""Every error of the HTTP API has a status and a JSON body ``{"code", "message"}``.

Quoted from docs/api.md: another method on /api/ask is 405 with ``Allow: POST``; a
body that is not JSON is 400; a missing or empty question or wrong types are 422;
a body over 64 KiB is 413; an unknown chatId is 404; an LLM back end that is
unreachable or refuses before the first token is 502; anything unexpected is 500
with a generic message; a failure after streaming began is ``event: error``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from askstream.testing import ServerProcess, free_port

from .conftest import StartService, ask, llm_env

pytestmark = pytest.mark.anyio


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"code", "message"}
    assert body["code"] == status
    for word in words:
        assert word in body["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_another_method_on_ask_is_405_with_allow_post(
    demo: ServerProcess, client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, demo.url + "/api/ask")
    assert_error(response, 405, method, "POST")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"question": "unfinished', b"\xff\xfe\xfa", b"{'question': 'hi'}"],
    ids=["empty", "text", "truncated", "not-utf8", "single-quotes"],
)
async def test_a_body_that_is_not_json_is_400(
    demo: ServerProcess, client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(demo.url + "/api/ask", content=body)
    assert_error(response, 400, "not JSON")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "question"),
        ({"chatId": None}, "question"),
        ({"question": ""}, "question"),
        ({"question": "  \n\t "}, "question"),
        ({"question": 42}, "question"),
        ({"question": ["a"]}, "question"),
        ({"question": None}, "question"),
        ({"question": "hi", "chatId": 7}, "chatId"),
        ({"question": "hi", "chatId": {"id": "x"}}, "chatId"),
        ([{"question": "hi"}], "object"),
        ("hi", "object"),
        (None, "object"),
    ],
    ids=[
        "no-fields", "no-question", "empty", "blank", "number", "list", "null",
        "chat-id-number", "chat-id-object", "array-body", "string-body", "null-body",
    ],
)  # fmt: skip
async def test_a_missing_or_empty_question_or_wrong_types_are_422(
    demo: ServerProcess, client: httpx.AsyncClient, body: object, field: str
) -> None:
    response = await client.post(demo.url + "/api/ask", content=json.dumps(body))
    assert_error(response, 422, field)


async def test_a_body_over_the_limit_by_content_length_is_413(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    question = "x" * (64 * 1024)
    response = await client.post(demo.url + "/api/ask", json={"question": question})
    assert_error(response, 413, "65536 bytes")


async def test_a_chunked_body_over_the_limit_is_413(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"question": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(demo.url + "/api/ask", content=body())
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


async def test_a_body_of_exactly_the_limit_is_accepted(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    # Spaces, so that the demo's echo of it streams in a few pieces.
    padding = 64 * 1024 - len(json.dumps({"question": "ab"}))
    body = json.dumps({"question": "a" + " " * padding + "b"}).encode()
    assert len(body) == 64 * 1024
    answer = await ask(client, demo.url, content=body)
    assert answer.status == 200
    assert answer.last.event == "done"


async def test_the_body_limit_is_configurable(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    service = start_service(ASKSTREAM_MAX_BODY_SIZE="100")
    response = await client.post(service.url + "/api/ask", json={"question": "z" * 100})
    assert_error(response, 413, "100 bytes")


async def test_an_unknown_chat_is_404(demo: ServerProcess, client: httpx.AsyncClient) -> None:
    response = await client.post(
        demo.url + "/api/ask", json={"chatId": "no-such-chat", "question": "hi"}
    )
    assert_error(response, 404, "no-such-chat")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/api/nope"),
        ("GET", "/api/chats/nope"),
        ("DELETE", "/api/chats/nope"),
        ("GET", "/api/streams/nope"),
        ("POST", "/api/streams/nope/cancel"),
    ],
)
async def test_unknown_routes_and_ids_are_404_json(
    demo: ServerProcess, client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_error(await client.request(method, demo.url + path), 404)


# -- the LLM back end --------------------------------------------------------------


async def test_an_upstream_that_refuses_is_502_and_stores_nothing(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-refuse"))
    response = await client.post(service.url + "/api/ask", json={"question": "hi"})
    assert_error(response, 502, "503", "the fake upstream refuses")
    listed = (await client.get(service.url + "/api/chats")).json()
    assert listed == {"chats": [], "nextCursor": None}


async def test_an_unreachable_upstream_is_502(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    service = start_service(ASKSTREAM_LLM_URL=closed, ASKSTREAM_LLM_MODEL="m")
    response = await client.post(service.url + "/api/ask", json={"question": "hi"})
    assert_error(response, 502, "cannot reach the LLM back end")


async def test_an_upstream_silent_past_the_read_timeout_is_502(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-slow", ASKSTREAM_LLM_READ_TIMEOUT="0.1"))
    response = await client.post(service.url + "/api/ask", json={"question": "hi"})
    assert_error(response, 502, "sent nothing for 0.1 s")


async def test_a_wrong_api_key_is_502_with_the_upstreams_message(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    with ServerProcess(
        "askstream.testing:FakeUpstream.from_env",
        factory=True,
        env={"ASKSTREAM_FAKE_API_KEY": "sk-right"},
    ) as guarded:
        wrong = start_service(**llm_env(guarded, ASKSTREAM_LLM_API_KEY="sk-wrong"))
        response = await client.post(wrong.url + "/api/ask", json={"question": "hi"})
        assert_error(response, 502, "401", "Incorrect API key")
        right = start_service(**llm_env(guarded, ASKSTREAM_LLM_API_KEY="sk-right"))
        answer = await ask(client, right.url, "hi")
        assert answer.done["answer"] == "Echo: hi"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("fake-fail", "the fake upstream failed mid-answer"),
        ("fake-drop", "ended the answer without finishing"),
    ],
)
async def test_an_upstream_failing_mid_answer_ends_the_stream_with_an_error_event(
    start_service: StartService,
    upstream: ServerProcess,
    client: httpx.AsyncClient,
    model: str,
    message: str,
) -> None:
    service = start_service(**llm_env(upstream, model))
    answer = await ask(client, service.url, "a long enough question")
    assert answer.status == 200
    assert [e.event for e in answer.events] == ["message"] * 3 + ["error"]
    error = json.loads(answer.last.data)
    assert error.keys() == {"code", "message"}
    assert error["code"] == 502
    assert message in error["message"]
    chat = (await client.get(f"{service.url}/api/chats/{answer.data()[0]['chatId']}")).json()
    stored = chat["messages"][1]
    assert (stored["status"], stored["content"]) == ("failed", answer.deltas)
    assert message in stored["error"]


async def test_an_unexpected_error_is_500_with_the_detail_only_in_the_log(
    start_service: StartService,
    client: httpx.AsyncClient,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    service = start_service(tmp_path)
    assert (await client.get(service.url + "/api/chats")).status_code == 200
    # Pull the floor away. (sqlite3's `with` commits but does not close: closing does.)
    with closing(sqlite3.connect(tmp_path / "askstream.db")) as db, db:
        db.execute("DROP TABLE askstream_messages")
        db.execute("DROP TABLE askstream_chats")
    response = await client.get(service.url + "/api/chats")
    assert response.json() == {"code": 500, "message": "internal server error"}
    assert response.status_code == 500
    asked = await client.post(service.url + "/api/ask", json={"question": "hi"})
    assert_error(asked, 500)
    assert "askstream_" not in asked.text
    log = capfd.readouterr().err
    assert "no such table: askstream_chats" in log
