"""The servers the service tests talk to, each a real uvicorn process on a free port.

``service`` starts an askstream service (factory app, settings from ``ASKSTREAM_*``)
on a fresh data folder; ``upstream`` is one fake OpenAI-compatible API shared by
the session, whose behaviour each service picks with its model name
(``fake``, ``fake-fail``, ``fake-drop``, ``fake-slow``, ``fake-stall``, ``fake-refuse``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.sse import Decoder, Event
from askstream.testing import ServerProcess, require

# The stores of tests/streams, each test once per kind (tests of the hubs, _fanout.py).
from ..streams.conftest import make_store  # noqa: F401

SERVICE_APP = "askstream.service:create_app"
UPSTREAM_APP = "askstream.testing:FakeUpstream.from_env"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
# Full-width punctuation on purpose: real Chinese text, multi-byte in UTF-8.
CHINESE = "服务器发送事件是什么？请用中文回答，谢谢！🙂"  # noqa: RUF001

# Quick enough for a test, slow enough that "mid-answer" is a real moment.
SERVICE_ENV = {
    "ASKSTREAM_DEMO_DELAY": "0.002",
    "ASKSTREAM_LOG_LEVEL": "warning",
    "ASKSTREAM_SAVE_INTERVAL": "0.1",
}
# Streams still open when a test ends must not hold up the server's stop.
SERVICE_ARGS = ["--timeout-graceful-shutdown", "1"]


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerProcess]:
    server = ServerProcess(
        UPSTREAM_APP,
        factory=True,
        env={"ASKSTREAM_FAKE_DELAY": "0.002", "ASKSTREAM_FAKE_SLOW_DELAY": "0.3"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


StartService = Callable[..., ServerProcess]


def _start_service(data_dir: Path, env: dict[str, str]) -> ServerProcess:
    server = ServerProcess(
        SERVICE_APP,
        factory=True,
        env={"ASKSTREAM_DATA_DIR": str(data_dir), **SERVICE_ENV, **env},
        args=SERVICE_ARGS,
    )
    server.start()
    return server


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """``start_service(ASKSTREAM_X="...")``: a service of this test's own, stopped after."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        server = _start_service(data_dir or tmp_path / f"data{len(started)}", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _module_service(
    tmp_path_factory: pytest.TempPathFactory, **env: str
) -> Iterator[ServerProcess]:
    server = _start_service(tmp_path_factory.mktemp("data"), env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service with its embedded defaults: SQLite, memory store, demo model."""
    yield from _module_service(tmp_path_factory)


def llm_env(upstream: ServerProcess, model: str = "fake", **env: str) -> dict[str, str]:
    return {"ASKSTREAM_LLM_URL": f"{upstream.url}/v1", "ASKSTREAM_LLM_MODEL": model, **env}


@pytest.fixture(scope="module")
def llm(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The service in front of the fake upstream, answering normally."""
    yield from _module_service(tmp_path_factory, **llm_env(upstream))


@pytest.fixture(scope="module")
def slow_llm(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The service in front of the fake upstream's slow mode: a piece every 0.3 s."""
    yield from _module_service(tmp_path_factory, **llm_env(upstream, "fake-slow"))


# -- reading answers ----------------------------------------------------------


@dataclass
class Answer:
    """One streamed response: its status, headers and the events it carried."""

    status: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    body: Any = None  # the JSON body of a non-stream answer

    def data(self, kind: str = "message") -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in self.events if e.event == kind]

    @property
    def deltas(self) -> str:
        return "".join(item["delta"] for item in self.data())

    @property
    def last(self) -> Event:
        return self.events[-1]

    @property
    def done(self) -> dict[str, Any]:
        assert self.last.event == "done", self.events[-3:]
        result: dict[str, Any] = json.loads(self.last.data)
        return result


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    decoder = Decoder()
    async for chunk in response.aiter_raw():
        for event in decoder.feed(chunk):
            yield event


async def ask(
    client: httpx.AsyncClient,
    url: str,
    question: str | None = None,
    *,
    chat_id: str | None = None,
    method: str = "POST",
    path: str = "/api/ask",
    **kwargs: Any,
) -> Answer:
    """POST an ask (or request any stream) and read the whole answer."""
    if question is not None:
        kwargs.setdefault("json", {"chatId": chat_id, "question": question})
    async with client.stream(method, url + path, **kwargs) as response:
        answer = Answer(response.status_code, response.headers)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            answer.events = [event async for event in read_events(response)]
        else:
            await response.aread()
            answer.body = response.json() if response.content else None
    return answer


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
        yield client


# -- PostgreSQL -----------------------------------------------------------------


async def _pg_available() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


async def _pg_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own (dropped after): its SQLAlchemy URL.

    Sync on purpose (asyncio.run between tests' loops), so that parametrized
    fixtures can ask for it with request.getfixturevalue().
    """
    require(asyncio.run(_pg_available()), f"PostgreSQL at {PG_ADMIN_DSN}")
    name = f"askstream_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
