"""Bad data from the model or the client, over HTTP: lone surrogates, NUL, deep JSON,
HEAD, Allow, and how much of the input an error message echoes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from askstream.testing import ServerProcess

from .conftest import StartService, ask, llm_env

pytestmark = pytest.mark.anyio


# -- from the model ------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
    else:
        yield {"ASKSTREAM_DATABASE_URL": request.getfixturevalue("pg_database")}


async def test_lone_surrogates_from_the_model_become_fffd_and_the_answer_completes(
    start_service: StartService,
    upstream: ServerProcess,
    client: httpx.AsyncClient,
    database_env: dict[str, str],
) -> None:
    # The fake upstream sends an emoji's two halves in two chunks: "\ud83d", "\ude42".
    service = start_service(**llm_env(upstream, "fake-surrogate"), **database_env)
    answer = await ask(client, service.url, "emoji")
    assert answer.status == 200
    expected = "Echo\ufffd\ufffd: emoji"  # the halves come after the first piece
    assert answer.done["answer"] == answer.deltas == expected
    chat = (await client.get(f"{service.url}/api/chats/{answer.done['chatId']}")).json()
    stored = chat["messages"][1]
    assert (stored["status"], stored["content"]) == ("complete", expected)
    # A reader who comes later gets the same events from the log.
    again = await ask(
        client, service.url, method="GET", path=f"/api/streams/{answer.done['messageId']}"
    )
    assert again.done["answer"] == expected


# -- from the client -----------------------------------------------------------------


@pytest.fixture
def any_db_service(start_service: StartService, database_env: dict[str, str]) -> ServerProcess:
    return start_service(**database_env)


@pytest.mark.parametrize(
    "body",
    [
        {"question": "a\u0000b"},
        {"question": "hi", "chatId": "c\u0000"},
        {"question": "half \ud83d"},
    ],
    ids=["nul-question", "nul-chat-id", "lone-surrogate"],
)
async def test_nul_or_a_lone_surrogate_in_a_body_field_is_422(
    any_db_service: ServerProcess, client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    raw = json.dumps(body).encode()  # ASCII, escapes: \u0000 and \ud83d as they come
    response = await client.post(any_db_service.url + "/api/ask", content=raw)
    assert response.status_code == 422
    assert response.json()["code"] == 422


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/chats/a%00b", {}),
        ("DELETE", "/api/chats/%00", {}),
        ("GET", "/api/streams/a%00", {}),
        ("POST", "/api/streams/a%00/cancel", {}),
        ("GET", "/api/streams/abc?lastEventId=1%002", {}),
    ],
    ids=["chat", "delete", "stream", "cancel", "last-event-id-query"],
)
async def test_nul_in_an_id_is_422(
    any_db_service: ServerProcess,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    response = await client.request(method, any_db_service.url + path, headers=headers)
    assert response.status_code == 422
    assert response.json() == {
        "code": 422,
        "message": "the request's path, query or headers hold a NUL character",
    }


@pytest.mark.parametrize("depth", [33, 1000, 30_000])
async def test_json_nested_too_deep_is_400(
    demo: ServerProcess, client: httpx.AsyncClient, depth: int
) -> None:
    # 33 levels: one past the limit; 1,000 and more: json.loads alone raised RecursionError.
    body = b'{"question": "hi", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = await client.post(demo.url + "/api/ask", content=body)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "the JSON nests deeper than 32 levels"}


async def test_json_nested_within_the_limit_is_fine(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    # Brackets inside strings do not count.
    body = b'{"question": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "x": ' + b"[" * 31
    body += b"]" * 31 + b"}"
    answer = await ask(client, demo.url, content=body)
    assert answer.status == 200


# -- HEAD and Allow ------------------------------------------------------------------


async def test_head_answers_every_get_route_with_its_headers_and_no_body(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, demo.url, "head?")
    chat_id, message_id = answer.done["chatId"], answer.done["messageId"]
    paths = [
        "/",
        "/static/app.js",
        "/api/health",
        "/api/chats",
        f"/api/chats/{chat_id}",
        f"/api/streams/{message_id}",
        "/api/chats/nope",
        "/openapi.json",
    ]
    for path in paths:
        got = await client.get(demo.url + path)
        head = await client.head(demo.url + path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path


async def test_head_on_a_live_stream_ends_after_the_headers(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-slow"))
    async with client.stream("POST", service.url + "/api/ask", json={"question": "q"}) as live:
        head = await client.head(service.url + live.headers["content-location"])
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/chats/abc", "GET, HEAD, DELETE"),
        ("POST", "/api/chats", "GET, HEAD"),
        ("GET", "/api/ask", "POST"),
        ("DELETE", "/api/streams/abc", "GET, HEAD"),
        ("GET", "/api/streams/abc/cancel", "POST"),
        ("POST", "/api/health", "GET, HEAD"),
    ],
)
async def test_405_allow_lists_every_method_of_the_resource(
    demo: ServerProcess, client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, demo.url + path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["message"].endswith(f"; use {allow}")
    assert response.json()["message"].startswith(f"{method} is not allowed")


async def test_head_where_no_get_is_405_naming_head(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    response = await client.head(demo.url + "/api/ask")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert response.content == b""
    get = await client.get(demo.url + "/api/ask")
    assert get.json()["message"] == "GET is not allowed on '/api/ask'; use POST"


# -- echoes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/chats/{long}", {}),
        ("GET", "/api/streams/{long}", {}),
        ("POST", "/api/streams/{long}/cancel", {}),
        ("POST", "/api/ask", {"json": {"question": "hi", "chatId": "{long}"}}),
        ("GET", "/api/nothing/{long}", {}),
        ("PUT", "/api/chats/{long}", {}),
    ],
    ids=["chat", "stream", "cancel", "ask", "no-route", "405"],
)
async def test_error_messages_echo_at_most_about_100_characters_of_the_input(
    demo: ServerProcess,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, dict[str, str]],
) -> None:
    long = "x" * 6000
    if "json" in kwargs:
        kwargs = {"json": {k: v.replace("{long}", long) for k, v in kwargs["json"].items()}}
    response = await client.request(method, demo.url + path.replace("{long}", long), **kwargs)
    assert 400 <= response.status_code < 500
    message = response.json()["message"]
    assert "x" * 80 in message
    assert "x" * 101 not in message
    assert "characters)" in message


async def test_a_stream_read_after_a_long_bad_event_id_echoes_it_cut(
    demo: ServerProcess, client: httpx.AsyncClient
) -> None:
    answer = await ask(client, demo.url, "hi")
    response = await client.get(
        f"{demo.url}/api/streams/{answer.done['messageId']}", headers={"Last-Event-ID": "9" * 5000}
    )
    assert response.status_code == 400
    assert len(response.json()["message"]) < 300
