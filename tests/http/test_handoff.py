"""A stream's body handed out of the middleware stack (http/_handoff.py), over real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from askstream.testing import ServerProcess
from tests.http.support import UVICORN_ARGS, wait_for


@pytest.fixture(scope="module")
def handoff_server() -> Iterator[ServerProcess]:
    with ServerProcess("tests.http.handoff_apps:app", args=UVICORN_ARGS) as process:
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
