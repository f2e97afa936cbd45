"""Bounded resources over real sockets: heads, slow clients, connections,
generations and the memory store, each refusal the service's JSON error.

Each limit is tried on the servers that install it: ``serve`` (``askstream
serve``), ``protocol`` (plain uvicorn with ``--http askstream.service:HttpProtocol``)
and, for the limits an ASGI middleware enforces, ``uvicorn`` (plain uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.testing import ServerProcess

from .conftest import SERVICE_APP, SERVICE_ARGS, SERVICE_ENV, ask, llm_env
from .scrape import scrape, settled, value

HTTP_PROTOCOL = ["--http", "askstream.service:HttpProtocol"]

pytestmark = pytest.mark.anyio

# A request head, but its last headers: the Host is one the service serves.
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Serve(ServerProcess):
    """``askstream serve`` as a server process."""

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "askstream.cli", "serve",
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip


Start = Callable[..., ServerProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(kind, ASKSTREAM_X="...")``: a service of this test's own, stopped after."""
    started: list[ServerProcess] = []

    def run(kind: str, **env: str) -> ServerProcess:
        env = {
            "ASKSTREAM_DATA_DIR": str(tmp_path / f"data{len(started)}"),
            "ASKSTREAM_SHUTDOWN_TIMEOUT": "1",
            **SERVICE_ENV,
            **env,
        }
        server: ServerProcess
        if kind == "serve":
            server = Serve("askstream serve", env=env)
        else:
            args = [*SERVICE_ARGS, *(HTTP_PROTOCOL if kind == "protocol" else [])]
            server = ServerProcess(SERVICE_APP, factory=True, env=env, args=args)
        server.start()
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


# -- raw HTTP -------------------------------------------------------------------


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=30)


def read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    """One response off the socket: status, headers (lower-case names), JSON body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines)
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the body was cut"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def ends(sock: socket.socket, timeout: float = 30) -> bool:
    """Whether the server closes the connection (within ``timeout``), reading what is left."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0.2)[0])


def trickle(sock: socket.socket, pieces: Iterator[bytes], limit: float = 30) -> None:
    """Send ``pieces`` one by one, a moment apart, until the server says something
    (or ``limit`` seconds passed: then the test's read fails)."""
    deadline = time.monotonic() + limit
    for piece in pieces:
        if answered(sock) or time.monotonic() > deadline:
            return
        try:
            sock.sendall(piece)
        except OSError:  # the server closed it: its answer is waiting to be read
            return


def forever(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def assert_error(
    response: tuple[int, dict[str, str], Any], status: int, text: str = ""
) -> dict[str, str]:
    got, headers, body = response
    assert (got, body["code"]) == (status, status), body
    assert headers["content-type"] == "application/json"
    assert text in body["message"]
    return headers


# -- heads ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uvicorn", "protocol", "serve"])
def test_a_whole_head_over_the_cap_is_431_on_every_server(start: Start, kind: str) -> None:
    # 64 KiB in one write: uvicorn's parsers (h11 with its 16 KiB limit too) take it.
    server = start(kind)
    with connect(server) as sock:
        sock.sendall(HEALTH + b"X-Big: " + b"a" * 65536 + b"\r\n\r\n")
        assert_error(read_response(sock), 431, "over 16384 bytes")
    assert value(scrape(server.url), "askstream_refusals_total", limit="head_size") == 1


@pytest.mark.parametrize("kind", ["uvicorn", "protocol", "serve"])
def test_a_head_within_the_cap_is_served(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_MAX_HEAD_SIZE="2048")
    with connect(server) as sock:
        sock.sendall(HEALTH + b"X-Big: " + b"a" * 1900 + b"\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(HEALTH + b"X-Big: " + b"a" * 2100 + b"\r\n\r\n")
        assert_error(read_response(sock), 431, "over 2048 bytes")


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_an_unfinished_head_over_the_cap_is_431_and_the_end(start: Start, kind: str) -> None:
    # httptools alone buffers it for as long as the client likes (140 MB for five of 20 MB).
    server = start(kind)
    with connect(server) as sock:
        sock.sendall(HEALTH + b"X-Big: " + b"a" * 32768)
        assert_error(read_response(sock), 431, "the request head is over 16384 bytes")
        assert ends(sock)


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_a_trickled_head_is_408_and_the_end(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_HEADER_TIMEOUT="1")
    with connect(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle(sock, forever(b"X-Slow: yes\r\n"))
        assert_error(read_response(sock), 408, "did not arrive within 1 s")
        assert ends(sock)
    assert value(scrape(server.url), "askstream_refusals_total", limit="head_timeout") == 1


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_a_connection_that_never_sends_is_ended(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_HEADER_TIMEOUT="1")
    with connect(server) as sock:
        assert_error(read_response(sock), 408)
        assert ends(sock)


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_a_second_trickled_head_on_a_kept_connection_is_408(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_HEADER_TIMEOUT="1")
    with connect(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        trickle(sock, forever(b"X-Slow: yes\r\n"))
        assert_error(read_response(sock), 408)


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_a_request_the_parser_refuses_is_400_json(start: Start, kind: str) -> None:
    # A NUL in a header value (RFC 9110 section 5.5: reject or replace it).
    server = start(kind)
    with connect(server) as sock:
        sock.sendall(HEALTH + b"Last-Event-ID: 1\x002\r\n\r\n")
        assert_error(read_response(sock), 400)


# -- bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uvicorn", "protocol", "serve"])
def test_a_trickled_body_is_408_and_the_end(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_BODY_TIMEOUT="1")
    with connect(server) as sock:
        sock.sendall(b"POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
        trickle(sock, forever(b" "))
        headers = assert_error(read_response(sock), 408, "body did not arrive within 1 s")
        assert headers["connection"] == "close"
        assert ends(sock)


@pytest.mark.parametrize("kind", ["uvicorn", "protocol"])
def test_a_body_that_is_too_large_and_trickled_is_408_too(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_BODY_TIMEOUT="1")
    with connect(server) as sock:
        sock.sendall(b"POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        trickle(sock, forever(b" "))
        assert_error(read_response(sock), 408)


# -- connections ------------------------------------------------------------------


def health(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return read_response(sock)


@pytest.mark.parametrize("kind", ["protocol", "serve"])
def test_connections_over_the_cap_get_503_even_idle_ones_count(start: Start, kind: str) -> None:
    server = start(kind, ASKSTREAM_MAX_CONNECTIONS="3")
    held = [connect(server) for _ in range(3)]
    try:
        assert health(held[0])[0] == 200  # in use or idle, each one counts
        with connect(server) as extra:
            headers = assert_error(health(extra), 503, "limit of 3 connections")
            assert headers["retry-after"] == "5"
            assert ends(extra)
    finally:
        held.pop().close()
    # One went: there is room again, once the server saw it go.
    deadline = time.monotonic() + 10
    while True:
        with connect(server) as sock:
            status = health(sock)[0]
        if status == 200 or time.monotonic() > deadline:
            break
    assert status == 200
    assert health(held[0])[0] == 200
    for sock in held:
        sock.close()
    samples = settled(server.url, lambda s: True)
    assert value(samples, "askstream_refusals_total", limit="connections") >= 1


async def test_requests_over_the_cap_get_503_under_plain_uvicorn(
    start: Start, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    # Without the protocol, the middleware counts requests in progress (streams too).
    server = start("uvicorn", ASKSTREAM_MAX_CONNECTIONS="2", **llm_env(upstream, "fake-slow"))
    async with (
        client.stream("POST", server.url + "/api/ask", json={"question": "one"}) as one,
        client.stream("POST", server.url + "/api/ask", json={"question": "two"}) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        refused = await client.get(server.url + "/api/health")
        assert refused.status_code == 503
        assert refused.json()["code"] == 503
        assert refused.headers["retry-after"] == "5"
    # Both slots come back once the server has seen both readers leave, which
    # may take it a moment after the client closed them: asked until then.
    for _ in range(200):
        if (await client.get(server.url + "/api/health")).status_code == 200:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the slots of the closed streams never came back")


# -- generations ------------------------------------------------------------------


async def test_a_user_over_their_generations_gets_429_with_retry_after(
    start: Start, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    server = start("uvicorn", ASKSTREAM_MAX_USER_GENERATIONS="1", **llm_env(upstream, "fake-slow"))
    async with client.stream("POST", server.url + "/api/ask", json={"question": "a"}) as first:
        assert first.status_code == 200
        message_id = first.headers["content-location"].rsplit("/", 1)[1]
        refused = await ask(client, server.url, "b")
        assert (refused.status, refused.body["code"]) == (429, 429)
        assert refused.headers["retry-after"] == "5"
        assert "1 answer generating" in refused.body["message"]
        cancelled = await client.post(f"{server.url}/api/streams/{message_id}/cancel")
        assert cancelled.status_code == 204
    # Its slot came back with the end of its answer.
    again = await ask(client, server.url, "c")
    assert again.status == 200
    assert again.done["answer"] == "Echo: c"


async def test_everyone_over_the_total_gets_503_with_retry_after(
    start: Start, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    server = start(
        "uvicorn",
        ASKSTREAM_MAX_GENERATIONS="1",
        ASKSTREAM_MAX_USER_GENERATIONS="5",
        **llm_env(upstream, "fake-slow"),
    )
    async with client.stream("POST", server.url + "/api/ask", json={"question": "a"}) as first:
        assert first.status_code == 200
        refused = await ask(client, server.url, "b")
        assert (refused.status, refused.body["code"]) == (503, 503)
        assert refused.headers["retry-after"] == "5"
        assert "limit of 1 answers" in refused.body["message"]


# -- the memory store -------------------------------------------------------------


async def test_the_memory_store_drops_finished_streams_first_then_refuses_new_asks(
    start: Start, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    # 1,000 bytes: four events (data and their cost, about 260 bytes each) fill it.
    server = start("uvicorn", ASKSTREAM_MEMORY_STORE_MAX_BYTES="1000", **llm_env(upstream))
    first = await ask(client, server.url, "first " * 20)
    assert first.status == 200
    second = await ask(client, server.url, "second")
    assert second.done["answer"] == "Echo: second"
    # The finished first stream made room: gone (410), its answer in the history.
    gone = await ask(
        client, server.url, method="GET", path=f"/api/streams/{first.done['messageId']}"
    )
    assert (gone.status, gone.body["code"]) == (410, 410)
    chat = (await client.get(f"{server.url}/api/chats/{first.done['chatId']}")).json()
    assert chat["messages"][1]["content"] == first.done["answer"]
    assert value(scrape(server.url), "askstream_store_evictions_total") >= 1

    server = start(
        "uvicorn", ASKSTREAM_MEMORY_STORE_MAX_BYTES="1000", **llm_env(upstream, "fake-slow")
    )
    async with client.stream(
        "POST", server.url + "/api/ask", json={"question": "live " * 40}
    ) as live:
        assert live.status_code == 200
        # Wait until the live answer alone fills the store.
        seen = 0
        async for line in live.aiter_lines():
            seen += line.startswith("data:")
            if seen >= 8:
                break
        refused = await ask(client, server.url, "no room?")
        assert (refused.status, refused.body["code"]) == (503, 503)
        assert refused.headers["retry-after"] == "5"
        assert "store is full" in refused.body["message"]
    samples = scrape(server.url)
    assert value(samples, "askstream_refusals_total", limit="store_bytes") == 1
    assert value(samples, "askstream_asks_total", outcome="refused") == 1


async def test_asks_and_reads_still_work_at_the_limits(
    start: Start, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    server = start("protocol", **llm_env(upstream))
    answers = await asyncio.gather(*(ask(client, server.url, f"q{n}") for n in range(10)))
    assert [a.done["answer"] for a in answers] == [f"Echo: q{n}" for n in range(10)]
