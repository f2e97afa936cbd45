"""Fixtures shared by every layer's tests.

Real parts (uvicorn in a subprocess, Redis, PostgreSQL, Chromium) are started or
reached here and always stopped. A test whose part is missing skips with the
reason on a developer's machine and fails under ``CI=true``: CI must never pass
by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from askstream.testing import ServerProcess

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run soak and chaos tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI or config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow soak/chaos test: run with --run-slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def require(available: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) a test whose outside part is missing."""
    if available:
        return
    message = f"{what} is not available"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true forbids skipping", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


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
