"""The AI SDK's door: ``POST /api/chat`` and ``GET /api/chat/{id}/stream`` (docs/api.md).

The real client is the ``ai`` npm package: ``test_the_ai_package_reads_asks_resumes_and_cancels``
runs tests/node/aisdk.test.mjs against a running service. The tests here hold
the routes to their errors, their wire format and the translation of the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from askstream.service import Settings, create_app
from askstream.service._aisdk import CHAT_ID
from askstream.service._ui_stream import RESUME, UIMessageChunks
from askstream.sse import Event
from askstream.testing import ServerProcess, require

from ..conftest import REDIS_URL, redis_available
from ..streams.conftest import delete_prefix
from .conftest import Answer, StartService, ask, llm_env, read_events
from .node import require_ai_package, run_node_tests
from .test_shutdown import create_tables

pytestmark = pytest.mark.anyio


TOKENS = {"alice": "alice-token-0123456789abcdef", "mallory": "mallory-token-0123456789abcd"}
ALICE = {"Authorization": f"Bearer {TOKENS['alice']}"}
MALLORY = {"Authorization": f"Bearer {TOKENS['mallory']}"}
TOKENS_ENV = {"ASKSTREAM_TOKENS": ",".join(f"{user}:{token}" for user, token in TOKENS.items())}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo service in token mode; slow enough (~1.5 s an answer) to drop mid-answer."""
    server = ServerProcess(
        "askstream.service:create_app",
        factory=True,
        env={
            "ASKSTREAM_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "ASKSTREAM_DEMO_DELAY": "0.02",
            "ASKSTREAM_LOG_LEVEL": "warning",
            "ASKSTREAM_SAVE_INTERVAL": "0.1",
            **TOKENS_ENV,
        },
        args=["--timeout-graceful-shutdown", "1"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_env(pg_database: str) -> Iterator[dict[str, str]]:
    """Redis and PostgreSQL for two instances, as test_shutdown.py's ``redis_env``."""
    require(redis_available(), f"Redis at {REDIS_URL}")
    asyncio.run(create_tables(pg_database))  # before two instances race to
    prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
    yield {
        "ASKSTREAM_REDIS_URL": REDIS_URL,
        "ASKSTREAM_REDIS_PREFIX": prefix,
        "ASKSTREAM_DATABASE_URL": pg_database,
        **TOKENS_ENV,  # one user on both: instances share no session key
    }
    asyncio.run(delete_prefix(prefix))


def chat_body(chat_id: str, *texts: str, **extra: Any) -> dict[str, Any]:
    """A body as DefaultChatTransport sends it: the conversation, user turns only."""
    messages = [
        {"id": uuid.uuid4().hex, "role": "user", "parts": [{"type": "text", "text": text}]}
        for text in texts
    ]
    return {"id": chat_id, "messages": messages, "trigger": "submit-message", **extra}


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def chunks(answer: Answer) -> list[dict[str, Any]]:
    """The JSON chunks of a UI message stream, after checking its frame."""
    assert [event.event for event in answer.events] == ["message"] * len(answer.events)
    assert all(event.id is None for event in answer.events)
    assert answer.events[-1].data == "[DONE]"
    return [json.loads(event.data) for event in answer.events[:-1]]


def finish(chunk: dict[str, Any]) -> dict[str, Any]:
    """A ``finish`` chunk without its ``messageMetadata`` (the answer's usage)."""
    return {key: value for key, value in chunk.items() if key != "messageMetadata"}


def text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(chunk["delta"] for chunk in parts if chunk["type"] == "text-delta")


async def stored_answer(
    client: httpx.AsyncClient, url: str, chat_id: str, message_id: str
) -> dict[str, Any]:
    response = await client.get(f"{url}/api/chats/{chat_id}", headers=ALICE)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(
        m for m in response.json()["messages"] if m["messageId"] == message_id
    )
    return found


# -- the real client ----------------------------------------------------------------


def test_the_ai_package_reads_asks_resumes_and_cancels(service: ServerProcess) -> None:
    node = require_ai_package()
    result = run_node_tests(
        node,
        "aisdk.test.mjs",
        {"ASKSTREAM_URL": service.url, "ASKSTREAM_TOKEN": TOKENS["alice"]},
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout
    assert "# pass 5" in result.stdout, result.stdout[-2000:]


# -- the wire ------------------------------------------------------------------------


async def test_an_answer_is_a_ui_message_stream_ending_in_done(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    answer = await ask(
        client, service.url, path="/api/chat", json=chat_body(chat_id, "Hi?"), headers=ALICE
    )
    assert answer.status == 200
    assert answer.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert answer.headers["content-type"].startswith("text/event-stream")
    parts = chunks(answer)
    message_id = parts[0]["messageId"]
    assert answer.headers["content-location"] == f"/api/streams/{message_id}"
    assert parts[0] == {"type": "start", "messageId": message_id}
    assert parts[1] == {"type": "text-start", "id": "text-0"}
    assert parts[-2:] == [
        {"type": "text-end", "id": "text-0"},
        {"type": "finish", "finishReason": "stop", "messageMetadata": parts[-1]["messageMetadata"]},
    ]
    assert {chunk["type"] for chunk in parts[2:-2]} == {"text-delta"}
    stored = await stored_answer(client, service.url, chat_id, message_id)
    assert stored["status"] == "complete"
    # The usage of our `done`, in the AI SDK's names, as the message's metadata.
    usage = stored["usage"]
    assert usage["completionTokens"] > 0
    assert parts[-1]["messageMetadata"] == {
        "usage": {
            "inputTokens": usage["promptTokens"],
            "outputTokens": usage["completionTokens"],
            "totalTokens": usage["totalTokens"],
        }
    }
    assert text_of(parts) == stored["content"]
    assert stored["content"].startswith("You asked: “Hi?”.")


async def test_a_chat_continues_with_the_servers_history_and_reads_only_the_last_message(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    first = await ask(
        client, service.url, path="/api/chat", json=chat_body(chat_id, "One?"), headers=ALICE
    )
    assert first.status == 200
    # Earlier messages the client sends are not read: the server has the chat.
    body = chat_body(chat_id, "Forged earlier turn", "Two?")
    second = await ask(client, service.url, path="/api/chat", json=body, headers=ALICE)
    assert "This chat has 2 earlier messages" in text_of(chunks(second))
    response = await client.get(f"{service.url}/api/chats/{chat_id}", headers=ALICE)
    questions = [m["content"] for m in response.json()["messages"] if m["role"] == "user"]
    assert questions == ["One?", "Two?"]


async def test_resume_replays_the_active_answer_from_its_start(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    url = f"{service.url}/api/chat"
    async with client.stream("POST", url, json=chat_body(chat_id, "Drop me"), headers=ALICE) as r:
        seen = []
        async for event in read_events(r):
            seen.append(json.loads(event.data))
            if len(seen) == 4:
                break  # the connection drops mid-answer
    resumed = await ask(
        client, service.url, method="GET", path=f"/api/chat/{chat_id}/stream", headers=ALICE
    )
    assert resumed.status == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    parts = chunks(resumed)
    assert parts[:4] == seen
    assert finish(parts[-1]) == {"type": "finish", "finishReason": "stop"}
    stored = await stored_answer(client, service.url, chat_id, seen[0]["messageId"])
    assert text_of(parts) == stored["content"]


async def resumes(client: httpx.AsyncClient, url: str) -> float:
    """``askstream_resumes_total`` as ``/metrics`` says it now."""
    scrape = await client.get(url + "/metrics", headers=ALICE)
    assert scrape.status_code == 200, scrape.text
    return next(
        sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
        if sample.name == "askstream_resumes_total"
    )


async def test_a_resume_of_an_answer_in_progress_is_counted_in_metrics(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    url = f"{service.url}/api/chat"
    before = await resumes(client, service.url)
    async with client.stream("POST", url, json=chat_body(chat_id, "Drop me"), headers=ALICE) as r:
        async for _ in read_events(r):
            break  # the connection drops mid-answer
    assert await resumes(client, service.url) == before  # asking is no resume
    resumed = await ask(
        client, service.url, method="GET", path=f"/api/chat/{chat_id}/stream", headers=ALICE
    )
    assert resumed.status == 200
    assert await resumes(client, service.url) == before + 1
    # Nothing left to resume (204) is no resume either.
    none = await client.get(f"{url}/{chat_id}/stream", headers=ALICE)
    assert none.status_code == 204
    assert await resumes(client, service.url) == before + 1


async def test_a_failure_after_the_start_is_an_error_chunk_then_done(
    client: httpx.AsyncClient, start_service: StartService, upstream: ServerProcess
) -> None:
    failing = start_service(**llm_env(upstream, "fake-fail"))
    answer = await ask(client, failing.url, path="/api/chat", json=chat_body(new_id(), "Fail?"))
    assert answer.status == 200
    parts = chunks(answer)
    assert parts[0]["type"] == "start"
    assert parts[-2] == {"type": "text-end", "id": "text-0"}
    assert parts[-1]["type"] == "error"
    assert "the fake upstream failed mid-answer" in parts[-1]["errorText"]


async def test_a_failure_before_the_first_token_is_502_json(
    client: httpx.AsyncClient, start_service: StartService, upstream: ServerProcess
) -> None:
    refusing = start_service(**llm_env(upstream, "fake-refuse"))
    response = await client.post(f"{refusing.url}/api/chat", json=chat_body(new_id(), "Hi?"))
    assert response.status_code == 502
    assert set(response.json()) == {"code", "message"}
    assert response.json()["code"] == 502


async def test_a_stopping_instance_ends_its_readers_in_protocol_and_another_resumes(
    shared_env: dict[str, str], start_service: StartService, client: httpx.AsyncClient
) -> None:
    # (shared_env first: its database is dropped after the services stop.)
    # B generates (a piece every 50 ms); the reader follows it on A, which stops.
    env = {**shared_env, "ASKSTREAM_DEMO_DELAY": "0.05"}
    a = start_service(**env, ASKSTREAM_SHUTDOWN_TIMEOUT="1")
    b = start_service(**env)
    chat_id = new_id()
    body = chat_body(chat_id, "Hi?")
    async with client.stream("POST", f"{b.url}/api/chat", json=body, headers=ALICE) as asked:
        assert asked.status_code == 200
        on_b = read_events(asked)
        message_id = json.loads((await anext(on_b)).data)["messageId"]
        url = f"{a.url}/api/chat/{chat_id}/stream"
        cut: list[str] = []
        async with client.stream("GET", url, headers=ALICE) as reader:
            assert reader.status_code == 200
            async for event in read_events(reader):  # RemoteProtocolError if cut short
                cut.append(event.data)
                if len(cut) == 3:
                    a.terminate()
        a.wait(5)
        # The last words are the SDK's own: an error chunk, then [DONE].
        assert cut[-1] == "[DONE]"
        assert json.loads(cut[-2]) == {"type": "error", "errorText": RESUME}
        assert json.loads(cut[0]) == {"type": "start", "messageId": message_id}
        # useChat's resume, on B: the whole answer, from its start.
        resumed = await ask(
            client, b.url, method="GET", path=f"/api/chat/{chat_id}/stream", headers=ALICE
        )
        whole = [event.data async for event in on_b]
    parts = chunks(resumed)
    assert parts[0] == {"type": "start", "messageId": message_id}
    assert finish(parts[-1]) == {"type": "finish", "finishReason": "stop"}
    assert text_of(parts) == text_of([json.loads(data) for data in whole[:-1]])
    stored = await stored_answer(client, b.url, chat_id, message_id)
    assert stored["status"] == "complete"
    assert text_of(parts) == stored["content"]


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"id": "c1", "messages": [', b"\xff\xfe"],
    ids=["text", "cut-short", "not-utf8"],
)
async def test_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, service: ServerProcess, body: bytes
) -> None:
    response = await client.post(f"{service.url}/api/chat", content=body, headers=ALICE)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "the body is not JSON"}


def _user(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"id": "m1", "role": role, "parts": list(parts)}


TEXT = {"type": "text", "text": "Hi?"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "JSON object"),
        ({"messages": [_user(TEXT)]}, "id: Field required"),
        ({"id": "a/b", "messages": [_user(TEXT)]}, "id: String should match pattern"),
        ({"id": "x" * 65, "messages": [_user(TEXT)]}, "id: String should match pattern"),
        ({"id": 7, "messages": [_user(TEXT)]}, "id: Input should be a valid string"),
        ({"id": "c1"}, "messages: Field required"),
        ({"id": "c1", "messages": []}, "messages: List should have at least 1 item"),
        ({"id": "c1", "messages": [_user(TEXT, role="tool")]}, "role: Input should be"),
        ({"id": "c1", "messages": [_user(TEXT)], "trigger": "x"}, "trigger: Input should be"),
        ({"id": "c1", "messages": [_user(TEXT, role="assistant")]}, "it must be the user's"),
        ({"id": "c1", "messages": [_user()]}, "has no text"),
        ({"id": "c1", "messages": [_user({"type": "text", "text": " \n"})]}, "has no text"),
        (
            {"id": "c1", "messages": [_user({"type": "file", "url": "data:,x"})]},
            "has no text",
        ),
        ({"id": "c1", "messages": [_user({"type": "text", "text": "a\x00"})]}, "NUL"),
    ],
    ids=[
        "not-an-object",
        "no-id",
        "id-with-a-slash",
        "id-too-long",
        "id-not-a-string",
        "no-messages",
        "empty-messages",
        "unknown-role",
        "unknown-trigger",
        "last-is-assistants",
        "no-parts",
        "blank-text",
        "only-a-file",
        "nul-in-text",
    ],
)
async def test_the_wrong_json_is_422_saying_what_is_wrong(
    client: httpx.AsyncClient, service: ServerProcess, body: Any, says: str
) -> None:
    response = await client.post(f"{service.url}/api/chat", json=body, headers=ALICE)
    assert response.status_code == 422
    error = response.json()
    assert set(error) == {"code", "message"}
    assert error["code"] == 422
    assert says in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/chat"), ("GET", "/api/chat/c1/stream")],
    ids=["post", "resume"],
)
async def test_without_a_token_it_is_401(
    client: httpx.AsyncClient, service: ServerProcess, method: str, path: str
) -> None:
    response = await client.request(method, service.url + path, json=chat_body("c1", "Hi?"))
    assert response.status_code == 401
    assert response.json()["code"] == 401


async def test_a_strangers_chat_is_404_to_post_and_to_resume(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    mine = await ask(
        client, service.url, path="/api/chat", json=chat_body(chat_id, "Mine"), headers=ALICE
    )
    assert mine.status == 200
    response = await client.post(
        f"{service.url}/api/chat", json=chat_body(chat_id, "Let me in"), headers=MALLORY
    )
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": f"no chat {chat_id!r}"}
    response = await client.get(f"{service.url}/api/chat/{chat_id}/stream", headers=MALLORY)
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": f"no chat {chat_id!r}"}
    # And the owner's chat is untouched.
    detail = await client.get(f"{service.url}/api/chats/{chat_id}", headers=ALICE)
    assert [m["content"] for m in detail.json()["messages"] if m["role"] == "user"] == ["Mine"]


async def test_requests_making_the_same_new_chat_at_once_get_200_or_409_never_500(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    async def post(chat_id: str, n: int) -> int:
        body = chat_body(chat_id, f"Me first ({n})")
        response = await client.post(f"{service.url}/api/chat", json=body, headers=ALICE)
        if response.status_code == 409:
            assert "was just made by another request" in response.json()["message"]
        return response.status_code

    # A race: rounds until one is lost (most rounds lose it at once).
    for _ in range(20):
        chat_id = new_id()
        statuses = await asyncio.gather(*(post(chat_id, n) for n in range(8)))
        assert set(statuses) <= {200, 409}, statuses
        detail = await client.get(f"{service.url}/api/chats/{chat_id}", headers=ALICE)
        questions = [m for m in detail.json()["messages"] if m["role"] == "user"]
        assert len(questions) == statuses.count(200)  # a 409 left nothing behind
        if 409 in statuses:
            break
    else:
        pytest.fail("no two requests ever raced to make a chat")


async def test_with_browser_sessions_another_session_gets_404_while_the_owner_resumes(
    start_service: StartService,
) -> None:
    service = start_service(ASKSTREAM_DEMO_DELAY="0.02")  # no tokens: anonymous sessions
    chat_id = new_id()
    timeout = httpx.Timeout(20.0)
    async with (
        httpx.AsyncClient(timeout=timeout) as owner,
        httpx.AsyncClient(timeout=timeout) as stranger,
    ):
        url = f"{service.url}/api/chat"
        async with owner.stream("POST", url, json=chat_body(chat_id, "Mine")) as asked:
            assert asked.status_code == 200
            first = await anext(read_events(asked))
            assert owner.cookies.get("askstream_session")  # who the owner is
            for response in (
                await stranger.post(url, json=chat_body(chat_id, "Let me in")),
                await stranger.get(f"{url}/{chat_id}/stream"),
            ):
                assert response.status_code == 404
                assert response.json() == {"code": 404, "message": f"no chat {chat_id!r}"}
            resumed = await ask(
                owner, service.url, method="GET", path=f"/api/chat/{chat_id}/stream"
            )
            assert resumed.status == 200
            assert chunks(resumed)[0] == json.loads(first.data)
            assert finish(chunks(resumed)[-1]) == {"type": "finish", "finishReason": "stop"}


async def test_resuming_an_unknown_chat_is_404(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    response = await client.get(f"{service.url}/api/chat/{new_id()}/stream", headers=ALICE)
    assert response.status_code == 404
    assert response.json()["code"] == 404


async def test_resuming_a_chat_id_that_cannot_be_one_is_422(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    response = await client.get(f"{service.url}/api/chat/{'x' * 65}/stream", headers=ALICE)
    assert response.status_code == 422
    assert response.json()["code"] == 422


async def test_resuming_when_nothing_is_being_answered_is_204(
    client: httpx.AsyncClient, service: ServerProcess
) -> None:
    chat_id = new_id()
    done = await ask(
        client, service.url, path="/api/chat", json=chat_body(chat_id, "Hi?"), headers=ALICE
    )
    assert chunks(done)[-1]["type"] == "finish"
    response = await client.get(f"{service.url}/api/chat/{chat_id}/stream", headers=ALICE)
    assert response.status_code == 204
    assert response.content == b""


def test_the_openapi_document_describes_both_routes_chunk_by_chunk() -> None:
    logger = logging.getLogger("askstream")
    level = logger.level
    try:
        app = create_app(Settings(data_dir=Path("never-written"), secret_key="only-the-document"))
        document = app.openapi()
    finally:
        logger.setLevel(level)
    post = document["paths"]["/api/chat"]["post"]
    resume = document["paths"]["/api/chat/{chat_id}/stream"]["get"]
    assert "204" in resume["responses"]
    for operation in (post, resume):
        response = operation["responses"]["200"]
        assert response["headers"]["x-vercel-ai-ui-message-stream"]["schema"] == {"const": "v1"}
        [stream] = response["content"].values()
        data = stream["itemSchema"]["properties"]["data"]["anyOf"]
        assert data[0] == {"const": "[DONE]"}
        kinds = [
            chunk["properties"]["type"]["const"] for chunk in data[1]["contentSchema"]["oneOf"]
        ]
        assert kinds == [
            "start",
            "text-start",
            "text-delta",
            "text-end",
            "finish",
            "abort",
            "error",
        ]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in json.dumps(body), "a $ref into $defs would point at the document's root"
    assert body["required"] == ["id", "messages"]
    assert body["properties"]["id"]["pattern"] == CHAT_ID


# -- the translation, without a server -----------------------------------------------


def _delta(text: str) -> Event:
    return Event(json.dumps({"chatId": "c", "messageId": "m", "delta": text}))


def _done(reason: str) -> Event:
    return Event(json.dumps({"answer": "", "finishReason": reason}), event="done")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("stop", {"type": "finish", "finishReason": "stop"}),
        ("length", {"type": "finish", "finishReason": "length"}),
        ("content_filter", {"type": "finish", "finishReason": "content-filter"}),
        ("tool_calls", {"type": "finish", "finishReason": "tool-calls"}),
        ("something_new", {"type": "finish", "finishReason": "other"}),
        ("cancelled", {"type": "abort", "reason": "cancelled"}),
    ],
    ids=["stop", "length", "content-filter", "tool-calls", "other", "cancelled"],
)
def test_finish_reasons_become_the_sdks(reason: str, finish: dict[str, str]) -> None:
    ui = UIMessageChunks("m")
    out = [
        ui.start(),
        *ui.feed(_delta("Hi")),
        *ui.feed(_delta(' "there"\n')),
        *ui.feed(_done(reason)),
    ]
    assert [json.loads(chunk) for chunk in out] == [
        {"type": "start", "messageId": "m"},
        {"type": "text-start", "id": "text-0"},
        {"type": "text-delta", "id": "text-0", "delta": "Hi"},
        {"type": "text-delta", "id": "text-0", "delta": ' "there"\n'},
        {"type": "text-end", "id": "text-0"},
        finish,
    ]


def test_the_usage_of_done_is_the_finish_chunks_message_metadata() -> None:
    usage = {"promptTokens": 12, "completionTokens": 57, "totalTokens": 69}
    done = Event(json.dumps({"answer": "", "finishReason": "stop", "usage": usage}), event="done")
    assert [json.loads(c) for c in UIMessageChunks("m").feed(done)] == [
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {
                "usage": {"inputTokens": 12, "outputTokens": 57, "totalTokens": 69}
            },
        }
    ]
    # A model that counted nothing (usage null): no metadata at all.
    unknown = Event(json.dumps({"answer": "", "finishReason": "stop", "usage": None}), event="done")
    assert [json.loads(c) for c in UIMessageChunks("m").feed(unknown)] == [
        {"type": "finish", "finishReason": "stop"}
    ]


def test_an_answer_without_text_has_no_text_part() -> None:
    ui = UIMessageChunks("m")
    assert [json.loads(c) for c in ui.feed(_done("stop"))] == [
        {"type": "finish", "finishReason": "stop"}
    ]
    error = Event(json.dumps({"code": 502, "message": "upstream broke"}), event="error")
    assert [json.loads(c) for c in UIMessageChunks("m").feed(error)] == [
        {"type": "error", "errorText": "upstream broke"}
    ]


def test_events_of_kinds_it_does_not_know_are_left_out() -> None:
    ui = UIMessageChunks("m")
    assert ui.feed(Event("{}", event="something-later")) == []
