"""askstream's own client against the service: the pair round-trips, and an answer whose
connection drops resumes at the response's Content-Location with Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

import askstream
from askstream.testing import ServerProcess

from .conftest import ask

pytestmark = pytest.mark.anyio


@dataclass
class Proxy:
    url: str
    connections: int = 0


@contextlib.asynccontextmanager
async def cutting_proxy(target: ServerProcess, cut_after: int) -> AsyncIterator[Proxy]:
    """A TCP proxy that drops its first connection after ``cut_after`` response bytes."""
    proxy = Proxy("")

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None
    ) -> None:
        sent = 0
        try:
            while data := await reader.read(65536):
                if limit is not None and sent + len(data) > limit:
                    writer.write(data[: limit - sent])
                    await writer.drain()
                    break
                writer.write(data)
                await writer.drain()
                sent += len(data)
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        proxy.connections += 1
        limit = cut_after if proxy.connections == 1 else None
        upstream_reader, upstream_writer = await asyncio.open_connection(target.host, target.port)
        await asyncio.gather(
            pipe(client_reader, upstream_writer, None),
            pipe(upstream_reader, client_writer, limit),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.url = f"http://127.0.0.1:{port}"
    async with server:
        yield proxy


async def test_aconnect_reads_the_same_events_as_the_raw_stream(
    llm: ServerProcess,
) -> None:
    # One client, so one anonymous session: the stream is its owner's only.
    async with httpx.AsyncClient() as client:
        async with askstream.aconnect(
            "POST",
            llm.url + "/api/ask",
            json={"question": "pair"},
            until={"done", "error"},
            client=client,
        ) as source:
            events = [event async for event in source]
        assert events[-1].event == "done"
        location = "/api/streams/" + json.loads(events[0].data)["messageId"]
        replay = await ask(client, llm.url, method="GET", path=location)
    assert replay.events == events


async def test_a_dropped_answer_resumes_at_content_location_without_loss(
    slow_llm: ServerProcess,
) -> None:
    async with (
        cutting_proxy(slow_llm, cut_after=1300) as proxy,
        askstream.aconnect(
            "POST",
            proxy.url + "/api/ask",
            json={"question": "drop me in the middle please"},
            until={"done", "error"},
            reconnect=askstream.Reconnect(delay=0.05, jitter=0.0),
        ) as source,
    ):
        events = [event async for event in source]
    assert proxy.connections == 2  # the POST, then one resuming GET
    assert events[-1].event == "done"
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]
    deltas = "".join(json.loads(e.data)["delta"] for e in events[:-1])
    assert deltas == json.loads(events[-1].data)["answer"] == "Echo: drop me in the middle please"
