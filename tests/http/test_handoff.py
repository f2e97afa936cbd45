"""A stream's body handed out of the middleware stack (http/_handoff.py), over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from askstream.testing import ServerProcess
from tests.http.support import UVICORN_ARGS, wait_for


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("handoff") / "server.log"


@pytest.fixture(scope="module")
def handoff_server(server_log: Path) -> Iterator[ServerProcess]:
    with (
        server_log.open("wb") as log,
        ServerProcess("tests.http.handoff_apps:app", args=UVICORN_ARGS, stderr=log) as process,
    ):
        yield process


def _state(server: ServerProcess, name: str) -> dict[str, bool]:
    answer: dict[str, bool] = httpx.get(f"{server.url}/state/{name}", timeout=5).json()
    return answer


def test_the_stack_returns_while_the_stream_goes_on(handoff_server: ServerProcess) -> None:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{handoff_server.url}/stream/open") as response,
    ):
        # The head passed through the middleware: its header is there.
        assert response.headers["x-marked"] == "open"
        chunks = response.iter_raw()  # kept: a dropped iterator closes the response
        first = next(chunks)
        # The source runs in the context the handler saw, though the middleware
        # reset its variable on the way out.
        assert first == b"data: request=open\n\n"
        wait_for(lambda: _state(handoff_server, "open")["returned"], 5, "the middleware returned")
        assert not _state(handoff_server, "open")["closed"]  # the stream is still open
    # The reader left: the source is closed, from the handoff's frame.
    wait_for(lambda: _state(handoff_server, "open")["closed"], 5, "the source's finally")


def test_head_is_answered_in_place(handoff_server: ServerProcess) -> None:
    response = httpx.head(f"{handoff_server.url}/stream/head", timeout=5)
    assert response.status_code == 200
    assert response.headers["x-marked"] == "head"
    assert response.content == b""
    assert _state(handoff_server, "head")["returned"]


def test_a_response_ended_by_a_middleware_is_not_written_after(
    handoff_server: ServerProcess, server_log: Path
) -> None:
    # Behind BaseHTTPMiddleware the stream cannot be handed off: the response
    # ends (empty) and the mistake is logged, rather than a body written after
    # the end (which uvicorn refuses with "Exception in ASGI application").
    response = httpx.get(f"{handoff_server.url}/wrapped/stream/wrapped", timeout=5)
    assert response.status_code == 200
    assert response.content == b""
    assert _state(handoff_server, "wrapped")["returned"]
    wait_for(
        lambda: b"the response ended before its event stream ran" in server_log.read_bytes(),
        5,
        "the logged mistake",
    )
    assert b"Exception in ASGI application" not in server_log.read_bytes()
