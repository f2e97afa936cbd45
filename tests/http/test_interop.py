"""Interop both ways: askstream's client reads sse-starlette; httpx-sse reads askstream.

Both servers send tests/http/apps.py's INTEROP_EVENTS; every reader must see the
events the spec's parsing gives for them (askstream's own Decoder on askstream's
own encoding, proved spec-exact in tests/sse).
"""

from __future__ import annotations

import httpx
import httpx_sse
import pytest

from askstream import Decoder, Event, aconnect, connect, encode
from askstream.testing import ServerProcess
from tests.http.apps import INTEROP_EVENTS

pytestmark = pytest.mark.anyio

EXPECTED = Decoder().feed(b"".join(encode(event) for event in INTEROP_EVENTS))
Seen = tuple[str, str, str, int | None]


def as_seen(events: list[Event]) -> list[Seen]:
    # httpx-sse writes a missing id as "".
    return [(event.event, event.data, event.id or "", event.retry) for event in events]


async def read_with_askstream(url: str) -> list[Event]:
    async with aconnect("GET", url, reconnect=None) as source:
        return [event async for event in source]


async def read_with_httpx_sse(url: str) -> list[Seen]:
    async with httpx.AsyncClient() as client, httpx_sse.aconnect_sse(client, "GET", url) as source:
        return [(sse.event, sse.data, sse.id, sse.retry) async for sse in source.aiter_sse()]


def test_the_expected_events_keep_the_last_id_in_force() -> None:
    assert EXPECTED[3] == Event("  leading spaces kept", event="note", id="2")
    assert EXPECTED[4].retry == 2500


async def test_askstream_reads_a_stream_served_by_sse_starlette(rival: ServerProcess) -> None:
    assert await read_with_askstream(f"{rival.url}/interop") == EXPECTED


def test_the_sync_client_reads_it_too(rival: ServerProcess) -> None:
    with connect("GET", f"{rival.url}/interop", reconnect=None) as source:
        assert list(source) == EXPECTED


async def test_httpx_sse_reads_a_stream_served_by_askstream(server: ServerProcess) -> None:
    assert await read_with_httpx_sse(f"{server.url}/interop") == as_seen(EXPECTED)


async def test_all_four_pairings_see_identical_events(
    server: ServerProcess, rival: ServerProcess
) -> None:
    seen = [
        as_seen(await read_with_askstream(f"{server.url}/interop")),
        as_seen(await read_with_askstream(f"{rival.url}/interop")),
        await read_with_httpx_sse(f"{server.url}/interop"),
        await read_with_httpx_sse(f"{rival.url}/interop"),
    ]
    assert seen == [as_seen(EXPECTED)] * 4
