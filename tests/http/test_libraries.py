"""The clients with a caller's httpx or httpx2 client, and over a response the caller has.

httpx2 is httpx's maintained fork: the same API in classes of its own. Each test
runs once per library against the real servers of tests/http/apps.py; the
session's bookkeeping stays in httpx's types, so what crosses into the caller's
library (URLs, headers, Timeout, Auth, its exceptions) is what these prove.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

from askstream import (
    BearerAuth,
    ConnectError,
    ContentTypeError,
    Decoder,
    Event,
    Reconnect,
    ReplayError,
    ResponseError,
    TransportError,
    TransportTimeout,
    aconnect,
    aiter_events,
    connect,
    encode,
    iter_events,
)
from askstream.testing import ServerProcess, free_port
from tests.http.apps import INTEROP_EVENTS

FAST = Reconnect(max_attempts=3, delay=0.01, jitter=0)


@pytest.fixture(params=[httpx, httpx2], ids=["httpx", "httpx2"])
def lib(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


async def no_sleep(seconds: float) -> None:
    pass


async def collect(events: AsyncIterator[Event], ids: list[str | None]) -> None:
    """Note each event's id until the iterator raises."""
    async for event in events:
        ids.append(event.id)  # noqa: PERF401  # a comprehension would lose them on the error


def seen_ids(server: ServerProcess, name: str) -> list[str | None]:
    ids: list[str | None] = httpx.get(f"{server.url}/requests/{name}").json()["last_event_ids"]
    return ids


def log_events(first: int, last: int) -> list[Event]:
    return [Event(f"event {n}", id=str(n)) for n in range(first, last + 1)]


# Reading a stream ------------------------------------------------------------------


@pytest.mark.anyio
async def test_aconnect_reads_with_the_callers_client_and_leaves_it_open(
    server: ServerProcess, lib: ModuleType
) -> None:
    async with lib.AsyncClient(headers={"X-Test": "1"}) as client:
        async with aconnect(
            "GET", f"{server.url}/tokens?n=3", client=client, reconnect=None
        ) as source:
            assert isinstance(source.response, lib.Response)
            assert source.response.request.headers["x-test"] == "1"
            assert [event.data async for event in source] == ["token"] * 3
        assert not client.is_closed


def test_connect_reads_with_the_callers_client_and_leaves_it_open(
    server: ServerProcess, lib: ModuleType
) -> None:
    with lib.Client() as client:
        with connect("GET", f"{server.url}/tokens?n=2", client=client, reconnect=None) as source:
            assert isinstance(source.response, lib.Response)
            assert [event.data for event in source] == ["token"] * 2
        assert not client.is_closed


# Reconnecting -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_broken_stream_resumes_through_either_librarys_client(
    server: ServerProcess, lib: ModuleType
) -> None:
    name = f"lib-resume-{lib.__name__}"
    url = f"{server.url}/log/{name}?total=5&drop_after=2&mode=abort"
    async with (
        lib.AsyncClient() as client,
        aconnect(
            "GET", url, client=client, until={"done"}, reconnect=FAST, sleep=no_sleep
        ) as source,
    ):
        events = [event async for event in source]
    assert events == [*log_events(1, 5), Event("", event="done", id="6")]
    assert seen_ids(server, name) == [None, "2", "4"]


def test_a_post_resumes_at_its_content_location_through_either_librarys_client(
    server: ServerProcess, lib: ModuleType
) -> None:
    name = f"lib-posted-{lib.__name__}"
    url = f"{server.url}/ask/{name}?total=3&drop_after=2&mode=abort"
    with (
        lib.Client() as client,
        connect(
            "POST",
            url,
            client=client,
            json={"question": "Hi"},
            until={"done"},
            reconnect=FAST,
            sleep=lambda s: None,
        ) as source,
    ):
        events = list(source)
    assert events == [*log_events(1, 3), Event("", event="done", id="4")]
    assert seen_ids(server, name) == [None, "2"]


# Errors, wrapped whichever library raised them --------------------------------------------


@pytest.mark.anyio
async def test_nothing_listening_is_a_connect_error_caused_by_the_librarys_own(
    lib: ModuleType,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/stream"
    async with lib.AsyncClient() as client:
        with pytest.raises(ConnectError) as info:
            async with aconnect("GET", url, client=client):
                pytest.fail("must not open")
    assert isinstance(info.value.__cause__, lib.ConnectError)
    with (
        lib.Client() as sync_client,
        pytest.raises(ConnectError) as sync_info,
        connect("GET", url, client=sync_client),
    ):
        pytest.fail("must not open")
    assert isinstance(sync_info.value.__cause__, lib.ConnectError)


@pytest.mark.anyio
@pytest.mark.parametrize("timeout_lib", [httpx, httpx2], ids=["httpx-Timeout", "httpx2-Timeout"])
async def test_a_silent_server_is_a_read_timeout_whichever_librarys_timeout_is_given(
    server: ServerProcess, lib: ModuleType, timeout_lib: ModuleType
) -> None:
    url = f"{server.url}/idle/lib-timeout-{lib.__name__}-{timeout_lib.__name__}?ping=600"
    silent = timeout_lib.Timeout(10.0, read=0.2)
    async with (
        lib.AsyncClient() as client,
        aconnect("GET", url, client=client, reconnect=None, timeout=silent) as source,
    ):
        assert (await anext(source)).data == "open"
        with pytest.raises(TransportTimeout) as info:
            await anext(source)
    assert info.value.phase == "read"
    assert isinstance(info.value.__cause__, lib.ReadTimeout)


@pytest.mark.anyio
async def test_error_answers_are_the_same_errors(server: ServerProcess, lib: ModuleType) -> None:
    async with lib.AsyncClient() as client:
        with pytest.raises(ResponseError) as info:
            async with aconnect("GET", f"{server.url}/status/502", client=client):
                pytest.fail("must not open")
        assert (info.value.status, info.value.message) == (502, "LLM request failed")
        with pytest.raises(ContentTypeError):
            async with aconnect("GET", f"{server.url}/plain", client=client):
                pytest.fail("must not open")


# Credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [BearerAuth("tok"), httpx.BasicAuth("user", "pw"), ("user", "pw"), "httpx2.BasicAuth"],
    ids=["bearer", "httpx-basic", "tuple", "httpx2-basic"],
)
def test_auth_and_cookies_reach_the_server_through_either_librarys_client(
    server: ServerProcess, lib: ModuleType, auth: Any
) -> None:
    if auth == "httpx2.BasicAuth":
        auth = httpx2.BasicAuth("user", "pw")
    name = f"lib-auth-{lib.__name__}-{id(auth)}"
    url = f"{server.url}/handoff/{name}"
    with (
        lib.Client() as client,
        connect(
            "POST",
            url,
            client=client,
            auth=auth,
            cookies={"theme": "dark"},
            until={"done"},
            reconnect=FAST,
            sleep=lambda s: None,
        ) as source,
    ):
        assert [event.id for event in source] == ["1", "2", "3"]
    first, resume = httpx.get(f"{server.url}/credentials/{name}").json()
    expected = "Bearer tok" if isinstance(auth, BearerAuth) else "Basic dXNlcjpwdw=="
    assert first["authorization"] == resume["authorization"] == expected
    assert first["cookie"] == "theme=dark"
    assert resume["cookie"] == "session=s1; theme=dark"  # the jar's, then the caller's


# A server that ignores Last-Event-ID ---------------------------------------------------


@pytest.mark.anyio
async def test_a_reconnect_that_replays_the_stream_stops_with_a_replay_error(
    server: ServerProcess, lib: ModuleType
) -> None:
    """Without `until`, the stream's early end means "reconnect": against a server
    that ignores Last-Event-ID, that used to replay events 1-3 for ever."""
    name = f"deaf-async-{lib.__name__}"
    delivered: list[str | None] = []
    async with (
        lib.AsyncClient() as client,
        aconnect(
            "GET", f"{server.url}/deaf/{name}", client=client, reconnect=FAST, sleep=no_sleep
        ) as source,
    ):
        with pytest.raises(ReplayError) as info:
            await collect(source, delivered)
    assert delivered == ["1", "2", "3"]  # each once
    assert info.value.event_id == "1"
    assert "ignores Last-Event-ID" in str(info.value)
    assert seen_ids(server, name) == [None, "3"]  # one reconnect, then the error


def test_the_sync_client_stops_a_replay_too(server: ServerProcess, lib: ModuleType) -> None:
    name = f"deaf-sync-{lib.__name__}"
    with (
        lib.Client() as client,
        connect(
            "GET", f"{server.url}/deaf/{name}", client=client, reconnect=FAST, sleep=lambda s: None
        ) as source,
    ):
        assert [next(source).id for _ in range(3)] == ["1", "2", "3"]
        with pytest.raises(ReplayError):
            next(source)
    assert seen_ids(server, name) == [None, "3"]


# aiter_events / iter_events over a response the caller already has -------------------------


@pytest.mark.anyio
async def test_aiter_events_reads_a_response_the_caller_streams(
    server: ServerProcess, lib: ModuleType
) -> None:
    async with (
        lib.AsyncClient() as client,
        client.stream("GET", f"{server.url}/interop") as response,
    ):
        events = [event async for event in aiter_events(response)]
    # What the decoder makes of the server's bytes, read in one piece.
    assert events == Decoder().feed(b"".join(encode(event) for event in INTEROP_EVENTS))
    assert events[1].json() == {"delta": "你好"}


def test_iter_events_reads_a_sync_response(server: ServerProcess, lib: ModuleType) -> None:
    with lib.Client() as client, client.stream("GET", f"{server.url}/tokens?n=4") as response:
        assert [event.data for event in iter_events(response)] == ["token"] * 4
    # A response already read whole works the same.
    whole = lib.get(f"{server.url}/tokens?n=2")
    assert [event.data for event in iter_events(whole)] == ["token"] * 2


def test_iter_events_refuses_what_is_not_a_stream(server: ServerProcess, lib: ModuleType) -> None:
    with pytest.raises(ResponseError) as info:
        list(iter_events(lib.get(f"{server.url}/status/404")))
    assert (info.value.status, info.value.message) == (404, "LLM request failed")
    with pytest.raises(ContentTypeError):
        list(iter_events(lib.get(f"{server.url}/plain")))


@pytest.mark.anyio
async def test_aiter_events_wraps_a_broken_connection(
    server: ServerProcess, lib: ModuleType
) -> None:
    url = f"{server.url}/log/lib-iter-abort?total=6&drop_after=2&mode=abort"
    async with lib.AsyncClient() as client, client.stream("GET", url) as response:
        ids: list[str | None] = []
        with pytest.raises(TransportError) as info:
            await collect(aiter_events(response), ids)
    assert ids == ["1", "2"]
    assert isinstance(info.value.__cause__, lib.TransportError)
