"""Outages over real sockets: a redis-server the test starts, kills and restarts on
the same port, and a TCP proxy the test cuts between the service and PostgreSQL.

What must hold: asks and stream reads answer 503 with ``Retry-After`` (never
500), ``/api/ready`` says 503 while ``/api/health`` stays 200, readers are
never left hanging (``event: error`` 503 and a clean end), the log says once
that a dependency is down and once that it is back, and after the outage new
asks succeed within 5 s without a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.sse import Event
from askstream.testing import ServerProcess

from .conftest import AUTH, SERVICE_APP, SERVICE_ARGS, SERVICE_ENV, TOKEN_ENV, ask, read_events
from .faults import RedisServer, TcpProxy, redis_server
from .scrape import scrape, value

pytestmark = pytest.mark.anyio

# A quick lease, so that "longer than the lease ttl" is a second.
LEASE = {"ASKSTREAM_LEASE_TTL": "1", "ASKSTREAM_LEASE_RENEW": "0.5"}
# About 85 pieces 50 ms apart: an answer is still generating seconds later.
SLOW = {"ASKSTREAM_DEMO_DELAY": "0.05"}
# The sweep for answers no lease covers waits out the model's timeouts first.
QUICK_SWEEP = {"ASKSTREAM_LLM_CONNECT_TIMEOUT": "0.5", "ASKSTREAM_LLM_READ_TIMEOUT": "0.5"}
RECOVERY = 5.0  # seconds within which asks must succeed again (issue 12, item 1)


@dataclass
class Instance:
    server: ServerProcess
    log: Path

    @property
    def url(self) -> str:
        return self.server.url

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


Spawn = Callable[..., Instance]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """``spawn(ASKSTREAM_X=...)``: a service whose log the test reads, stopped after."""
    started: list[tuple[ServerProcess, Any]] = []

    def spawn(**env: str) -> Instance:
        number = len(started)
        log = tmp_path / f"service{number}.log"
        handle = log.open("wb")
        server = ServerProcess(
            SERVICE_APP,
            factory=True,
            env={
                "ASKSTREAM_DATA_DIR": str(tmp_path / f"data{number}"),
                **SERVICE_ENV,
                # One user on every instance, by token: instances share no session key.
                **TOKEN_ENV,
                **env,
            },
            args=SERVICE_ARGS,
            stderr=handle,
        )
        started.append((server, handle))
        server.start()
        return Instance(server, log)

    yield spawn
    for server, handle in started:
        server.stop()
        handle.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0), headers=AUTH) as client:
        yield client


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def error_of(event: Event) -> dict[str, Any]:
    assert event.event == "error", event
    body: dict[str, Any] = json.loads(event.data)
    return body


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == 503
    assert int(response.headers["Retry-After"]) > 0


async def ask_until_done(client: httpx.AsyncClient, url: str, within: float) -> float:
    """Ask until an answer streams to ``done``; how long that took (``within`` at most)."""
    began = time.monotonic()
    while True:
        answer = await ask(client, url, "Are you back?")
        if answer.status == 200 and answer.events and answer.last.event == "done":
            return time.monotonic() - began
        assert answer.status == 503, (answer.status, answer.body, answer.events[-2:])
        assert time.monotonic() - began < within, "asks still fail after the outage"
        await _pause(0.1)


async def _pause(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def outage_lines(instance: Instance) -> list[str]:
    return [line for line in instance.lines() if "unreachable" in line]


async def test_a_redis_outage_is_503_and_asks_succeed_again_without_a_restart(
    own_redis: RedisServer, spawn: Spawn, client: httpx.AsyncClient
) -> None:
    service = spawn(ASKSTREAM_REDIS_URL=own_redis.url, **LEASE, **SLOW)
    url = service.url
    async with client.stream("POST", url + "/api/ask", json={"question": "Hi?"}) as response:
        assert response.status_code == 200
        events = read_events(response)
        first = await anext(events)
        message_id = json.loads(first.data)["messageId"]
        chat_id = json.loads(first.data)["chatId"]
        own_redis.kill()  # while the answer generates
        rest = [event async for event in events]  # ends: the reader is not left hanging
    assert error_of(rest[-1])["code"] == 503

    # During the outage: 503 with Retry-After, never 500; liveness stays 200.
    assert_503(await client.post(url + "/api/ask", json={"question": "Now?"}))
    assert_503(await client.get(f"{url}/api/streams/{message_id}"))
    assert_503(await client.get(url + "/api/ready"))
    assert (await client.get(url + "/api/health")).status_code == 200

    own_redis.start()  # on the same port, empty
    await ask_until_done(client, url, RECOVERY)
    assert (await client.get(url + "/api/ready")).status_code == 200

    chat = (await client.get(f"{url}/api/chats/{chat_id}")).json()
    assert chat["messages"][-1]["status"] == "failed"  # stored, with what it had
    lines = service.lines()
    assert not [line for line in lines if "Traceback" in line]
    assert len([line for line in lines if "the stream store is unreachable" in line]) == 1
    assert len([line for line in lines if "the stream store is back" in line]) == 1
    assert len(lines) < 30, lines  # a few lines per outage, not one per request or retry
    # Counted, where the log says it once: the failures, the answer, the refused ask.
    samples = scrape(url, AUTH)
    assert value(samples, "askstream_store_errors_total", kind="unreachable") >= 1
    # The answer the outage cut; the asks answered 503 are refused, not failed.
    assert value(samples, "askstream_asks_total", outcome="failed") == 1
    assert value(samples, "askstream_asks_total", outcome="refused") >= 1


async def test_a_reader_of_a_vanished_stream_gets_503_and_the_answer_is_stored_failed(
    own_redis: RedisServer,
    spawn: Spawn,
    client: httpx.AsyncClient,
    pg_database: str,
) -> None:
    shared = {"ASKSTREAM_REDIS_URL": own_redis.url, "ASKSTREAM_DATABASE_URL": pg_database}
    generator = spawn(**shared, **LEASE, **SLOW)
    reader = spawn(**shared, **LEASE, **SLOW, **QUICK_SWEEP)
    async with client.stream(
        "POST", generator.url + "/api/ask", json={"question": "Hi?"}
    ) as response:
        first = await anext(read_events(response))
    piece = json.loads(first.data)
    async with client.stream(
        "GET",
        f"{reader.url}/api/streams/{piece['messageId']}",
        headers={"Last-Event-ID": first.id or ""},
    ) as response:
        assert response.status_code == 200
        events = read_events(response)
        for _ in range(5):  # following live on the other instance, past a save
            await anext(events)
        generator.server.kill()  # the generator is gone...
        own_redis.kill()
        own_redis.start()  # ...and Redis comes back empty: no lease left to reap
        rest = [event async for event in events]
    body = error_of(rest[-1])
    assert body["code"] == 503
    answer = await until_failed(client, reader.url, piece["chatId"])
    assert answer["content"]  # what was saved before the end is kept
    assert value(scrape(reader.url, AUTH), "askstream_store_errors_total", kind="lost") >= 1


async def until_failed(client: httpx.AsyncClient, url: str, chat_id: str) -> dict[str, Any]:
    """The chat's answer once it is stored ``failed`` (within a few sweeps)."""
    began = time.monotonic()
    while True:
        chat = (await client.get(f"{url}/api/chats/{chat_id}")).json()
        answer: dict[str, Any] = chat["messages"][-1]
        if answer["status"] != "streaming":
            assert answer["status"] == "failed", answer
            return answer
        assert time.monotonic() - began < 15, "the lost answer is still streaming"
        await _pause(0.1)


async def test_an_answer_whose_stream_and_generator_are_both_gone_is_stored_failed(
    own_redis: RedisServer, spawn: Spawn, client: httpx.AsyncClient, pg_database: str
) -> None:
    # No reader at all: the other instance's sweep finds the answer.
    shared = {"ASKSTREAM_REDIS_URL": own_redis.url, "ASKSTREAM_DATABASE_URL": pg_database}
    generator = spawn(**shared, **LEASE, **SLOW)
    survivor = spawn(**shared, **LEASE, **SLOW, **QUICK_SWEEP)
    async with client.stream(
        "POST", generator.url + "/api/ask", json={"question": "Hi?"}
    ) as response:
        first = await anext(read_events(response))
    generator.server.kill()
    own_redis.kill()
    own_redis.start()  # empty: no lease left for the reaper
    answer = await until_failed(client, survivor.url, json.loads(first.data)["chatId"])
    assert answer["error"] == "the answer's stream was lost by the stream store; ask again"


async def test_a_database_outage_is_503_and_asks_succeed_again_without_a_restart(
    spawn: Spawn, client: httpx.AsyncClient, pg_database: str
) -> None:
    with TcpProxy(5432) as proxy:
        through_proxy = pg_database.replace(":5432/", f":{proxy.port}/")
        service = spawn(ASKSTREAM_DATABASE_URL=through_proxy, ASKSTREAM_DEMO_DELAY="0.02")
        url = service.url
        first = await ask(client, url, "Hi?")
        assert first.status == 200
        chat_id = first.done["chatId"]

        async with client.stream("POST", url + "/api/ask", json={"question": "Long?"}) as response:
            events = read_events(response)
            piece = json.loads((await anext(events)).data)
            proxy.cut()  # every database connection breaks, new ones are refused
            rest = [event async for event in events]
        # The answer in flight streamed on, but its end could not be stored: 503.
        assert error_of(rest[-1])["code"] == 503
        assert len(rest) > 10
        for _ in range(20):
            assert_503(await client.post(url + "/api/ask", json={"question": "Now?"}))
        assert_503(
            await client.post(url + "/api/ask", json={"chatId": chat_id, "question": "And?"})
        )
        assert_503(await client.get(url + "/api/chats"))
        assert_503(await client.get(url + "/api/ready"))
        assert (await client.get(url + "/api/health")).status_code == 200

        proxy.restore()
        await ask_until_done(client, url, RECOVERY)
        assert (await client.get(url + "/api/ready")).status_code == 200
        # Its end is written once the database is back, with all its text.
        answer = await until_failed(client, url, piece["chatId"])
        deltas = [json.loads(e.data)["delta"] for e in rest if e.event == "message"]
        assert answer["content"] == piece["delta"] + "".join(deltas)
    lines = service.lines()
    assert not [line for line in lines if "Traceback" in line]
    assert len([line for line in lines if "the database is unreachable" in line]) == 1
    assert len([line for line in lines if "the database is back" in line]) == 1
