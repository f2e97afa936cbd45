"""ShutdownMiddleware: it notices the server stopping, and tells open streams."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from askstream import ShutdownMiddleware
from askstream.http._shutdown import SCOPE_KEY, Shutdown, uvicorn_should_exit
from askstream.testing import FakeClock

pytestmark = pytest.mark.anyio


class Lifespan:
    """An inner app that speaks the ASGI lifespan protocol and records the requests it got."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.started = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] != "lifespan":
            return
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        self.started.set()
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})


class Server:
    """The server's half of the lifespan protocol."""

    def __init__(self) -> None:
        self.to_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.from_app: list[str] = []
        self.to_app.put_nowait({"type": "lifespan.startup"})

    async def receive(self) -> dict[str, str]:
        return await self.to_app.get()

    async def send(self, message: dict[str, str]) -> None:
        self.from_app.append(message["type"])


async def test_the_watcher_sees_should_exit_and_ends_the_streams() -> None:
    stopping = False
    inner = Lifespan()
    clock = FakeClock()
    middleware = ShutdownMiddleware(
        inner, should_exit=lambda: stopping, poll_interval=0.1, clock=clock
    )
    server = Server()
    lifespan = asyncio.get_running_loop().create_task(
        middleware({"type": "lifespan"}, server.receive, server.send)
    )
    await asyncio.wait_for(inner.started.wait(), timeout=1)
    await middleware({"type": "http"}, server.receive, server.send)
    signal_ = inner.scopes[-1][SCOPE_KEY]
    assert isinstance(signal_, Shutdown)
    ended: list[str] = []
    assert signal_.subscribe(lambda: ended.append("stream"))
    assert not middleware.shutting_down

    await clock.wait_sleepers(1)  # the watcher looked once and waits for the next look
    stopping = True
    await clock.advance(0.05)
    assert not middleware.shutting_down  # it looks only every poll_interval
    await clock.advance(0.05)
    assert middleware.shutting_down
    assert ended == ["stream"]

    server.to_app.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, timeout=1)
    assert server.from_app == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_the_lifespan_shutdown_message_ends_the_streams_too() -> None:
    inner = Lifespan()
    middleware = ShutdownMiddleware(inner, should_exit=lambda: False)
    server = Server()
    server.to_app.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(middleware({"type": "lifespan"}, server.receive, server.send), 1)
    assert middleware.shutting_down


async def test_shutdown_can_be_called_by_hand() -> None:
    middleware = ShutdownMiddleware(Lifespan())
    middleware.shutdown()
    assert middleware.shutting_down


def test_a_late_subscriber_is_told_at_once() -> None:
    shutdown = Shutdown()
    shutdown.set()
    assert not shutdown.subscribe(lambda: None)


@pytest.fixture
def sigterm_handler() -> Iterator[None]:
    original = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, original)


class FakeUvicornServer:
    def __init__(self) -> None:
        self.should_exit = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit = True


@pytest.mark.usefixtures("sigterm_handler")
def test_uvicorn_should_exit_reads_the_servers_flag_through_its_sigterm_handler() -> None:
    assert not uvicorn_should_exit()
    server = FakeUvicornServer()
    signal.signal(signal.SIGTERM, server.handle_exit)
    assert not uvicorn_should_exit()
    server.should_exit = True
    assert uvicorn_should_exit()
    signal.signal(signal.SIGTERM, lambda sig, frame: None)
    assert not uvicorn_should_exit()  # a handler that is no uvicorn server's


def test_a_poll_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ShutdownMiddleware(Lifespan(), poll_interval=0)
