"""A graceful stop over real sockets: SIGTERM (and Ctrl+C) with 50 open streams,
under ``askstream serve``, plain ``uvicorn --factory``, ``uvicorn --workers 2``
and two instances sharing Redis.

Every open stream ends with a final event (``error`` 503) and a properly ended
chunked body (httpx raises ``RemoteProtocolError`` on one cut short, as curl
says "transfer closed with outstanding read data"); answers in flight get
``shutdown_timeout`` to finish; the process exits soon after
``shutdown_timeout`` (long before its answers would end) and logs no
traceback; with another instance on Redis, a reader resumes there and gets the
whole answer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.service._demo import DEMO_MODEL
from askstream.service._history import ChatHistory, create_engine
from askstream.sse import Event
from askstream.testing import ServerProcess, require

from ..conftest import REDIS_URL, redis_available
from ..streams.conftest import delete_prefix
from .conftest import AUTH, SERVICE_APP, SERVICE_ENV, TOKEN_ENV, read_events

pytestmark = pytest.mark.anyio

STREAMS = 50
TIMEOUT = 1.0  # shutdown_timeout of these tests' services
# About 85 pieces 0.2 s apart: far longer than TIMEOUT.
LONG = {"ASKSTREAM_DEMO_DELAY": "0.2"}
# How long after TIMEOUT a stopping service may take to exit. A loaded machine
# (CI, or 2 cores shared by many runs) needed more than 1 s for two workers;
# TIMEOUT + EXIT_GRACE stays well under a LONG answer's 17 s, so an exit within
# it still proves shutdown_timeout cut the answers rather than waited for them.
EXIT_GRACE = 10.0
RESUME = "resume this stream with Last-Event-ID"


class Service(ServerProcess):
    """A service whose log the test reads; ``serve=True`` runs ``askstream serve``."""

    def __init__(self, tmp_path: Path, *, serve: bool = False, **kwargs: Any) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.log = tmp_path / f"service-{uuid.uuid4().hex[:8]}.log"
        self._handle = self.log.open("wb")
        self._serve = serve
        super().__init__(SERVICE_APP, factory=True, stderr=self._handle, **kwargs)

    def command(self) -> list[str]:
        if not self._serve:
            return super().command()
        return [sys.executable, "-m", "askstream.cli", "serve", "--port", str(self.port)]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._handle.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def start(
    services: list[Service], tmp_path: Path, *, args: list[str] | None = None, **env: str
) -> Service:
    serve = env.pop("_serve", "") == "1"
    service = Service(
        tmp_path,
        env={
            "ASKSTREAM_DATA_DIR": str(tmp_path / "data"),
            **SERVICE_ENV,
            **TOKEN_ENV,  # one user on every instance: instances share no session key
            "ASKSTREAM_SHUTDOWN_TIMEOUT": str(TIMEOUT),
            **env,
        },
        args=args or [],
        serve=serve,
    )
    services.append(service)
    service.start()
    return service


class Reader:
    """One open stream: its events so far; :meth:`run` reads it to its end."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.first = asyncio.Event()

    async def run(self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> None:
        async with client.stream(method, url, **kwargs) as response:
            assert response.status_code == 200, await response.aread()
            async for event in read_events(response):  # RemoteProtocolError if cut short
                self.events.append(event)
                self.first.set()

    @property
    def last(self) -> Event:
        return self.events[-1]

    @property
    def last_id(self) -> str:
        return [event.id for event in self.events if event.id][-1] or ""

    def text(self) -> str:
        return "".join(
            json.loads(event.data)["delta"] for event in self.events if event.event == "message"
        )


async def open_readers(
    client: httpx.AsyncClient, count: int, method: str, url: str, **kwargs: Any
) -> tuple[list[Reader], list[asyncio.Task[None]]]:
    readers = [Reader() for _ in range(count)]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(reader.run(client, method, url, **kwargs)) for reader in readers]
    for reader in readers:
        await asyncio.wait_for(reader.first.wait(), 30)
    return readers, tasks


async def asks(client: httpx.AsyncClient, url: str, count: int = STREAMS) -> Any:
    return await open_readers(client, count, "POST", url + "/api/ask", json={"question": "Hi?"})


def error_body(event: Event) -> dict[str, Any]:
    assert event.event == "error", event
    body: dict[str, Any] = json.loads(event.data)
    return body


def stop_and_time(service: Service, sig: int = signal.SIGTERM) -> None:
    """Signal ``service`` and check it exits within shutdown_timeout + EXIT_GRACE."""
    service.process.send_signal(sig)
    service.wait(TIMEOUT + EXIT_GRACE)  # subprocess.TimeoutExpired if it takes longer


def assert_clean_log(service: Service) -> None:
    text = service.text()
    assert "Traceback" not in text, text
    assert "Cancel " not in text, text  # uvicorn cancelling tasks after its own timeout


@pytest.fixture
async def client() -> Any:
    limits = httpx.Limits(max_connections=4 * STREAMS)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(30.0), limits=limits, headers=AUTH
    ) as client:
        yield client


def stored(data_dir: Path) -> list[tuple[str, str]]:
    # sqlite3's `with` commits but does not close (Python 3.13 warns of the leak).
    with closing(sqlite3.connect(data_dir / "askstream.db")) as db:
        rows = db.execute(
            "SELECT status, content FROM askstream_messages WHERE role = 'assistant'"
        ).fetchall()
    return [(status, content) for status, content in rows]


# -- one instance --------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["uvicorn", "serve"])
async def test_sigterm_ends_50_open_streams_with_a_final_event_and_exits_in_time(
    runner: str, services: list[Service], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    service = start(services, tmp_path, **LONG, **({"_serve": "1"} if runner == "serve" else {}))
    readers, tasks = await asks(client, service.url)
    stop_and_time(service)
    await asyncio.gather(*tasks)  # each one's body ended properly
    for reader in readers:
        # Its answer outlived the timeout: stored cancelled, the stream says so.
        assert error_body(reader.last)["code"] == 503
    answers = stored(tmp_path / "data")
    assert len(answers) == STREAMS
    assert {status for status, _ in answers} == {"cancelled"}
    assert all(content for _, content in answers)  # with what it had
    assert_clean_log(service)


async def test_answers_in_flight_finish_within_the_shutdown_timeout(
    services: list[Service], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    service = start(
        services, tmp_path, ASKSTREAM_DEMO_DELAY="0.005", ASKSTREAM_SHUTDOWN_TIMEOUT="20"
    )
    readers, tasks = await asks(client, service.url)
    service.process.send_signal(signal.SIGTERM)
    await asyncio.gather(*tasks)
    assert {reader.last.event for reader in readers} == {"done"}
    service.wait(20)
    assert {status for status, _ in stored(tmp_path / "data")} == {"complete"}
    assert_clean_log(service)


DOOR_READERS = 10  # at each of the two other doors


async def test_sigterm_waits_for_the_v1_and_ai_sdk_readers_of_answers_that_finish(
    services: list[Service], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    # The graceful stop counts these doors' readers too (Fanout.events): an answer
    # that finishes in time reaches each of them, in its own protocol, and not the
    # shutdown's last event in its place.
    service = start(
        services, tmp_path, ASKSTREAM_DEMO_DELAY="0.01", ASKSTREAM_SHUTDOWN_TIMEOUT="20"
    )
    completion = {
        "model": DEMO_MODEL,
        "messages": [{"role": "user", "content": "Hi?"}],
        "stream": True,
    }
    v1, v1_tasks = await open_readers(
        client, DOOR_READERS, "POST", service.url + "/v1/chat/completions", json=completion
    )
    ui: list[Reader] = []
    ui_tasks: list[asyncio.Task[None]] = []
    for _ in range(DOOR_READERS):
        body = {
            "id": uuid.uuid4().hex[:16],
            "messages": [{"id": "q", "role": "user", "parts": [{"type": "text", "text": "Hi?"}]}],
        }
        readers, tasks = await open_readers(client, 1, "POST", service.url + "/api/chat", json=body)
        ui += readers
        ui_tasks += tasks
    service.process.send_signal(signal.SIGTERM)
    await asyncio.gather(*v1_tasks, *ui_tasks)  # each one's body ended properly
    for reader in v1:
        data = [event.data for event in reader.events]
        # OpenAI's end: a last chunk with a finish_reason, then [DONE].
        assert data[-1] == "[DONE]", data[-3:]
        assert json.loads(data[-2])["choices"][0]["finish_reason"] == "stop"
    for reader in ui:
        data = [event.data for event in reader.events]
        # The AI SDK's: text-end, finish, [DONE].
        assert data[-1] == "[DONE]", data[-3:]
        assert [json.loads(d)["type"] for d in data[-3:-1]] == ["text-end", "finish"]
    service.wait(20)
    assert {status for status, _ in stored(tmp_path / "data")} == {"complete"}
    assert_clean_log(service)


@pytest.mark.parametrize("runner", ["uvicorn", "serve"])
def test_ctrl_c_prints_one_line_and_no_traceback_even_when_idle(
    runner: str, services: list[Service], tmp_path: Path
) -> None:
    service = start(services, tmp_path, **({"_serve": "1"} if runner == "serve" else {}))
    before = service.text().splitlines()
    stop_and_time(service, signal.SIGINT)
    after = service.text().splitlines()[len(before) :]
    assert "Traceback" not in service.text()
    if runner == "serve":
        assert after == ["askstream stopped"]
        assert service.process.returncode == 130


# -- two instances, and two workers, on Redis ------------------------------------------


async def create_tables(url: str) -> None:
    history = ChatHistory(create_engine(url))
    try:
        await history.create_tables()
    finally:
        await history.aclose()


@pytest.fixture
def redis_env(pg_database: str) -> Iterator[dict[str, str]]:
    require(redis_available(), f"Redis at {REDIS_URL}")
    # Made first: instances (or workers) starting together on an empty database
    # would race to create the tables (docs/deploy.md).
    asyncio.run(create_tables(pg_database))
    prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
    yield {
        "ASKSTREAM_REDIS_URL": REDIS_URL,
        "ASKSTREAM_REDIS_PREFIX": prefix,
        "ASKSTREAM_DATABASE_URL": pg_database,
        "ASKSTREAM_LEASE_TTL": "1",
        "ASKSTREAM_LEASE_RENEW": "0.5",
    }
    asyncio.run(delete_prefix(prefix))


async def test_readers_of_a_stopping_instance_resume_on_the_other_and_lose_nothing(
    services: list[Service],
    tmp_path: Path,
    client: httpx.AsyncClient,
    redis_env: dict[str, str],
) -> None:
    # B generates (about 2 s an answer); every reader follows it on A.
    a = start(services, tmp_path / "a", **redis_env, ASKSTREAM_DEMO_DELAY="0.02")
    b = start(services, tmp_path / "b", **redis_env, ASKSTREAM_DEMO_DELAY="0.02")
    async with client.stream("POST", b.url + "/api/ask", json={"question": "Hi?"}) as response:
        asked = read_events(response)
        first = await anext(asked)
        message_id = json.loads(first.data)["messageId"]
        readers, tasks = await open_readers(
            client, STREAMS, "GET", f"{a.url}/api/streams/{message_id}"
        )
        stop_and_time(a)
        await asyncio.gather(*tasks)
        for reader in readers:
            body = error_body(reader.last)
            assert body["code"] == 503
            assert RESUME in body["message"]
        # Each reader resumes on B from its last event and gets the rest.
        resumed = [Reader() for _ in readers]
        await asyncio.gather(
            *(
                again.run(
                    client,
                    "GET",
                    f"{b.url}/api/streams/{message_id}",
                    headers={"Last-Event-ID": reader.last_id},
                )
                for reader, again in zip(readers, resumed, strict=True)
            )
        )
        whole = [event async for event in asked]
    answer = json.loads(whole[-1].data)["answer"]
    for reader, again in zip(readers, resumed, strict=True):
        assert again.last.event == "done"
        # (An event without an id line keeps the last id, as in a browser: count messages.)
        ids = [int(e.id or 0) for e in reader.events + again.events if e.event == "message"]
        assert ids == list(range(1, len(ids) + 1))  # every event once, in order
        assert reader.text() + again.text() == answer
    assert_clean_log(a)


async def test_a_stopping_generator_stores_what_it_had_and_ends_its_streams_everywhere(
    services: list[Service],
    tmp_path: Path,
    client: httpx.AsyncClient,
    redis_env: dict[str, str],
) -> None:
    a = start(services, tmp_path / "a", **redis_env, **LONG)
    b = start(services, tmp_path / "b", **redis_env, **LONG)
    async with client.stream("POST", a.url + "/api/ask", json={"question": "Hi?"}) as response:
        first = await anext(read_events(response))
        piece = json.loads(first.data)
        readers, tasks = await open_readers(
            client, STREAMS, "GET", f"{b.url}/api/streams/{piece['messageId']}"
        )
        stop_and_time(a)  # the generator: its answer cannot go on elsewhere
        await asyncio.gather(*tasks)
    for reader in readers:
        assert error_body(reader.last) == {"code": 503, "message": "the server is shutting down"}
    chat = (await client.get(f"{b.url}/api/chats/{piece['chatId']}")).json()
    message = chat["messages"][-1]
    assert message["status"] == "cancelled"
    assert message["content"] == readers[0].text()  # what its readers got
    assert_clean_log(a)


async def test_two_workers_end_50_streams_cleanly_on_sigterm(
    services: list[Service],
    tmp_path: Path,
    client: httpx.AsyncClient,
    redis_env: dict[str, str],
) -> None:
    service = start(services, tmp_path, args=["--workers", "2"], **redis_env, **LONG)
    readers, tasks = await asks(client, service.url)
    service.process.send_signal(signal.SIGTERM)
    try:
        # Whether it exits at all (its streams end within TIMEOUT, as the readers'
        # 503s below show); a loaded machine may take longer to reap two workers.
        service.wait(TIMEOUT + EXIT_GRACE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uvicorn --workers 2 did not exit: {service.text()}")
    await asyncio.gather(*tasks)
    for reader in readers:
        assert error_body(reader.last)["code"] == 503
    assert_clean_log(service)
