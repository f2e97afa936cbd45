"""aconnect and connect against real servers: errors, reconnects, resume, closing.

Backoff sleeps go to a fake ``sleep`` that records the delay and returns at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest

from askstream import (
    AskstreamError,
    ConnectError,
    ContentTypeError,
    Event,
    Reconnect,
    ReconnectError,
    ResponseError,
    TransportError,
    TransportTimeout,
    aconnect,
    connect,
    encode,
)
from askstream.testing import ServerProcess, free_port
from tests.http.apps import CHINESE
from tests.http.support import Poll, Report

FAST = Reconnect(max_attempts=3, delay=0.01, jitter=0)


class FakeSleep:
    """Records backoff delays instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    def sync(self, seconds: float) -> None:
        self.delays.append(seconds)


def log_events(first: int, last: int) -> list[Event]:
    return [Event(f"event {n}", id=str(n)) for n in range(first, last + 1)]


def seen_ids(server: ServerProcess, name: str) -> list[str | None]:
    ids: list[str | None] = httpx.get(f"{server.url}/requests/{name}").json()["last_event_ids"]
    return ids


# Errors ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_non_2xx_answer_raises_with_the_servers_code_and_message(
    server: ServerProcess,
) -> None:
    with pytest.raises(ResponseError) as info:
        async with aconnect("GET", f"{server.url}/status/502"):
            pytest.fail("must not open")
    assert (info.value.status, info.value.code, info.value.message) == (
        502,
        502,
        "LLM request failed",
    )


def test_the_sync_client_raises_the_same(server: ServerProcess) -> None:
    with pytest.raises(ResponseError) as info, connect("POST", f"{server.url}/status/404"):
        pytest.fail("must not open")
    assert info.value.status == 404


@pytest.mark.anyio
async def test_a_success_that_is_not_a_stream_names_its_content_type(
    server: ServerProcess,
) -> None:
    with pytest.raises(ContentTypeError, match="text/plain") as info:
        async with aconnect("GET", f"{server.url}/plain"):
            pytest.fail("must not open")
    assert info.value.content_type == "text/plain; charset=utf-8"
    with pytest.raises(ContentTypeError, match="text/plain"), connect("GET", f"{server.url}/plain"):
        pytest.fail("must not open")


@pytest.mark.anyio
async def test_nothing_listening_is_a_connect_error_with_httpxs_as_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}/stream"
    with pytest.raises(ConnectError) as info:
        async with aconnect("GET", url):
            pytest.fail("must not open")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert url in str(info.value)
    with pytest.raises(ConnectError) as sync_info, connect("GET", url):
        pytest.fail("must not open")
    assert isinstance(sync_info.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
async def test_a_silent_server_is_a_read_timeout(server: ServerProcess) -> None:
    url = f"{server.url}/idle/read-timeout?ping=600"
    silent = httpx.Timeout(10.0, read=0.2)
    async with aconnect("GET", url, reconnect=None, timeout=silent) as source:
        assert (await anext(source)).data == "open"
        with pytest.raises(TransportTimeout) as info:
            await anext(source)
    assert info.value.phase == "read"
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    with connect("GET", url, reconnect=None, timeout=silent) as sync_source:
        assert next(sync_source).data == "open"
        with pytest.raises(TransportTimeout) as sync_info:
            next(sync_source)
    assert sync_info.value.phase == "read"


@pytest.mark.anyio
async def test_a_broken_connection_that_cannot_resume_is_a_transport_error(
    server: ServerProcess,
) -> None:
    url = f"{server.url}/log/no-resume?total=6&drop_after=2&mode=abort"
    async with aconnect("GET", url, reconnect=None) as source:
        with pytest.raises(TransportError) as info:
            _ = [event async for event in source]
    assert type(info.value) is TransportError  # neither a connect error nor a timeout
    assert isinstance(info.value.__cause__, httpx.TransportError)
    with connect("GET", url, reconnect=None) as sync_source, pytest.raises(TransportError):
        list(sync_source)


@pytest.mark.anyio
async def test_one_except_clause_catches_every_client_failure(server: ServerProcess) -> None:
    """What a caller needed three clauses for (ours, httpx's, a drop's) is one."""
    failures: list[tuple[str, Reconnect | None]] = [
        (f"{server.url}/status/503", FAST),
        (f"{server.url}/plain", FAST),
        (f"http://127.0.0.1:{free_port()}/", FAST),
        (f"{server.url}/log/one-except-drop?total=6&drop_after=2&mode=abort", None),
        (f"{server.url}/flaky/one-except-flaky", FAST),
    ]
    caught = []
    for url, reconnect in failures:
        try:
            async with aconnect("GET", url, reconnect=reconnect, sleep=FakeSleep()) as source:
                _ = [event async for event in source]
        except AskstreamError as exc:
            caught.append(type(exc).__name__)
    assert caught == [
        "ResponseError",
        "ContentTypeError",
        "ConnectError",
        "TransportError",
        "ReconnectError",
    ]


@pytest.mark.anyio
async def test_characters_cut_between_tcp_writes_arrive_intact() -> None:
    events = [Event(CHINESE, id="1"), Event("尾", event="done", id="1")]
    body = b"".join(encode(event) for event in events)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Connection: close\r\n\r\n")
        for start in range(0, len(body), 2):  # two bytes a write: every character is cut
            writer.write(body[start : start + 2])
            await writer.drain()
            await asyncio.sleep(0.0005)
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        url = f"http://127.0.0.1:{port}/"
        async with aconnect("GET", url, reconnect=None) as source:
            assert [event async for event in source] == events


# Reconnecting ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["end", "abort"], ids=["early-end", "network-error"])
async def test_a_get_stream_resumes_with_last_event_id_and_no_duplicates(
    server: ServerProcess, mode: str
) -> None:
    name = f"resume-{mode}"
    sleep = FakeSleep()
    url = f"{server.url}/log/{name}?total=6&drop_after=2&mode={mode}"
    async with aconnect("GET", url, until={"done"}, reconnect=FAST, sleep=sleep) as source:
        events = [event async for event in source]
    assert events == [*log_events(1, 6), Event("", event="done", id="7")]
    assert seen_ids(server, name) == [None, "2", "4", "6"]
    assert sleep.delays == [0.01, 0.01, 0.01]  # each reconnect made progress: no growth


def test_the_sync_client_resumes_the_same_way(server: ServerProcess) -> None:
    sleep = FakeSleep()
    url = f"{server.url}/log/sync-resume?total=5&drop_after=2&mode=abort"
    with connect("GET", url, until={"done"}, reconnect=FAST, sleep=sleep.sync) as source:
        events = list(source)
    assert events == [*log_events(1, 5), Event("", event="done", id="6")]
    assert seen_ids(server, "sync-resume") == [None, "2", "4"]


@pytest.mark.anyio
async def test_the_servers_retry_sets_the_delay(server: ServerProcess) -> None:
    sleep = FakeSleep()
    url = f"{server.url}/log/retry?total=4&drop_after=2&retry=1234"
    async with aconnect("GET", url, until={"done"}, reconnect=FAST, sleep=sleep) as source:
        assert [event.id async for event in source] == ["1", "2", "3", "4", "5"]
        assert source.retry == 1234
    assert sleep.delays == [1.234, 1.234]


@pytest.mark.anyio
async def test_a_post_stream_resumes_with_a_get_at_its_content_location(
    server: ServerProcess,
) -> None:
    sleep = FakeSleep()
    url = f"{server.url}/ask/posted?total=5&drop_after=2&mode=abort"
    async with aconnect(
        "POST", url, json={"question": "Hi"}, until={"done"}, reconnect=FAST, sleep=sleep
    ) as source:
        events = [event async for event in source]
    assert events == [*log_events(1, 5), Event("", event="done", id="6")]
    # One POST to /ask/posted, then GETs to /log/posted (the Content-Location).
    assert seen_ids(server, "posted") == [None, "2", "4"]


@pytest.mark.anyio
async def test_a_stream_that_ended_with_a_terminal_event_does_not_reconnect(
    server: ServerProcess,
) -> None:
    sleep = FakeSleep()
    url = f"{server.url}/log/terminal?total=2&drop_after=10"
    async with aconnect("GET", url, until={"done"}, reconnect=FAST, sleep=sleep) as source:
        assert [event.id async for event in source] == ["1", "2", "3"]
    assert seen_ids(server, "terminal") == [None]
    assert sleep.delays == []


@pytest.mark.anyio
async def test_204_on_reconnect_ends_the_stream_quietly(server: ServerProcess) -> None:
    sleep = FakeSleep()
    async with aconnect("GET", f"{server.url}/once", reconnect=FAST, sleep=sleep) as source:
        assert [event.data async for event in source] == ["a", "b"]
    assert sleep.delays == [0.01]


@pytest.mark.anyio
async def test_failed_reconnects_back_off_then_raise_reconnect_error(
    server: ServerProcess,
) -> None:
    sleep = FakeSleep()
    async with aconnect("GET", f"{server.url}/flaky/flaky", reconnect=FAST, sleep=sleep) as source:
        assert (await anext(source)).data == "only"
        with pytest.raises(ReconnectError) as info:
            await anext(source)
    assert info.value.attempts == 3
    assert sleep.delays == [0.01, 0.02, 0.04]
    assert seen_ids(server, "flaky") == [None, "1", "1", "1"]


# Closing ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_the_reader_closes_the_connection_at_once(
    server: ServerProcess, report: Report, poll: Poll
) -> None:
    opened = asyncio.Event()

    async def read() -> None:
        async with aconnect("GET", f"{server.url}/idle/cancelled") as source:
            async for _ in source:
                opened.set()

    task = asyncio.get_running_loop().create_task(read())
    await asyncio.wait_for(opened.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(poll, lambda: report("cancelled")["closed"], 1.0, "server-side close")


def test_leaving_the_with_block_closes_the_connection_at_once(
    server: ServerProcess, report: Report, poll: Poll
) -> None:
    with connect("GET", f"{server.url}/idle/left-block") as source:
        assert next(source).data == "open"
    poll(lambda: report("left-block")["closed"], 1.0, "server-side close")


@pytest.mark.anyio
async def test_a_callers_client_is_used_and_left_open(server: ServerProcess) -> None:
    async with httpx.AsyncClient(headers={"X-Test": "1"}) as client:
        async with aconnect(
            "GET", f"{server.url}/tokens?n=3", client=client, reconnect=None
        ) as source:
            assert source.response is not None
            assert source.response.request.headers["x-test"] == "1"
            assert [event.data async for event in source] == ["token"] * 3
        assert not client.is_closed


def test_a_closed_source_refuses_to_be_read(server: ServerProcess) -> None:
    with connect("GET", f"{server.url}/tokens?n=1") as source:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        next(source)


def test_the_sync_client_needs_no_event_loop(server: ServerProcess) -> None:
    # A real sync implementation: it runs in a thread that has no event loop.
    result: list[str] = []

    def read() -> None:
        with connect("GET", f"{server.url}/tokens?n=2", reconnect=None) as source:
            result.extend(event.data for event in source)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(timeout=5)
    assert result == ["token", "token"]
