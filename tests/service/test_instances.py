"""Answers that outlive their connection and their server (docs/deploy.md).

Every test runs on a *deployment*: ``redis``, two uvicorn processes A and B
sharing Redis (a key prefix of their own) and a PostgreSQL database made for
this session, as behind a load balancer; or ``memory``, one process with the
in-process store and SQLite, where A and B are the same server. An answer
started on A is dropped and resumed on B; the deltas, ``done.answer`` and the
stored message must agree, with every event id once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import askstream
from askstream.sse import Event
from askstream.testing import ServerProcess

from .conftest import (
    AUTH,
    KINDS,
    TOKEN_ENV,
    Deploy,
    Deployment,
    deployments,
    llm_env,
    read_events,
)

pytestmark = pytest.mark.anyio

# About 85 pieces 10 ms apart: "mid-answer" lasts most of a second.
# Every client is one user, by token: the instances share no session key.
DEMO = {"ASKSTREAM_DEMO_DELAY": "0.01", **TOKEN_ENV}
TERMINAL = {"done", "error"}


@pytest.fixture(scope="module", params=KINDS)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A deployment of each kind, shared by this module's tests: the demo model."""
    with deployments(request, tmp_path_factory.mktemp("pair"), **DEMO) as deploy:
        yield deploy(request.param)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def deploy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    """``deploy(kind, **env)``: a deployment of this test's own, with settings of its own."""
    with deployments(request, tmp_path, **DEMO) as make:
        yield make


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0), headers=AUTH) as client:
        yield client


# -- reading ------------------------------------------------------------------------


@dataclass
class Read:
    """What one connection gave: its events; ``message_id`` once known."""

    events: list[Event]
    message_id: str
    complete: bool  # it ended with done or error


async def read(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int | None = None,
    after: str | None = None,
    **kwargs: Any,
) -> Read:
    """Read a stream; with ``limit``, drop the connection after that many events."""
    headers = {"Last-Event-ID": after} if after else {}
    events: list[Event] = []
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        message_id = response.headers["content-location"].rsplit("/", 1)[1]
        async for event in read_events(response):
            events.append(event)
            if event.event in TERMINAL or (limit is not None and len(events) >= limit):
                break
    return Read(events, message_id, bool(events) and events[-1].event in TERMINAL)


async def stored(client: httpx.AsyncClient, server: ServerProcess, done: Event) -> dict[str, Any]:
    chat_id = json.loads(done.data)["chatId"]
    chat = (await client.get(f"{server.url}/api/chats/{chat_id}")).json()
    message: dict[str, Any] = chat["messages"][-1]
    return message


def check_whole(events: list[Event]) -> str:
    """Every id once, in order from 1; the deltas add up to ``done.answer``; the answer."""
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1].event == "done", events[-1]
    deltas = "".join(json.loads(e.data)["delta"] for e in events[:-1])
    done = json.loads(events[-1].data)
    assert done["answer"] == deltas
    return deltas


def ask_body(question: str) -> dict[str, Any]:
    return {"json": {"chatId": None, "question": question}}


# -- resume ---------------------------------------------------------------------------


async def test_an_answer_dropped_on_a_resumes_on_b_whole(
    pair: Deployment, client: httpx.AsyncClient
) -> None:
    first = await read(
        client, "POST", pair.a.url + "/api/ask", limit=5, **ask_body("drop on A, resume on B")
    )
    assert not first.complete
    last_id = first.events[-1].id
    rest = await read(client, "GET", f"{pair.b.url}/api/streams/{first.message_id}", after=last_id)
    events = first.events + rest.events
    answer = check_whole(events)
    assert "drop on A, resume on B" in answer
    for server in (pair.a, pair.b):
        message = await stored(client, server, events[-1])
        assert message["status"] == "complete"
        assert message["content"] == answer


async def test_the_last_event_id_query_parameter_resumes_too(
    pair: Deployment, client: httpx.AsyncClient
) -> None:
    first = await read(client, "POST", pair.a.url + "/api/ask", limit=3, **ask_body("by query"))
    url = f"{pair.b.url}/api/streams/{first.message_id}?lastEventId=3"
    rest = await read(client, "GET", url)
    check_whole(first.events + rest.events)


async def test_several_readers_on_both_instances_get_identical_events(
    pair: Deployment, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", pair.a.url + "/api/ask", **ask_body("many readers, one answer")
    ) as response:
        location = response.headers["content-location"]
        events = read_events(response)
        head = [await anext(events)]
        readers = [
            read(client, "GET", server.url + location)
            for server in (pair.a, pair.b, pair.a, pair.b, pair.b)
        ]
        results = await asyncio.gather(*readers)
        head += [event async for event in events]
    check_whole(head)
    for result in results:
        assert result.events == head


async def test_a_reader_that_leaves_stops_nothing(
    pair: Deployment, client: httpx.AsyncClient
) -> None:
    first = await read(client, "POST", pair.a.url + "/api/ask", limit=2, **ask_body("leave"))
    # Nobody reads now; the answer still runs to its end in the log and the history.
    async with asyncio.timeout(10):
        while True:
            rest = await read(client, "GET", f"{pair.b.url}/api/streams/{first.message_id}")
            if rest.events[-1].event == "done":
                break
    answer = check_whole(rest.events)
    message = await stored(client, pair.b, rest.events[-1])
    assert (message["status"], message["content"]) == ("complete", answer)


async def test_unknown_streams_are_404_on_every_instance(
    pair: Deployment, client: httpx.AsyncClient
) -> None:
    for server in pair.servers:
        response = await client.get(f"{server.url}/api/streams/{uuid.uuid4().hex}")
        assert response.status_code == 404
        assert response.json()["code"] == 404


# -- cancel, expiry, a dead instance ------------------------------------------------------


async def test_cancel_on_b_stops_the_generation_on_a(
    kind: str, deploy: Deploy, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    deployment = deploy(kind, **llm_env(upstream, "fake-slow"))  # a piece every 0.3 s
    question = f"cancel me from the other instance {uuid.uuid4().hex}"
    async with client.stream(
        "POST", deployment.a.url + "/api/ask", **ask_body(question)
    ) as response:
        events = read_events(response)
        head = [await anext(events)]
        message_id = json.loads(head[0].data)["messageId"]
        cancelled = await client.post(f"{deployment.b.url}/api/streams/{message_id}/cancel")
        assert cancelled.status_code == 204
        rest = [event async for event in events]
    events_seen = head + rest
    answer = check_whole(events_seen)
    assert json.loads(events_seen[-1].data)["finishReason"] == "cancelled"
    assert len(events_seen) < 6
    message = await stored(client, deployment.b, events_seen[-1])
    assert (message["status"], message["content"]) == ("cancelled", answer)
    again = await client.post(f"{deployment.b.url}/api/streams/{message_id}/cancel")
    assert again.status_code == 204  # cancelling a cancelled answer changes nothing
    requests = (await client.get(upstream.url + "/requests")).json()
    record = next(r for r in requests if r["messages"][-1]["content"] == question)
    assert record["outcome"] == "disconnected"  # A closed its upstream request
    # ... at the cancel, not at the answer's end: the pieces it had sent are about those
    # the reader got (one in flight, one for the cancel's trip through the store), no more after.
    assert record["sentBeforeDisconnect"] <= len(events_seen) + 2
    assert record["sent"] == record["sentBeforeDisconnect"]


async def test_a_stream_past_its_retention_is_410_and_an_unknown_one_404(
    kind: str, deploy: Deploy, client: httpx.AsyncClient
) -> None:
    deployment = deploy(kind, ASKSTREAM_STREAM_RETENTION="0.3", ASKSTREAM_DEMO_DELAY="0")
    old = await read(client, "POST", deployment.a.url + "/api/ask", **ask_body("soon gone"))
    check_whole(old.events)
    url = f"{deployment.b.url}/api/streams/{old.message_id}"
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(0.4)
            # The memory store lets streams expire when the next one starts.
            await read(client, "POST", deployment.a.url + "/api/ask", **ask_body("next"))
            response = await client.get(url)
            if response.status_code != 200:
                break
    assert response.status_code == 410
    assert response.json()["code"] == 410
    assert "expired" in response.json()["message"]
    cancel = await client.post(url + "/cancel")
    assert cancel.status_code == 410
    message = await stored(client, deployment.b, old.events[-1])
    assert message["status"] == "complete"  # the history keeps it
    unknown = await client.get(f"{deployment.b.url}/api/streams/{uuid.uuid4().hex}")
    assert unknown.status_code == 404


async def test_killing_a_mid_answer_ends_bs_reader_with_503_and_fails_the_message(
    deploy: Deploy, client: httpx.AsyncClient
) -> None:
    """The default lease (5 s, renewed every 2 s): B's reader hears within 10 s."""
    deployment = deploy("redis", ASKSTREAM_DEMO_DELAY="0.1")  # a piece every 0.1 s
    first = await read(client, "POST", deployment.a.url + "/api/ask", limit=3, **ask_body("kill"))
    url = f"{deployment.b.url}/api/streams/{first.message_id}"
    async with client.stream("GET", url, headers={"Last-Event-ID": "3"}) as response:
        events = read_events(response)
        rest = [await anext(events)]  # B follows live
        deployment.a.kill()  # SIGKILL: no shutdown, no last save, no finish
        killed = time.monotonic()
        async with asyncio.timeout(15):
            rest += [event async for event in events]
        noticed = time.monotonic() - killed
    seen = first.events + rest
    assert [e.id for e in seen] == [str(n) for n in range(1, len(seen) + 1)]
    assert seen[-1].event == "error"
    error = json.loads(seen[-1].data)
    assert error["code"] == 503
    assert noticed < 10, noticed
    deltas = "".join(json.loads(e.data)["delta"] for e in seen[:-1])
    chat_id = json.loads(seen[0].data)["chatId"]
    chat = (await client.get(f"{deployment.b.url}/api/chats/{chat_id}")).json()
    message = chat["messages"][-1]
    assert message["status"] == "failed"
    assert message["error"] == error["message"]
    assert message["content"] == deltas  # what the readers got, from the log


# -- the Python client behind a load balancer that drops a connection ------------------


@dataclass
class Balancer:
    """A TCP load balancer on loopback: the first connection goes to ``targets[0]``
    and is cut after ``cut_after`` response bytes; later ones go to ``targets[-1]``."""

    targets: list[ServerProcess]
    cut_after: int
    url: str = ""
    connections: int = 0


@contextlib.asynccontextmanager
async def balancer(targets: list[ServerProcess], cut_after: int) -> AsyncIterator[Balancer]:
    lb = Balancer(targets, cut_after)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None
    ) -> None:
        sent = 0
        try:
            while data := await reader.read(65536):
                if limit is not None and sent + len(data) >= limit:
                    writer.write(data[: limit - sent])
                    break
                writer.write(data)
                await writer.drain()
                sent += len(data)
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = lb.connections
        lb.connections += 1
        target = targets[0] if number == 0 else targets[-1]
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
        limit = cut_after if number == 0 else None
        for task in (
            asyncio.create_task(pipe(reader, up_writer, None)),
            asyncio.create_task(pipe(up_reader, writer, limit)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    lb.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with server:
            yield lb
    finally:
        for task in list(pipes):
            task.cancel()
        if pipes:
            await asyncio.wait(list(pipes))


async def test_the_async_client_resumes_a_dropped_post_on_the_other_instance(
    pair: Deployment,
) -> None:
    async with (
        balancer(pair.servers, cut_after=2000) as lb,
        askstream.aconnect(
            "POST",
            lb.url + "/api/ask",
            json={"question": "resume me elsewhere, async"},
            until=TERMINAL,
            headers=AUTH,
            reconnect=askstream.Reconnect(delay=0.05, jitter=0.0),
        ) as source,
    ):
        events = [event async for event in source]
    assert lb.connections == 2  # the POST to A, then one resuming GET to B
    answer = check_whole(events)
    async with httpx.AsyncClient(headers=AUTH) as client:
        message = await stored(client, pair.b, events[-1])
    assert message["content"] == answer


async def test_the_sync_client_resumes_a_dropped_post_on_the_other_instance(
    pair: Deployment,
) -> None:
    def ask_blocking(url: str) -> list[Event]:
        with askstream.connect(
            "POST",
            url + "/api/ask",
            json={"question": "resume me elsewhere, sync"},
            until=TERMINAL,
            headers=AUTH,
            reconnect=askstream.Reconnect(delay=0.05, jitter=0.0),
        ) as source:
            return list(source)

    async with balancer(pair.servers, cut_after=2000) as lb:
        events = await asyncio.to_thread(ask_blocking, lb.url)
    assert lb.connections == 2
    check_whole(events)


# -- chaos --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_fifty_answers_dropped_and_resumed_three_times_are_byte_identical(
    pair: Deployment,
) -> None:
    rng = random.Random(50)
    servers = [pair.a, pair.b]
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)

    async def one(client: httpx.AsyncClient, number: int) -> tuple[list[Event], ServerProcess]:
        # Three cuts of at most 25 events each stay inside the demo's ~90 pieces,
        # so every answer really is dropped three times before it ends.
        server = rng.choice(servers)
        got = await read(
            client,
            "POST",
            server.url + "/api/ask",
            limit=rng.randint(1, 25),
            **ask_body(f"chaos {number}: {'lorem ipsum ' * rng.randint(1, 5)}"),
        )
        events, message_id, drops = got.events, got.message_id, 0
        while not got.complete:
            drops += 1
            server = rng.choice(servers)
            await asyncio.sleep(rng.random() * 0.05)
            got = await read(
                client,
                "GET",
                f"{server.url}/api/streams/{message_id}",
                after=events[-1].id,
                limit=rng.randint(1, 25) if drops < 3 else None,
            )
            events += got.events
        assert drops == 3
        return events, rng.choice(servers)

    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=AUTH) as client:
        results = await asyncio.gather(*(one(client, n) for n in range(50)))
        for events, server in results:
            answer = check_whole(events)
            message = await stored(client, server, events[-1])
            assert message["status"] == "complete"
            assert message["content"].encode() == answer.encode()
