"""EventStreamResponse over real sockets: uvicorn (httptools, uvloop) in a subprocess.

The server's sources write the time their ``finally`` ran (time.monotonic, one
clock for every process of the machine) and ``GET /closed/{name}`` reports it.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable

import httpx
import psutil
import pytest

from askstream import Event, aconnect
from askstream.testing import ServerProcess
from tests.http.apps import CHINESE
from tests.http.support import UVICORN_ARGS, Poll, Report, open_raw, read_until, report_of


@pytest.mark.parametrize(
    "prefix", ["", "/wrapped"], ids=["uvicorn-receive", "receive-behind-base-http-middleware"]
)
def test_the_reader_leaving_closes_the_source_within_a_second(
    server: ServerProcess, report: Report, poll: Poll, prefix: str
) -> None:
    name = f"leaver{prefix.replace('/', '-')}"
    sock = open_raw(server, f"{prefix}/idle/{name}")
    read_until(sock, b"data: open\n\n")
    sock.close()
    poll(lambda: report(name)["closed"], 1.0, "the source's finally")


def test_an_idle_stream_sends_heartbeats(server: ServerProcess) -> None:
    sock = open_raw(server, "/idle/heartbeat?ping=0.2")
    try:
        data = read_until(sock, b": ping\n\n", count=2, timeout=3)
    finally:
        sock.close()
    assert b"data: open\n\n" in data


def test_a_reader_that_stops_reading_is_dropped_and_memory_stays_flat(
    start_server: Callable[..., ServerProcess], poll: Poll
) -> None:
    server = start_server("tests.http.apps:app", args=UVICORN_ARGS)
    report = report_of(server)
    process = psutil.Process(server.pid)
    httpx.get(f"{server.url}/hello")  # warm up
    rss_before = process.memory_info().rss
    # 64 KiB events as fast as the server can, to a reader that never reads.
    sock = open_raw(server, "/flood/stalled?size=65536&send_timeout=1", rcvbuf=65536)
    try:
        read_until(sock, b"data: xxx")
        poll(lambda: report("stalled")["closed"], 5.0, "dropping the stalled reader")
        produced = report("stalled")["produced"]
        rss_after = process.memory_info().rss
        # The server closed the connection: what it had written drains, then EOF.
        sock.settimeout(5)
        while sock.recv(1 << 20):
            pass
    finally:
        sock.close()
    # Only what the socket buffers hold was ever produced (each event is 64 KiB;
    # an unbounded server would have made thousands in that second).
    print("produced", produced, "rss growth", rss_after - rss_before)
    assert produced < 400
    assert rss_after - rss_before < 32 * 1024 * 1024


@pytest.mark.anyio
async def test_chinese_text_cut_across_tcp_segments_arrives_intact(server: ServerProcess) -> None:
    async with aconnect("GET", f"{server.url}/chinese", reconnect=None) as source:
        events = [event async for event in source]
    assert events == [Event(f"{n}:" + CHINESE * 2000, event="zh", id=str(n)) for n in range(5)]


@pytest.mark.parametrize("prefix", ["", "/wrapped"], ids=["plain", "behind-base-http-middleware"])
def test_a_stream_that_ends_ends_cleanly(server: ServerProcess, prefix: str) -> None:
    # The stream ends before the reader leaves: the response's task, listening
    # to the reader all along, must stop listening and let the response end.
    with httpx.stream("GET", f"{server.url}{prefix}/tokens?n=5000", timeout=10) as response:
        body = response.read()
    assert body == b"data: token\n\n" * 5000


@pytest.mark.anyio
@pytest.mark.parametrize("prefix", ["", "/wrapped"], ids=["plain", "behind-base-http-middleware"])
async def test_a_failing_source_ends_with_a_generic_error_event(
    server: ServerProcess, prefix: str
) -> None:
    async with aconnect("GET", f"{server.url}{prefix}/boom", reconnect=None) as source:
        events = [event async for event in source]
    assert [event.data for event in events[:2]] == ["one", "two"]
    assert events[2].event == "error"
    assert json.loads(events[2].data) == {"code": 500, "message": "The event source failed."}
    assert len(events) == 3


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_source_that_never_awaits_stops_when_the_reader_leaves(
    server: ServerProcess, report: Report, poll: Poll, kind: str
) -> None:
    name = f"spinner-{kind}"
    sock = open_raw(server, f"/never-awaits/{name}?kind={kind}")
    read_until(sock, b"data: spin\n\n", count=10)
    sock.close()
    poll(lambda: report(name)["closed"], 2.0, "stopping a source that never awaits")
    produced = report(name)["produced"]
    # The worker is free: it answers another request, and the source, whose
    # finally ran, produced nothing more in the turns that took.
    assert httpx.get(f"{server.url}/hello", timeout=5).status_code == 200
    assert report(name)["produced"] == produced


def test_an_unrelated_request_is_answered_while_a_stream_floods(server: ServerProcess) -> None:
    events = 300_000
    expected = events * len(b"data: token\n\n")
    received = 0
    flowing = threading.Event()
    finished = threading.Event()

    def read_flood() -> None:
        nonlocal received
        marker = b"data: token\n\n"
        carry = b""  # an event cut between two reads is counted with its end
        sock = open_raw(server, f"/tokens?n={events}")
        sock.settimeout(30)
        with sock:
            while received < expected:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data = carry + chunk
                received += data.count(marker) * len(marker)
                carry = data[-(len(marker) - 1) :]
                flowing.set()
        finished.set()

    reader = threading.Thread(target=read_flood)
    reader.start()
    answered_during_flood = 0
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert flowing.wait(timeout=10)
        while not finished.is_set():
            assert client.get("/hello").status_code == 200
            if not finished.is_set():
                answered_during_flood += 1
    reader.join()
    assert received == expected
    # How promptly is a benchmark's question (bench/bench_http.py, the fairness
    # row); here: other requests get answers while the flood is still going.
    assert answered_during_flood > 0


def test_sigterm_with_open_streams_stops_uvicorn_and_ends_them_cleanly(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("tests.http.apps:app", args=UVICORN_ARGS)
    outcomes: list[str] = []

    def read(name: str, opened: threading.Barrier) -> None:
        with httpx.stream("GET", f"{server.url}/idle/{name}", timeout=10) as response:
            chunks = response.iter_bytes()
            assert next(chunks) == b"data: open\n\n"
            opened.wait()
            try:
                rest = b"".join(chunks)
            except httpx.TransportError as exc:
                outcomes.append(f"broken: {exc!r}")
            else:
                outcomes.append(f"clean end {rest!r}")

    opened = threading.Barrier(4)
    readers = [threading.Thread(target=read, args=(f"term{n}", opened)) for n in range(3)]
    for reader in readers:
        reader.start()
    opened.wait(timeout=5)
    server.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once its graceful shutdown is done.
    assert server.wait(timeout=5) in (0, -signal.SIGTERM)
    for reader in readers:
        reader.join(timeout=5)
    assert outcomes == ["clean end b''"] * 3
