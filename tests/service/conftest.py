"""The servers the service tests talk to, each a real uvicorn process on a free port.

``service`` starts an askstream service (factory app, settings from ``ASKSTREAM_*``)
on a fresh data folder; ``upstream`` is one fake OpenAI-compatible API shared by
the session, whose behaviour each service picks with its model name
(``fake``, ``fake-fail``, ``fake-drop``, ``fake-slow``, ``fake-stall``, ``fake-refuse``,
``fake-think``: reasoning first; ``fake-flaky``: two 429s with ``Retry-After: 30`` for
each conversation, then the answer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from askstream.sse import Decoder, Event
from askstream.testing import ServerProcess, require

from ..conftest import REDIS_URL, redis_available

# The stores of tests/streams, each test once per kind (tests of the hubs, _fanout.py).
from ..streams.conftest import make_store  # noqa: F401

T = TypeVar("T")

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
    # A refusing upstream is asked again (_retry.py) without holding a test up.
    "ASKSTREAM_LLM_RETRY_DELAY": "0.01",
    "ASKSTREAM_LLM_RETRY_MAX_DELAY": "0.05",
    # Tests ask dozens of questions at once as one (anonymous) user; the limit's
    # own tests (test_limits.py) set it low.
    "ASKSTREAM_MAX_USER_GENERATIONS": "1000",
    # Not the developer's ./.env nor their OpenAI key (docs/configuration.md): a test's
    # service has only the settings its test gives it (empty counts as unset).
    "ASKSTREAM_ENV_FILE": os.devnull,
    "OPENAI_API_KEY": "",
    "OPENAI_API_KEY_FILE": "",
    "OPENAI_BASE_URL": "",
}
# One user with a token, for tests that talk to a service from several clients
# (a cookie would name a new anonymous user in each): docs/security.md.
TOKEN = "tester-token-0123456789abcdef"
TOKEN_ENV = {"ASKSTREAM_TOKENS": f"tester:{TOKEN}"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Streams still open when a test ends must not hold up the server's stop.
SERVICE_ARGS = ["--timeout-graceful-shutdown", "1"]


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerProcess]:
    server = ServerProcess(
        UPSTREAM_APP,
        factory=True,
        env={
            "ASKSTREAM_FAKE_DELAY": "0.002",
            "ASKSTREAM_FAKE_SLOW_DELAY": "0.3",
            "ASKSTREAM_FAKE_FAIL_FIRST": "2",
            "ASKSTREAM_FAKE_FAIL_STATUS": "429",
            "ASKSTREAM_FAKE_RETRY_AFTER": "30",
        },
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
    require(_run_apart(_pg_available()), f"PostgreSQL at {PG_ADMIN_DSN}")
    name = f"askstream_test_{uuid.uuid4().hex[:12]}"
    _run_apart(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _run_apart(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- deployments: one instance, or two on Redis and PostgreSQL ------------------

KINDS = ["memory", "redis"]


def _run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end in a thread of its own: a session fixture may be
    set up first by an async test, inside pytest-asyncio's running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _pg(statement: str | None = None) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        if statement:
            await connection.execute(statement)
    finally:
        await connection.close()
    return True


@pytest.fixture(scope="session")
def shared_parts() -> Iterator[dict[str, str]]:
    """Redis and a PostgreSQL database made for this session (dropped after): the
    environment every instance of a ``redis`` deployment shares, but its key prefix."""
    require(redis_available(), f"Redis at {REDIS_URL}")
    require(_run_apart(_pg()), f"PostgreSQL at {PG_ADMIN_DSN}")
    name = f"askstream_instances_{uuid.uuid4().hex[:12]}"
    _run_apart(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield {
            "ASKSTREAM_REDIS_URL": REDIS_URL,
            "ASKSTREAM_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
        }
    finally:
        _run_apart(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _delete_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- deployments ------------------------------------------------------------------


@dataclass
class Deployment:
    """A and B: two instances behind one Redis and one database, or one server twice."""

    kind: str
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def a(self) -> ServerProcess:
        return self.servers[0]

    @property
    def b(self) -> ServerProcess:
        return self.servers[-1]


Deploy = Callable[..., Deployment]


@contextlib.contextmanager
def deployments(
    request: pytest.FixtureRequest, tmp_path: Path, **defaults: str
) -> Iterator[Callable[..., Deployment]]:
    """``deploy(kind, **env)`` within: a ``memory`` or ``redis`` deployment, with
    ``defaults`` and then ``env`` as its settings; every server stopped at the end."""
    started: list[ServerProcess] = []
    prefixes: list[str] = []

    def deploy(kind: str, **env: str) -> Deployment:
        deployment = Deployment(kind)
        base = {**SERVICE_ENV, **defaults, **env}
        if kind == "redis":
            prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
            prefixes.append(prefix)
            base = {**request.getfixturevalue("shared_parts"), "ASKSTREAM_REDIS_PREFIX": prefix}
            base.update({**SERVICE_ENV, **defaults, **env})
            count = 2
        else:
            count = 1
        for n in range(count):
            data_dir = tmp_path / f"data-{len(started)}"
            server = ServerProcess(
                SERVICE_APP,
                factory=True,
                env={"ASKSTREAM_DATA_DIR": str(data_dir), **base},
                args=SERVICE_ARGS,
            )
            started.append(server)
            server.start()  # one after the other: the first creates the tables
            deployment.servers.append(server)
            assert n < 2
        return deployment

    try:
        yield deploy
    finally:
        for server in started:
            server.stop()
        for prefix in prefixes:
            _delete_keys(prefix)
