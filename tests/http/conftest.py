"""Servers for the HTTP layer's tests: uvicorn with httptools and uvloop, as deployed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from askstream.testing import ServerProcess
from tests.http.peers import MakePeer, Peer, ScopedPeer
from tests.http.support import UVICORN_ARGS, Poll, Report, report_of, wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """tests/http/apps.py:app, shared by one module's tests (each uses its own stream names)."""
    with ServerProcess("tests.http.apps:app", args=UVICORN_ARGS) as process:
        yield process


@pytest.fixture(scope="module")
def rival() -> Iterator[ServerProcess]:
    """tests/http/rival_apps.py:app: sse-starlette serving the interop events."""
    with ServerProcess("tests.http.rival_apps:app", args=UVICORN_ARGS) as process:
        yield process


@pytest.fixture
def report(server: ServerProcess) -> Report:
    return report_of(server)


@pytest.fixture
def poll() -> Poll:
    return wait_for


@pytest.fixture(params=[Peer, ScopedPeer], ids=["plain-receive", "receive-in-a-cancel-scope"])
def make_peer(request: pytest.FixtureRequest) -> MakePeer:
    """Each test runs against a plain ``receive()`` and a middleware-like one."""
    peer_class: MakePeer = request.param
    return peer_class
