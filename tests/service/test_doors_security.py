"""The three newer doors (``/v1/``, ``/api/chat``, ``/metrics``) held to issue 11's
invariants (docs/security.md), as an attacker and an operator would try them, over
real sockets: tokens, per-user isolation (a stranger's id is the same 404 as one
that never existed), errors in each door's shape, the generation limits, a failure
mid-answer in each door's protocol, and pages on other origins.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from askstream.service._demo import DEMO_MODEL
from askstream.service._metrics import OUTCOMES, REFUSALS
from askstream.testing import ServerProcess

from .conftest import (
    KINDS,
    Deployment,
    StartService,
    _module_service,
    deployments,
    llm_env,
    read_events,
)

pytestmark = pytest.mark.anyio

TOKENS = {
    "alice": "alice-token-0123456789abcdef",
    "bob": "bob-token-0123456789abcdef01",
    "carol": "carol-token-0123456789abcde",
}
TOKENS_ENV = {"ASKSTREAM_TOKENS": ",".join(f"{user}:{token}" for user, token in TOKENS.items())}
ALICE, BOB, CAROL = ({"Authorization": f"Bearer {TOKENS[u]}"} for u in ("alice", "bob", "carol"))
# About 80 pieces 20 ms apart: an answer is still streaming while others try it.
SLOW = {"ASKSTREAM_DEMO_DELAY": "0.02"}


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo model behind three users' tokens."""
    yield from _module_service(tmp_path_factory, **TOKENS_ENV, **SLOW)


def completion(question: str, *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": DEMO_MODEL,
        "messages": [{"role": "user", "content": question}],
        "stream": stream,
        **extra,
    }


def chat(chat_id: str, question: str) -> dict[str, Any]:
    """A body as the AI SDK's DefaultChatTransport sends it."""
    message = {
        "id": uuid.uuid4().hex,
        "role": "user",
        "parts": [{"type": "text", "text": question}],
    }
    return {"id": chat_id, "messages": [message], "trigger": "submit-message"}


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def assert_error(response: httpx.Response, status: int, *, openai_type: str | None = None) -> None:
    """``{code, message}``, and under /v1/ OpenAI's ``error`` object with its type too."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == status, body
    assert isinstance(body["message"], str)
    assert body["message"], body
    if openai_type is not None:
        assert body["error"]["message"] == body["message"]
        assert body["error"]["type"] == openai_type, body
    else:
        assert "error" not in body, body


async def data_of(response: httpx.Response) -> list[str]:
    return [event.data async for event in read_events(response)]


# -- tokens ------------------------------------------------------------------------

# Every route of the new doors, with a body that would be served with a token.
ROUTES = [
    ("POST", "/v1/chat/completions", completion("Hi")),
    ("GET", "/v1/models", None),
    ("GET", f"/v1/models/{DEMO_MODEL}", None),
    ("POST", "/api/chat", chat("c" * 16, "Hi")),
    ("GET", "/api/chat/abcdefabcdef0123/stream", None),
    ("GET", "/metrics", None),
]
CREDENTIALS = {
    "none": {},
    "wrong": {"Authorization": "Bearer not-a-token-0123456789abcdef"},
    "empty": {"Authorization": "Bearer"},
    "basic": {"Authorization": "Basic YWxpY2U6YWxpY2UtdG9rZW4="},
    # Alice's token under another scheme is not Alice.
    "scheme": {"Authorization": f"Token {TOKENS['alice']}"},
    # A cookie is nobody when there are tokens (no sessions then).
    "cookie": {"Cookie": "askstream_session=" + "0" * 32 + ".forged"},
}


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[r[1] for r in ROUTES])
async def test_every_new_route_refuses_a_missing_or_wrong_token_with_401(
    doors: ServerProcess,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    credential: str,
) -> None:
    response = await client.request(
        method, doors.url + path, json=body, headers=CREDENTIALS[credential]
    )
    v1 = path.startswith("/v1/")
    assert_error(response, 401, openai_type="authentication_error" if v1 else None)
    assert response.headers["www-authenticate"].startswith("Bearer")
    if credential != "none":
        return
    # With the token, the same request is served: the 401 was the token's.
    served = await client.request(method, doors.url + path, json=body, headers=ALICE)
    assert served.status_code in (200, 204, 404), served.text
    assert served.status_code != 404 or path.endswith("/stream")


# -- isolation ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One instance on the memory store, or two on Redis and PostgreSQL."""
    with deployments(request, tmp_path_factory.mktemp("doors"), **TOKENS_ENV, **SLOW) as deploy:
        yield deploy(request.param)


async def strangers_404(
    client: httpx.AsyncClient, url: str, real: str, fake: str, **kw: Any
) -> None:
    """Bob's request on Alice's ``real`` id is the 404 of an id ``fake`` that never was,
    word for word (but the id): nothing in it confirms that ``real`` exists."""
    method = kw.pop("method", "GET")
    theirs = await client.request(method, url.format(real), headers=BOB, **kw)
    nobodys = await client.request(method, url.format(fake), headers=BOB, **kw)
    assert_error(theirs, 404)
    assert_error(nobodys, 404)
    assert theirs.json()["message"].replace(real, fake) == nobodys.json()["message"]
    assert set(theirs.headers) - {"date", "content-length"} == set(nobodys.headers) - {
        "date",
        "content-length",
    }


async def test_a_v1_answer_is_its_callers_alone(pair: Deployment) -> None:
    # Asked on A; everything else on B (one server for the memory store).
    start, url = pair.a.url, pair.b.url
    async with (
        httpx.AsyncClient(timeout=20) as alice,
        httpx.AsyncClient(timeout=20) as bob,
        alice.stream(
            "POST", start + "/v1/chat/completions", json=completion("Secret?"), headers=ALICE
        ) as response,
    ):
        assert response.status_code == 200
        resume = response.headers["x-askstream-resume"]
        message_id = resume.rsplit("/", 1)[1]
        async with alice.stream("GET", url + resume, headers=ALICE) as own:
            assert own.status_code == 200
            first = await anext(aiter(read_events(own)))
        chat_id = json.loads(first.data)["chatId"]
        fake_message, fake_chat = uuid.uuid4().hex, uuid.uuid4().hex
        # Bob, while Alice's answer streams: her resume URL, with and without an
        # event id, her cancel, her chat by every route that takes a chat id.
        await strangers_404(bob, url + "/api/streams/{}", message_id, fake_message)
        await strangers_404(
            bob, url + "/api/streams/{}", message_id, fake_message, params={"lastEventId": "1"}
        )
        await strangers_404(
            bob, url + "/api/streams/{}/cancel", message_id, fake_message, method="POST"
        )
        await strangers_404(bob, url + "/api/chats/{}", chat_id, fake_chat)
        await strangers_404(bob, url + "/api/chat/{}/stream", chat_id, fake_chat)
        await strangers_404(bob, url + "/api/chats/{}", chat_id, fake_chat, method="DELETE")
        took = await bob.post(url + "/api/chat", json=chat(chat_id, "Hers?"), headers=BOB)
        assert_error(took, 404)
        listed = await bob.get(url + "/api/chats", headers=BOB)
        assert chat_id not in [c["chatId"] for c in listed.json()["chats"]]
        # The answer went on untouched: Alice reads it to its normal end.
        chunks = [json.loads(d) for d in (await data_of(response))[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    async with httpx.AsyncClient(timeout=20) as alice:
        kept = await alice.get(f"{url}/api/chats/{chat_id}", headers=ALICE)
    assert [m["role"] for m in kept.json()["messages"]] == ["user", "assistant"]


async def test_an_ai_sdk_chat_is_its_callers_alone(pair: Deployment) -> None:
    start, url = pair.a.url, pair.b.url
    chat_id = new_id()
    async with (
        httpx.AsyncClient(timeout=20) as alice,
        httpx.AsyncClient(timeout=20) as bob,
        alice.stream(
            "POST", start + "/api/chat", json=chat(chat_id, "Secret?"), headers=ALICE
        ) as r,
    ):
        assert r.status_code == 200
        events = aiter(read_events(r))
        start = json.loads((await anext(events)).data)
        assert start["type"] == "start"
        message_id = start["messageId"]
        fake_message, fake_chat = uuid.uuid4().hex, new_id()
        # Bob posts into Alice's chat: the 404 a resume of a chat nobody has gets.
        took = await bob.post(url + "/api/chat", json=chat(chat_id, "Hers?"), headers=BOB)
        nobodys = await bob.get(f"{url}/api/chat/{fake_chat}/stream", headers=BOB)
        assert_error(took, 404)
        assert took.json()["message"].replace(chat_id, fake_chat) == nobodys.json()["message"]
        await strangers_404(bob, url + "/api/chat/{}/stream", chat_id, fake_chat)
        await strangers_404(bob, url + "/api/chats/{}", chat_id, fake_chat)
        await strangers_404(bob, url + "/api/streams/{}", message_id, fake_message)
        await strangers_404(
            bob, url + "/api/streams/{}/cancel", message_id, fake_message, method="POST"
        )
        await strangers_404(bob, url + "/api/chats/{}", chat_id, fake_chat, method="DELETE")
        # Alice herself resumes it meanwhile.
        async with alice.stream("GET", f"{url}/api/chat/{chat_id}/stream", headers=ALICE) as again:
            assert again.status_code == 200
            assert json.loads((await anext(aiter(read_events(again)))).data) == start
        rest = [event.data async for event in events]
    assert rest[-1] == "[DONE]"
    assert json.loads(rest[-2])["type"] == "finish"
    assert json.loads(rest[-2])["finishReason"] == "stop"
    async with httpx.AsyncClient(timeout=20) as alice:
        kept = await alice.get(f"{url}/api/chats/{chat_id}", headers=ALICE)
    # Bob's question went nowhere: her chat has her one question and its answer.
    messages = kept.json()["messages"]
    assert [(m["role"], m["content"][:7]) for m in messages] == [
        ("user", "Secret?"),
        ("assistant", "You ask"),
    ]


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# Every label the service's metrics have, and the values each may take: a fixed
# set, whoever asks and however often (upstream kinds: UpstreamError.kind).
LABELS: dict[str, set[str] | None] = {
    "outcome": set(OUTCOMES),
    "limit": set(REFUSALS),
    "result": {"cancelled", "passed_on", "already_ended"},
    "kind": {"unreachable", "lost", "connect", "connect_timeout", "read_timeout", "status"}
    | {"not_streaming", "broken", "incomplete", "bad_chunk", "error_payload", "other"},
    "le": None,  # histogram buckets: fixed in _metrics.py
}


async def test_metrics_name_no_user_chat_answer_or_token_and_stay_bounded(
    doors: ServerProcess, client: httpx.AsyncClient
) -> None:
    url = doors.url
    seen: set[str] = set()

    async def every_door(headers: dict[str, str]) -> None:
        answer = await client.post(
            url + "/v1/chat/completions",
            json=completion("Q?", stream=False, max_tokens=3),
            headers=headers,
        )
        assert answer.status_code == 200
        seen.add(answer.json()["id"].removeprefix("chatcmpl-"))
        chat_id = new_id()
        seen.add(chat_id)
        async with client.stream(
            "POST", url + "/api/chat", json=chat(chat_id, "Q?"), headers=headers
        ) as response:
            data = await data_of(response)
        seen.add(json.loads(data[0])["messageId"])
        refused = await client.post(url + "/api/chat", json={"id": "bad id"}, headers=headers)
        assert refused.status_code == 422
        assert (await client.get(url + "/metrics")).status_code == 401

    await every_door(ALICE)
    before = (await client.get(url + "/metrics", headers=ALICE)).text
    for headers in (BOB, CAROL, ALICE):
        await every_door(headers)
    after = (await client.get(url + "/metrics", headers=BOB)).text
    # More users, chats and answers: not one more series.
    assert series(after) == series(before)
    for _, labels in series(after):
        for name, value in labels:
            assert name in LABELS, (name, value)
            allowed = LABELS[name]
            assert allowed is None or value in allowed, (name, value)
    for secret in (*TOKENS, *TOKENS.values(), *seen):
        assert secret not in after, secret
    complete = [
        sample.value
        for family in text_string_to_metric_families(after)
        for sample in family.samples
        if sample.name == "askstream_asks_total" and sample.labels == {"outcome": "complete"}
    ]
    assert complete[0] >= 8  # the answers above were counted, only not by whom


# -- malformed, oversized, wrong method -----------------------------------------------

NESTED = b"[" * 10_000 + b"]" * 10_000
BAD = [
    ("POST", "/v1/chat/completions", b"{not json", 400),
    ("POST", "/v1/chat/completions", NESTED, 400),
    ("POST", "/v1/chat/completions", b"[]", 422),
    ("POST", "/v1/chat/completions", json.dumps({**completion("x"), "messages": []}), 422),
    ("POST", "/v1/chat/completions", json.dumps({**completion("x"), "stream": "yes"}), 422),
    ("POST", "/v1/chat/completions", json.dumps({**completion("x"), "n": 2}), 422),
    ("POST", "/v1/chat/completions", json.dumps({**completion("x"), "temperature": 9}), 422),
    ("POST", "/v1/chat/completions", json.dumps({**completion("x"), "model": "gpt-9"}), 404),
    (
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": DEMO_MODEL, "messages": [{"role": "assistant", "content": "x"}]}),
        422,
    ),
    ("POST", "/v1/chat/completions", b"x" * 100_000, 413),
    ("GET", "/v1/chat/completions", None, 405),
    ("PUT", "/v1/chat/completions", b"{}", 405),
    ("POST", "/v1/models", b"{}", 405),
    ("GET", "/v1/models/gpt-9", None, 404),
    ("GET", "/v1/no/such/route", None, 404),
    ("POST", "/api/chat", b"{not json", 400),
    ("POST", "/api/chat", NESTED, 400),
    ("POST", "/api/chat", b"[]", 422),
    ("POST", "/api/chat", json.dumps({**chat("ok", "x"), "id": "../../etc"}), 422),
    ("POST", "/api/chat", json.dumps({**chat("ok", "x"), "id": "x" * 65}), 422),
    ("POST", "/api/chat", json.dumps({**chat("ok", "x"), "messages": []}), 422),
    ("POST", "/api/chat", json.dumps(chat("ok", "   ")), 422),
    ("POST", "/api/chat", b"x" * 100_000, 413),
    ("GET", "/api/chat", None, 405),
    ("DELETE", "/api/chat", None, 405),
    ("GET", "/api/chat/a%20b/stream", None, 422),
    ("GET", "/api/chat/" + "x" * 65 + "/stream", None, 422),
    ("POST", "/api/chat/abc/stream", b"{}", 405),
    ("POST", "/metrics", b"{}", 405),
    ("DELETE", "/metrics", None, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    BAD,
    ids=[f"{m} {p[:30]} {len(b or '')}B {s}" for m, p, b, s in BAD],
)
async def test_bad_input_on_every_new_route_is_its_status_with_a_json_body(
    doors: ServerProcess,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes | str | None,
    status: int,
) -> None:
    headers = {**ALICE, "Content-Type": "application/json"}
    response = await client.request(method, doors.url + path, content=body, headers=headers)
    v1 = path.startswith("/v1/")
    assert_error(response, status, openai_type="invalid_request_error" if v1 else None)
    if status == 405:
        assert response.headers["allow"]
    # The instance goes on serving.
    assert (await client.get(doors.url + "/api/health")).status_code == 200


# -- the generation limits ------------------------------------------------------------------


async def test_the_user_and_global_generation_limits_hold_at_the_new_doors(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    # One answer each, two for everyone; a piece every 0.1 s keeps answers open.
    server = start_service(
        **TOKENS_ENV,
        ASKSTREAM_DEMO_DELAY="0.1",
        ASKSTREAM_MAX_USER_GENERATIONS="1",
        ASKSTREAM_MAX_GENERATIONS="2",
    )
    url = server.url
    v1, ui = url + "/v1/chat/completions", url + "/api/chat"
    async with client.stream("POST", url + "/api/ask", json={"question": "a"}, headers=ALICE) as a:
        assert a.status_code == 200
        alices = a.headers["content-location"]
        # Alice has her one answer generating: no second through either door.
        for request in (
            client.post(v1, json=completion("b"), headers=ALICE),
            client.post(v1, json=completion("b", stream=False), headers=ALICE),
        ):
            refused = await request
            assert_error(refused, 429, openai_type="rate_limit_error")
            assert refused.headers["retry-after"]
        refused_chat = new_id()
        refused = await client.post(ui, json=chat(refused_chat, "b"), headers=ALICE)
        assert_error(refused, 429)
        assert refused.headers["retry-after"]
        # A refused ask made no chat under the id it named.
        missing = await client.get(f"{url}/api/chats/{refused_chat}", headers=ALICE)
        assert missing.status_code == 404
        async with client.stream("POST", v1, json=completion("c"), headers=BOB) as b:
            assert b.status_code == 200
            # Two generating: everyone else is turned away, at every door.
            refused = await client.post(v1, json=completion("d"), headers=CAROL)
            assert_error(refused, 503, openai_type="server_error")
            assert refused.headers["retry-after"]
            refused = await client.post(ui, json=chat(new_id(), "d"), headers=CAROL)
            assert_error(refused, 503)
            assert refused.headers["retry-after"]
            for owner, location in ((ALICE, alices), (BOB, b.headers["x-askstream-resume"])):
                cancelled = await client.post(f"{url}{location}/cancel", headers=owner)
                assert cancelled.status_code == 204
            await b.aread()
        await a.aread()
    # The slots came back with the ends of the answers.
    again = await client.post(v1, json=completion("e", stream=False, max_tokens=3), headers=ALICE)
    assert again.status_code == 200
    async with client.stream("POST", ui, json=chat(new_id(), "f"), headers=CAROL) as c:
        assert c.status_code == 200
        location = c.headers["content-location"]
        assert (await client.post(f"{url}{location}/cancel", headers=CAROL)).status_code == 204
        assert json.loads((await data_of(c))[-2]) == {"type": "abort", "reason": "cancelled"}


# -- a failure after the first token ---------------------------------------------------


async def test_a_failure_mid_answer_ends_each_doors_stream_in_its_protocol(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    # The fake upstream fails an answer whose question begins "fake-fail:", after
    # three pieces, and answers the others normally.
    server = start_service(**llm_env(upstream, "fake", **TOKENS_ENV))
    v1, ui = server.url + "/v1/chat/completions", server.url + "/api/chat"
    fails = "fake-fail: a long story"
    for _ in range(2):  # and again: the failure left nothing broken behind
        async with client.stream(
            "POST", v1, json={**completion(fails), "model": "fake"}, headers=ALICE
        ) as response:
            assert response.status_code == 200
            data = await data_of(response)
        # OpenAI's way: chunks, then an error object (the SDKs raise APIError), no [DONE].
        assert json.loads(data[0])["choices"][0]["delta"]["content"]
        error = json.loads(data[-1])
        assert error["error"]["type"] == "server_error"
        assert "failed mid-answer" in error["error"]["message"]
        assert "[DONE]" not in data
        # Without streaming, the same failure is one JSON error in both shapes.
        whole = await client.post(
            v1, json={**completion(fails, stream=False), "model": "fake"}, headers=ALICE
        )
        assert_error(whole, 502, openai_type="server_error")
        # The AI SDK's way: text, its end, an error chunk, then [DONE].
        async with client.stream("POST", ui, json=chat(new_id(), fails), headers=ALICE) as r:
            assert r.status_code == 200
            data = await data_of(r)
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert [c["type"] for c in chunks[-2:]] == ["text-end", "error"]
        assert "failed mid-answer" in chunks[-1]["errorText"]
        # And the instance serves the next asks, at every door.
        ok = await client.post(
            v1, json={**completion("Hi", stream=False), "model": "fake"}, headers=BOB
        )
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["message"]["content"] == "Echo: Hi"
        async with client.stream("POST", ui, json=chat(new_id(), "Hi"), headers=BOB) as r:
            data = await data_of(r)
        assert json.loads(data[-2])["type"] == "finish"
        assert json.loads(data[-2])["finishReason"] == "stop"
    assert (await client.get(server.url + "/api/ready")).status_code == 200


# -- pages on other origins ------------------------------------------------------------------

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No tokens: each browser is an anonymous session with a cookie."""
    yield from _module_service(tmp_path_factory, ASKSTREAM_SECRET_KEY="test-key-" + "k" * 32)


@pytest.fixture
async def victim(sessions: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as browser:
        page = await browser.get(sessions.url + "/")
        cookie = page.headers["set-cookie"]
        # Lax: a cross-site POST (fetch or form) carries no cookie at all.
        assert "SameSite=Lax" in cookie
        assert "HttpOnly" in cookie
        yield browser


# What a browser adds to a write another page makes (its cookie rides in the jar).
FORGED = {
    "another origin": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    "another port, same site": {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
    "a sandboxed frame": {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    "no origin, cross-site": {"Sec-Fetch-Site": "cross-site"},
    "no origin, same-site": {"Sec-Fetch-Site": "same-site"},
}
WRITES = {
    "/v1/chat/completions": lambda chat_id: completion("Spend my quota"),
    "/api/chat": lambda chat_id: chat(chat_id, "Spend my quota"),
}


@pytest.mark.parametrize("forged", FORGED)
@pytest.mark.parametrize("path", WRITES)
async def test_a_page_on_another_origin_cannot_write_with_the_victims_cookie(
    sessions: ServerProcess, victim: httpx.AsyncClient, path: str, forged: str
) -> None:
    chat_id = new_id()
    # As a form or a simple fetch would send it: text/plain needs no preflight.
    body = json.dumps(WRITES[path](chat_id))
    headers = {"Content-Type": "text/plain", **FORGED[forged]}
    response = await victim.post(sessions.url + path, content=body, headers=headers)
    assert_error(response, 403, openai_type="permission_error" if path.startswith("/v1/") else None)
    assert "access-control-allow-origin" not in response.headers
    # Nothing was asked in the victim's name.
    listed = await victim.get(sessions.url + "/api/chats")
    assert listed.json()["chats"] == []
    # The same request from the service's own page is served: the 403 was the origin's.
    own = {"Content-Type": "application/json", "Origin": sessions.url}
    served = await victim.post(sessions.url + path, content=body, headers=own)
    assert served.status_code == 200, served.text


@pytest.mark.parametrize("path", WRITES)
async def test_another_origins_preflight_for_a_new_door_is_403(
    sessions: ServerProcess, victim: httpx.AsyncClient, path: str
) -> None:
    preflight = {
        "Origin": EVIL,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = await victim.options(sessions.url + path, headers=preflight)
    assert_error(response, 403, openai_type="permission_error" if path.startswith("/v1/") else None)
    assert "access-control-allow-origin" not in response.headers


async def test_another_origin_cannot_read_a_victims_chat_stream(
    sessions: ServerProcess, victim: httpx.AsyncClient
) -> None:
    chat_id = new_id()
    async with victim.stream("POST", sessions.url + "/api/chat", json=chat(chat_id, "Mine")) as r:
        assert r.status_code == 200
        # A GET is no write, so it passes the gate; but no CORS header lets the
        # other page read it (and a Lax cookie does not ride on its fetch).
        read = await victim.get(
            f"{sessions.url}/api/chat/{chat_id}/stream",
            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        )
        assert "access-control-allow-origin" not in read.headers
        await r.aread()


@pytest.mark.parametrize("path", WRITES)
async def test_with_any_origin_allowed_a_same_site_page_cannot_write_with_the_cookie(
    start_service: StartService, client: httpx.AsyncClient, path: str
) -> None:
    # ASKSTREAM_CORS_ORIGINS=* is "any origin, never with credentials"; but a
    # page on another port of the same host is the same site, so the browser's
    # SameSite=Lax session cookie rides on its form or fetch.
    server = start_service(ASKSTREAM_CORS_ORIGINS="*")
    neighbour = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    await client.get(server.url + "/")
    assert client.cookies.get("askstream_session")
    body = json.dumps(WRITES[path](new_id()))
    plain = {"Content-Type": "text/plain", **neighbour}
    forged = await client.post(server.url + path, content=body, headers=plain)
    assert_error(forged, 403, openai_type="permission_error" if path.startswith("/v1/") else None)
    assert (await client.get(server.url + "/api/chats")).json()["chats"] == []
    # Without the cookie (fetch's default for another origin), "*" lets it in,
    # as a stranger: a session of its own.
    async with httpx.AsyncClient(timeout=20) as other:
        served = await other.post(server.url + path, content=body, headers=plain)
        assert served.status_code == 200, served.text
        assert "askstream_session" in served.headers["set-cookie"]
    assert (await client.get(server.url + "/api/chats")).json()["chats"] == []
    # A read with the cookie gets no Access-Control-Allow-Credentials: the
    # neighbour's script cannot see the visitor's chats either.
    read = await client.get(server.url + "/api/chats", headers=neighbour)
    assert "access-control-allow-credentials" not in read.headers


async def test_the_request_cap_refuses_under_v1_in_openais_shape_too(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    # Under plain uvicorn (these tests' servers) the app itself counts the
    # requests in progress, streams included, and refuses past the cap.
    server = start_service(**TOKENS_ENV, ASKSTREAM_DEMO_DELAY="0.1", ASKSTREAM_MAX_CONNECTIONS="2")
    v1 = server.url + "/v1/chat/completions"
    async with (
        client.stream("POST", v1, json=completion("one"), headers=ALICE) as one,
        client.stream("POST", v1, json=completion("two"), headers=BOB) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        refused = await client.get(server.url + "/v1/models", headers=ALICE)
        assert_error(refused, 503, openai_type="server_error")
        assert refused.headers["retry-after"]


async def test_the_new_doors_readers_are_counted_while_they_read(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    server = start_service(**TOKENS_ENV, ASKSTREAM_DEMO_DELAY="0.05")

    async def readers() -> float:
        scrape = await client.get(server.url + "/metrics", headers=CAROL)
        return next(
            sample.value
            for family in text_string_to_metric_families(scrape.text)
            for sample in family.samples
            if sample.name == "askstream_readers"
        )

    async with (
        client.stream(
            "POST", server.url + "/v1/chat/completions", json=completion("one"), headers=ALICE
        ) as one,
        client.stream(
            "POST", server.url + "/api/chat", json=chat(new_id(), "two"), headers=BOB
        ) as two,
    ):
        ones, twos = aiter(read_events(one)), aiter(read_events(two))
        await anext(ones)
        await anext(twos)
        assert await readers() == 2
        # Read to the end of each: the reader is gone before its response ends.
        assert [event.data async for event in ones][-1] == "[DONE]"
        assert [event.data async for event in twos][-1] == "[DONE]"
    assert await readers() == 0
