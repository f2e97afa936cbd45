"""Credentials on real sockets: ``auth=`` on every request, never to another origin.

Two uvicorn processes serve tests/http/apps.py on two loopback ports, so two
origins. ``POST /handoff/{name}?to=URL`` on the first answers one event, sets a
cookie and names URL in ``Content-Location``; the client resumes there, and the
server that got each request recorded its ``Authorization``, ``Cookie`` and
``Last-Event-ID``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

from askstream import BearerAuth, Reconnect, aconnect, connect
from askstream.testing import ServerProcess
from tests.http.support import UVICORN_ARGS

FAST = Reconnect(max_attempts=3, delay=0.01, jitter=0)
EXPECTED = [("first", "1"), ("second", "2"), ("", "3")]

Seen = list[dict[str, str | None]]
Events = list[tuple[str, str | None]]


@pytest.fixture(scope="module")
def other() -> Iterator[ServerProcess]:
    """The same app on another port: another origin (RFC 6454 §4)."""
    with ServerProcess("tests.http.apps:app", args=UVICORN_ARGS) as process:
        yield process


def credentials(server: ServerProcess, name: str) -> Seen:
    seen: Seen = httpx.get(f"{server.url}/credentials/{name}", timeout=5).json()
    return seen


async def no_sleep(seconds: float) -> None:
    pass


async def read_async(url: str, client: Any = None, **kwargs: Any) -> Events:
    async with aconnect(
        "POST", url, client=client, until={"done"}, reconnect=FAST, sleep=no_sleep, **kwargs
    ) as source:
        return [(event.data, event.id) async for event in source]


def read_sync(url: str, client: Any = None, **kwargs: Any) -> Events:
    with connect(
        "POST", url, client=client, until={"done"}, reconnect=FAST, sleep=lambda s: None, **kwargs
    ) as source:
        return [(event.data, event.id) for event in source]


def handoff(first: ServerProcess, to: ServerProcess) -> tuple[str, str]:
    """The stream's name and URL: it starts on ``first`` and resumes on ``to``."""
    name = uuid.uuid4().hex
    return name, f"{first.url}/handoff/{name}?to={to.url}/handoff/{name}"


@pytest.mark.anyio
async def test_auth_goes_with_the_first_request_and_every_resume(server: ServerProcess) -> None:
    name, url = handoff(server, server)
    assert await read_async(url, auth=BearerAuth("tok")) == EXPECTED
    first, resume = credentials(server, name)
    assert first == {"authorization": "Bearer tok", "cookie": None, "last-event-id": None}
    # The cookie the first answer set (an anonymous session) goes back to its origin.
    assert resume == {"authorization": "Bearer tok", "cookie": "session=s1", "last-event-id": "1"}


@pytest.mark.anyio
async def test_cookies_go_with_the_first_request_and_every_resume_after_the_jars(
    server: ServerProcess,
) -> None:
    name, url = handoff(server, server)
    assert await read_async(url, cookies={"theme": "dark", "lang": "en"}) == EXPECTED
    first, resume = credentials(server, name)
    assert first["cookie"] == "theme=dark; lang=en"
    assert resume["cookie"] == "session=s1; theme=dark; lang=en"
    name, url = handoff(server, server)
    assert read_sync(url, cookies={"theme": "dark"}) == EXPECTED
    assert [seen["cookie"] for seen in credentials(server, name)] == [
        "theme=dark",
        "session=s1; theme=dark",
    ]


def test_the_sync_client_sends_auth_on_every_resume_too(server: ServerProcess) -> None:
    name, url = handoff(server, server)
    assert read_sync(url, auth=("user", "pw")) == EXPECTED
    assert [seen["authorization"] for seen in credentials(server, name)] == [
        "Basic dXNlcjpwdw==",
        "Basic dXNlcjpwdw==",
    ]


# Every way a caller can hand over credentials, each with both clients.
CREDENTIALS: dict[str, dict[str, Any]] = {
    "headers": {"headers": {"Authorization": "Bearer tok", "Cookie": "mine=1"}},
    "bearer-auth": {"auth": BearerAuth("tok")},
    "tuple-auth": {"auth": ("user", "pw")},
    "function-auth": {"auth": lambda r: r.headers.update({"Authorization": "Fn 1"}) or r},
    "client-defaults": {
        "client": {"auth": ("user", "pw"), "headers": {"Authorization": "Bearer c"}}
    },
    "client-cookie-jar": {"client": {"cookies": {"jar": "1"}}},
    "cookies": {"cookies": {"mine": "1"}},
}


@pytest.mark.parametrize("kind", CREDENTIALS)
@pytest.mark.parametrize("flavour", ["async", "sync"])
@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.anyio
async def test_a_resume_at_another_origin_gets_no_authorization_and_no_cookie(
    server: ServerProcess, other: ServerProcess, kind: str, flavour: str, lib: ModuleType
) -> None:
    """With httpx2, always through the caller's client: a private one is httpx's."""
    name, url = handoff(server, other)
    options = dict(CREDENTIALS[kind])
    client_options = options.pop("client", None)
    if client_options is None and lib is httpx2:
        client_options = {}
    if flavour == "async":
        if client_options is None:
            events = await read_async(url, **options)
        else:
            async with lib.AsyncClient(**client_options) as client:
                events = await read_async(url, client, **options)
    elif client_options is None:
        events = read_sync(url, **options)
    else:
        with lib.Client(**client_options) as client:
            events = read_sync(url, client, **options)
    assert events == EXPECTED
    (first,) = credentials(server, name)
    assert first["authorization"] or first["cookie"]  # the first origin got them
    (resume,) = credentials(other, name)
    assert resume == {"authorization": None, "cookie": None, "last-event-id": "1"}
