"""Soak: 500 concurrent streams for two minutes against one service, readers
dropping and resuming at random; no answer lost or altered, no memory kept.

One service (demo model, memory store, SQLite) in a uvicorn subprocess; 500
readers in this process, each a user of its own (a bearer token each), each
asking one question after another for ``SOAK`` seconds. A reader hangs up at a
random event now and then, waits a moment and resumes with ``GET
/api/streams/{messageId}`` and ``Last-Event-ID``, as many times as chance says.
Every answer must then show:

- every event once, in order, across all its connections: ids 1, 2, ..., n;
- ``done``'s ``answer`` equal to the deltas received, and naming the question;
- the stored message (``GET /api/chats/{chatId}``) ``complete`` with that text.

Memory: the server's RSS after the soak must be within 10% of its RSS before.
To be fair to the allocator, "before" is measured after a warm-up of the same
load (``WARM_UP`` seconds, two answers per reader): the first rounds of 500
streams grow the heap, pymalloc's arenas and SQLite's page cache to their
working size once, and neither glibc nor pymalloc hands all of that back, so
an idle, fresh server (77 MiB here, 127 MiB after one round) would be the wrong
yardstick; after it, rounds of the same load leave RSS flat (127.3, 128.1,
128.1, 128.2, 128.7 MiB over five), while a leak grows with the work done,
and the soak does four times the warm-up's. Each measurement waits until
every stream has ended and the store's retention (``RETENTION``, short here)
has passed, asks once more so that the memory store drops the expired
streams (it does so when a stream is created), then takes the median of a
few samples. What the flat rounds still gain, about 0.3 MiB a thousand
answers, is the memory store's tombstones: the ids of expired streams, kept
a week so that they answer 410 rather than 404.

The readers speak HTTP/1.1 over asyncio streams themselves (``request``):
through httpx, whose h11 parses every chunk in Python, this process and not
the server was the bottleneck, its readers fell behind their answers by more
than the retention, and resumed into 410s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from askstream.sse import Decoder
from askstream.testing import ServerProcess

from .conftest import SERVICE_APP

pytestmark = pytest.mark.anyio

STREAMS = 500
SOAK = 120.0
WARM_UP = 30.0
#: Seconds between the demo's words: about 15 seconds an answer (75 events),
#: 2,500 events a second for the 500 readers.
DEMO_DELAY = "0.2"
#: Seconds a finished stream stays resumable: well over how far a reader of
#: this busy process may lag behind its answer before it hangs up and resumes.
RETENTION = 20.0
#: The chance that a connection is dropped before its answer ends.
HANG_UP = 0.5
#: An answer still going after this many seconds past the soak fails it.
DRAIN = 60.0

TOKENS = {f"soak{n:03d}": f"soak-token-{n:03d}-0123456789abcdef" for n in range(STREAMS)}


@pytest.fixture
def soaked_service(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        SERVICE_APP,
        factory=True,
        env={
            "ASKSTREAM_DATA_DIR": str(tmp_path / "data"),
            "ASKSTREAM_DEMO_DELAY": DEMO_DELAY,
            "ASKSTREAM_STREAM_RETENTION": str(RETENTION),
            "ASKSTREAM_LOG_LEVEL": "warning",
            "ASKSTREAM_TOKENS": ",".join(f"{user}:{token}" for user, token in TOKENS.items()),
            # Room for every reader's answer at once (the default is 256 a process).
            "ASKSTREAM_MAX_GENERATIONS": str(2 * STREAMS),
        },
        args=["--timeout-graceful-shutdown", "1"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Tally:
    answers: int = 0
    events: int = 0
    hang_ups: int = 0
    resumes: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk (``Transfer-Encoding: chunked``, as uvicorn streams)."""
        if self.headers.get("transfer-encoding") != "chunked":
            yield await self.reader.readexactly(int(self.headers.get("content-length", "0")))
            return
        while size := int((await self.reader.readuntil(b"\r\n"))[:-2], 16):
            yield (await self.reader.readexactly(size + 2))[:-2]

    async def json(self) -> Any:
        return json.loads(b"".join([chunk async for chunk in self.chunks()]))


@contextlib.asynccontextmanager
async def request(
    url: str, method: str, path: str, headers: dict[str, str], body: Any = None
) -> AsyncIterator[Reply]:
    """One HTTP/1.1 request on a connection of its own, closed when the block ends
    (see the module's docstring for why not httpx)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in head[1:] if line)
        yield Reply(
            int(head[0].split(" ")[1]),
            {name.strip().lower(): value.strip() for name, _, value in fields},
            reader,
            writer,
        )
    finally:
        writer.close()  # mid-body too: that is how a reader hangs up
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class Reader:
    """One user asking question after question, dropping and resuming at random."""

    url: str
    token: str
    rng: random.Random
    tally: Tally

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def run(self, until: float) -> None:
        number = 0
        while time.monotonic() < until:
            number += 1
            question = f"soak {self.token[11:14]} question {number}: {self.rng.random():.6f}"
            try:
                await self.answer(question)
            except (
                AssertionError,
                OSError,
                asyncio.IncompleteReadError,
                KeyError,
                ValueError,
            ) as exc:
                self.tally.failures.append(f"{question!r}: {type(exc).__name__}: {exc}")
                return

    async def answer(self, question: str) -> None:
        ids: list[int] = []
        deltas: list[str] = []
        done: dict[str, str] | None = None
        chat_id = message_id = ""
        method, path = "POST", "/api/ask"
        body: dict[str, str | None] | None = {"chatId": None, "question": question}
        while done is None:
            hang_up_after = self.rng.randrange(1, 80) if self.rng.random() < HANG_UP else None
            headers = dict(self.auth)
            if ids and method == "GET":
                headers["Last-Event-ID"] = str(ids[-1])
            received = 0
            async with request(self.url, method, path, headers, body) as reply:
                if reply.status != 200:
                    raise AssertionError(f"{method} {path}: {reply.status} {await reply.json()}")
                message_id = reply.headers["content-location"].rsplit("/", 1)[1]
                decoder = Decoder()
                async for chunk in reply.chunks():
                    for event in decoder.feed(chunk):
                        received += 1
                        ids.append(int(event.id or 0))
                        data = json.loads(event.data)
                        if event.event == "message":
                            deltas.append(data["delta"])
                            chat_id = data["chatId"]
                        elif event.event == "done":
                            done = data
                        else:
                            raise AssertionError(f"{event.event}: {event.data}")
                    if done is not None or (hang_up_after and received >= hang_up_after):
                        break  # leaving the block mid-body closes the connection
            self.tally.events += received
            if done is None:
                if not (hang_up_after and received >= hang_up_after):
                    raise AssertionError(f"the stream ended without done after {ids[-3:]}")
                self.tally.hang_ups += 1
                await asyncio.sleep(self.rng.uniform(0, 1.0))
                method, path, body = "GET", f"/api/streams/{message_id}", None
                self.tally.resumes += 1
        assert ids == list(range(1, len(ids) + 1)), f"ids {ids}"
        answer = done["answer"]
        assert answer == "".join(deltas), "done's answer is not the deltas received"
        assert f"“{question}”" in answer, answer
        assert (done["chatId"], done["messageId"]) == (chat_id, message_id)
        async with request(self.url, "GET", f"/api/chats/{chat_id}", self.auth) as reply:
            chat = await reply.json()
            assert reply.status == 200, chat
        stored = chat["messages"][-1]
        assert (stored["messageId"], stored["status"]) == (message_id, "complete"), stored
        assert stored["content"] == answer, "the stored answer is not the one streamed"
        self.tally.answers += 1


async def load(url: str, seconds: float, seed: int) -> Tally:
    """Every reader at once for ``seconds``, then until their answers end."""
    tally = Tally()
    until = time.monotonic() + seconds
    readers = [
        Reader(url, token, random.Random(f"{seed}-{n}"), tally)
        for n, token in enumerate(TOKENS.values())
    ]
    async with asyncio.timeout(seconds + DRAIN), asyncio.TaskGroup() as group:
        for reader in readers:
            group.create_task(reader.run(until))
    return tally


async def settled_rss(server: ServerProcess) -> int:
    """The server's RSS once every stream has ended and expired (see the module's docstring)."""
    await asyncio.sleep(RETENTION + 1)
    auth = {"Authorization": f"Bearer {next(iter(TOKENS.values()))}"}
    async with request(server.url, "POST", "/api/ask", auth, {"question": "settle"}) as reply:
        assert reply.status == 200
        async for _ in reply.chunks():
            pass
    process = psutil.Process(server.pid)
    samples = []
    for _ in range(5):
        await asyncio.sleep(0.5)
        samples.append(process.memory_info().rss)
    return int(statistics.median(samples))


@pytest.mark.slow
@pytest.mark.timeout(SOAK + WARM_UP + 2 * DRAIN + 60)
async def test_500_streams_for_two_minutes_lose_nothing_and_keep_no_memory(
    soaked_service: ServerProcess,
) -> None:
    seed = random.SystemRandom().randrange(2**32)
    warm = await load(soaked_service.url, WARM_UP, seed)
    assert not warm.failures, warm.failures[:5]
    before = await settled_rss(soaked_service)

    tally = await load(soaked_service.url, SOAK, seed + 1)
    after = await settled_rss(soaked_service)

    mib = 1024 * 1024
    print(
        f"soak (seed {seed}): {tally.answers} answers, {tally.events} events, "
        f"{tally.hang_ups} hang-ups, {tally.resumes} resumes; warm-up {warm.answers} answers; "
        f"RSS {before / mib:.1f} MiB before, {after / mib:.1f} MiB after; "
        f"{len(tally.failures)} failures {tally.failures[:3]}"
    )
    assert not tally.failures, f"{len(tally.failures)} answers failed: {tally.failures[:5]}"
    # Every reader saw several answers through, and hung up and resumed many times.
    assert tally.answers >= 4 * STREAMS
    assert tally.resumes >= STREAMS
    assert after <= before * 1.10, f"RSS grew from {before / mib:.1f} to {after / mib:.1f} MiB"
