"""Plain ASGI middleware in front of every route: the body's size and time
limits, and the last word on unexpected errors. More checks at the edge
(heads, open requests, HEAD) are in _edge.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimit", "InternalErrors", "reject"]

logger = logging.getLogger("askstream.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def reject(
    send: Send,
    status: int,
    message: str,
    *,
    close: bool = True,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer ``{"code": status, "message": message}``; ``close``: and end the connection."""
    body = json.dumps({"code": status, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    if close:  # the rest of the body may still be on its way: do not reuse this connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Answer 413 for a request body over ``max_size`` bytes, before any route runs.

    A ``Content-Length`` over the limit, or a chunked body the moment it passes
    the limit, is refused without handing anything on; the rest of the body is
    read and dropped first (up to 16 times the limit), so that the client sees
    the 413 rather than a reset connection. A body within the limit is read
    whole and handed on, so no route ever buffers more than ``max_size`` bytes;
    asks are small, this costs nothing.

    A body not all in within ``timeout`` seconds (a client trickling it, the
    slowloris attack) is answered 408 and the connection closed. ``refused``
    is told of each refusal: ``"body_size"`` or ``"body_timeout"`` (the metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_size: int,
        timeout: float = 10.0,
        refused: Callable[[str], object] | None = None,
    ) -> None:
        self.app = app
        self._refused = refused or (lambda limit: None)
        self.max_size = max_size
        self.timeout = timeout
        self._drain_limit = max(16 * max_size, 1024 * 1024)

    async def _drain(self, receive: Receive, size: int = 0) -> None:
        # Read (and drop) the rest of a body that is too large but not absurdly
        # so: closing a socket with unread bytes makes the kernel send RST, and
        # the client would see a reset connection instead of our 413.
        while size <= self._drain_limit:
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        if length is not None and not length.isdigit():
            await reject(send, 400, "Content-Length is not a number")
            return
        try:
            async with asyncio.timeout(self.timeout):
                if length is not None and int(length) > self.max_size:
                    if int(length) <= self._drain_limit:
                        await self._drain(receive)
                    self._refused("body_size")
                    await reject(send, 413, f"the body is over {self.max_size} bytes")
                    return
                chunks = await self._read(receive, send)
        except TimeoutError:
            self._refused("body_timeout")
            await reject(send, 408, f"the request body did not arrive within {self.timeout:g} s")
            return
        if chunks is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # from here on only http.disconnect
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, send: Send) -> list[bytes] | None:
        # The body's chunks, or None once answered (too large) or the client left.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_size:
                if message.get("more_body", False):
                    await self._drain(receive, size)
                self._refused("body_size")
                await reject(send, 413, f"the body is over {self.max_size} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks


class InternalErrors:
    """Turn an exception no handler took into ``500 {"code": 500, "message": ...}``
    with a generic message; the traceback goes to the log only.

    Unlike Starlette's own last resort, it does not re-raise once the 500 is
    sent, so the server keeps the connection: a client reusing it is not cut
    off. An exception after a response started (a stream) is re-raised: the
    connection must drop so the client sees the answer broke.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        # Not `async def`: it hands back the server's own awaitable, so a
        # stream's every token does not pay one more coroutine frame here.
        def watch(message: Message) -> Awaitable[None]:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            return send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise
            logger.exception("%s %s failed", scope["method"], scope["path"])
            await reject(send, 500, "internal server error", close=False)
