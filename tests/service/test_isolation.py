"""Every chat, message and stream belongs to the user who asked (docs/security.md).

The matrix: every route, called by the owner, by another user, with no
credentials and with a wrong token; with bearer tokens and with anonymous
browser sessions; on one instance with the memory store and across two
instances on Redis, where the answer is generated on A and every other call
goes to B (the owner travels with the stream). Another user's ids are 404
exactly as ids that never existed: no 403 that would confirm them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.testing import ServerProcess

from .conftest import KINDS, Deployment, deployments, read_events

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef012"
WRONG = "not-a-token-0123456789abcdef"
# About 80 pieces 20 ms apart: the second answer is still streaming while the
# others try its routes (a few dozen milliseconds).
SLOW = {"ASKSTREAM_DEMO_DELAY": "0.02"}
MODES = {
    "tokens": {"ASKSTREAM_TOKENS": f"alice:{ALICE},bob:{BOB}", **SLOW},
    # Two instances must share the key that signs sessions (docs/security.md).
    "sessions": {"ASKSTREAM_SECRET_KEY": "test-key-" + "k" * 32, **SLOW},
}
WHO = ["owner", "other", "none", "wrong"]


@dataclass
class Setup:
    mode: str
    deployment: Deployment


@pytest.fixture(
    scope="module",
    params=[(mode, kind) for mode in MODES for kind in KINDS],
    ids=[f"{mode}-{kind}" for mode in MODES for kind in KINDS],
)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    mode, kind = request.param
    with deployments(request, tmp_path_factory.mktemp("isolation"), **MODES[mode]) as deploy:
        yield Setup(mode, deploy(kind))


@dataclass
class Caller:
    """One party: its own client (cookie jar) and headers."""

    who: str
    client: httpx.AsyncClient
    headers: dict[str, str]
    keep_cookies: bool = True

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The response, its body read unless it is an event stream (which is left
        there: a reader that goes stops nothing, and the stream may go on for seconds)."""
        if not self.keep_cookies:
            self.client.cookies.clear()  # "no credentials": nothing, every time
        request = self.client.build_request(method, url, headers=self.headers, **kwargs)
        response = await self.client.send(request, stream=True)
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
        finally:
            await response.aclose()
        return response


def described(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return "an event stream"
    return response.text[:300]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def callers(setup: Setup) -> AsyncIterator[dict[str, Caller]]:
    tokens = setup.mode == "tokens"
    headers = {
        "owner": bearer(ALICE) if tokens else {},
        "other": bearer(BOB) if tokens else {},
        "none": {},
        "wrong": bearer(WRONG),
    }
    clients = {who: httpx.AsyncClient(timeout=httpx.Timeout(20.0)) for who in WHO}
    try:
        if not tokens:  # each browser has its session from its first visit
            for who in ("owner", "other"):
                page = await clients[who].get(setup.deployment.a.url + "/")
                assert page.status_code == 200
                assert "askstream_session" in page.headers["set-cookie"]
        yield {
            who: Caller(who, clients[who], headers[who], keep_cookies=who != "none") for who in WHO
        }
    finally:
        for client in clients.values():
            await client.aclose()


async def ask(caller: Caller, url: str, body: dict[str, Any], *, whole: bool) -> list[Any]:
    """POST an ask; the events' data, all of them or only the first (the answer goes on)."""
    data = []
    async with caller.client.stream(
        "POST", url + "/api/ask", json=body, headers=caller.headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for event in read_events(response):
            data.append(json.loads(event.data))
            if not whole:
                break
    return data


@dataclass
class Alices:
    chat_id: str
    message_id: str  # still streaming when the checks begin


async def alices_chat(owner: Caller, deployment: Deployment) -> Alices:
    first = await ask(owner, deployment.a.url, {"question": "Secret one"}, whole=False)
    chat_id = first[0]["chatId"]
    body = {"chatId": chat_id, "question": "Secret two"}
    second = await ask(owner, deployment.a.url, body, whole=False)
    return Alices(chat_id, second[0]["messageId"])


# What each route answers each caller. "none" in session mode is a new,
# anonymous browser: a stranger, so 404 like "other"; with tokens it is 401.
ROUTES = ["ask", "list", "chat", "stream", "resume", "cancel", "delete"]
EXPECTED = {
    "owner": {"ask": 200, "list": 200, "chat": 200, "stream": 200, "resume": 200,
              "cancel": 204, "delete": 204},
    "other": dict.fromkeys(ROUTES, 404) | {"list": 200},
    "wrong": dict.fromkeys(ROUTES, 401),
}  # fmt: skip


def expected(who: str, mode: str, route: str) -> int:
    if who == "none":
        return (dict.fromkeys(ROUTES, 401) if mode == "tokens" else EXPECTED["other"])[route]
    return EXPECTED[who][route]


async def call(route: str, caller: Caller, url: str, alices: Alices) -> httpx.Response:
    stream = f"{url}/api/streams/{alices.message_id}"
    if route == "ask":  # go on with Alice's chat
        body = {"chatId": alices.chat_id, "question": "And her secrets?"}
        return await caller.request("POST", url + "/api/ask", json=body)
    if route == "list":
        return await caller.request("GET", url + "/api/chats")
    if route == "chat":
        return await caller.request("GET", f"{url}/api/chats/{alices.chat_id}")
    if route == "stream":
        return await caller.request("GET", stream)
    if route == "resume":
        return await caller.request("GET", stream, params={"lastEventId": "1"})
    if route == "cancel":
        return await caller.request("POST", stream + "/cancel")
    assert route == "delete"
    return await caller.request("DELETE", f"{url}/api/chats/{alices.chat_id}")


@pytest.mark.parametrize("who", WHO)
async def test_every_route_serves_its_owner_and_nobody_else(
    setup: Setup, callers: dict[str, Caller], who: str
) -> None:
    deployment = setup.deployment
    owner = callers["owner"]
    alices = await alices_chat(owner, deployment)
    # Generated on A; every call goes to B (the same server for the memory store).
    url = deployment.b.url
    for route in ROUTES:
        response = await call(route, callers[who], url, alices)
        want = expected(who, setup.mode, route)
        assert response.status_code == want, (route, described(response))
        if want >= 400:
            body = response.json()
            assert body["code"] == want, (route, body)
            assert body["message"], (route, body)
            assert alices.chat_id not in body["message"] or want == 404, body
        if want == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        if route == "list" and want == 200:
            listed = [chat["chatId"] for chat in response.json()["chats"]]
            assert (alices.chat_id in listed) == (who == "owner"), listed
        if route == "chat" and want == 200:
            contents = [m["content"] for m in response.json()["messages"]]
            assert contents[:3] == ["Secret one", contents[1], "Secret two"]
    if who == "owner":
        return
    # Nothing the others did touched Alice's answer or chat: it streams to its
    # normal end, and her chat is whole.
    stream = f"{url}/api/streams/{alices.message_id}"
    async with owner.client.stream("GET", stream, headers=owner.headers) as response:
        assert response.status_code == 200
        events = [event async for event in read_events(response)]
    assert events[-1].event == "done"
    assert json.loads(events[-1].data)["finishReason"] == "stop"
    chat = await owner.request("GET", f"{url}/api/chats/{alices.chat_id}")
    assert chat.status_code == 200
    assert [m["role"] for m in chat.json()["messages"]] == ["user", "assistant"] * 2


async def test_ids_are_unguessable_uuid4s(setup: Setup, callers: dict[str, Caller]) -> None:
    alices = await alices_chat(callers["owner"], setup.deployment)
    for value in (alices.chat_id, alices.message_id):
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4  # 122 random bits
        assert parsed.hex == value


async def test_an_expired_stream_is_410_to_its_owner_and_404_to_others(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import asyncio

    env = {**MODES["tokens"], "ASKSTREAM_DEMO_DELAY": "0", "ASKSTREAM_STREAM_RETENTION": "0.2"}
    with deployments(request, tmp_path, **env) as deploy:
        server: ServerProcess = deploy("memory").a
        async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
            alice = Caller("owner", client, bearer(ALICE))
            data = await ask(alice, server.url, {"question": "gone soon"}, whole=True)
            message_id = data[-1]["messageId"]
            await asyncio.sleep(0.4)
            # The memory store lets finished streams go when the next one starts.
            await ask(alice, server.url, {"question": "next"}, whole=True)
            stream = f"{server.url}/api/streams/{message_id}"
            assert (await client.get(stream, headers=bearer(ALICE))).status_code == 410
            other = await client.get(stream, headers=bearer(BOB))
            assert other.status_code == 404
            assert other.json()["message"] == f"no stream {message_id!r}"
