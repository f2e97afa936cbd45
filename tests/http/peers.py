"""A fake ASGI server for EventStreamResponse: one request's ``receive()`` and
``send()``, in process, no sockets.

The ``Peer`` answers ``receive()`` and records ``send()``; it can leave
(``http.disconnect``) and can stop taking writes (a reader whose buffers are
full). Deadlines here are generous behaviour bounds, never benchmarks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from askstream import Decoder, Event, EventStreamResponse


class Peer:
    """The server side of one ASGI request, faked."""

    def __init__(self, method: str = "GET", headers: dict[str, str] | None = None) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": "/",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }
        self.messages: list[dict[str, Any]] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.stuck = asyncio.Event()  # a write waits for the reader to take it
        self.disconnected = asyncio.Event()  # the response was told the reader left
        self._left = asyncio.Event()
        self._asked = False

    async def receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._left.wait()
        self.disconnected.set()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await self._take(message)

    async def _take(self, message: dict[str, Any]) -> None:
        if not self.writable.is_set():
            self.stuck.set()
            await self.writable.wait()
        self.messages.append(message)

    def leave(self) -> None:
        self._left.set()

    def run(self, response: EventStreamResponse) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(
            response(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        )

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.bodies)

    @property
    def events(self) -> list[Event]:
        return Decoder().feed(self.body)

    @property
    def complete(self) -> bool:
        last = self.messages[-1] if self.messages else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


class ScopedPeer(Peer):
    """A Peer whose ``receive()`` runs inside an anyio cancel scope, as the receive
    wrappers of middleware (BaseHTTPMiddleware's) do. The response's task awaits
    ``receive()`` and cancels it when the stream ends first."""

    async def receive(self) -> dict[str, Any]:
        with anyio.CancelScope():
            return await super().receive()


class BodyBlockedPeer(Peer):
    """A Peer whose full buffers hold up the body, not the response start."""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await self._take(message)
        else:
            self.messages.append(message)


MakePeer = Callable[..., Peer]


async def stream(response: EventStreamResponse, peer: Peer) -> Peer:
    await asyncio.wait_for(peer.run(response), timeout=5)
    return peer


class Closed:
    """Records that a source's finally ran."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> None:
        self.at = time.monotonic()


async def turns(count: int = 10) -> None:
    """Let the event loop run ``count`` passes: long enough for a write that was
    decided to happen, for a check that nothing was decided (with a FakeClock)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def wait_until(condition: Any, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def open_then_wait(closed: Closed) -> AsyncIterator[str]:
    """A source that yields "open", then waits for ever; ``closed`` notes when its finally ran."""
    try:
        yield "open"
        await asyncio.Event().wait()
    finally:
        closed()
