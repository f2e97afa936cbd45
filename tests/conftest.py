"""Fixtures shared by every layer's tests.

Real parts (uvicorn in a subprocess, Redis, PostgreSQL, Chromium) are started or
reached here and always stopped. A test whose part is missing calls
``askstream.testing.require``: it skips with the reason on a developer's machine
and fails under ``CI=true``, since CI must never pass by skipping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from askstream.testing import ServerProcess, in_ci

#: The Redis every Redis test uses (CI and the developers' machines run one there).
REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available(url: str = REDIS_URL) -> bool:
    """Whether a Redis answers at ``url`` within a second."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run soak and chaos tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if in_ci() or config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow soak/chaos test: run with --run-slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _coverage_paused_if_untraced(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pause coverage's tracer in this process for a test marked ``untraced``.

    ./dev test runs the suite under coverage; a million fuzzed inputs under its
    tracer take ~3x as long (minutes of CI) and cover nothing new.
    """
    if request.node.get_closest_marker("untraced") is None:
        yield
        return
    try:
        import coverage
    except ImportError:  # not measuring: nothing to pause
        yield
        return
    current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start uvicorn subprocesses on free loopback ports; every one is stopped at teardown.

    ``start_server("tests.http.apps:app", env={...})`` returns a running
    :class:`askstream.testing.ServerProcess` with ``.url``.
    """
    started: list[ServerProcess] = []

    def start(app: str, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(app, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
