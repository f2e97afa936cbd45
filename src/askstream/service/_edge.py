"""ASGI checks at the edge, before any route: they work under any ASGI server.

- :class:`OpenLimit`: at most ``limit`` requests in progress (open streams
  included) in this process; more get 503 with ``Retry-After``. The service
  runs it outside FastAPI's stack, in its app's entry, where a stream's body
  runs once handed off (``_app.py``).
- :class:`HeadCheck`: a head over ``max_size`` bytes is 431 (h11 and httptools
  both hand on a whole head of any size that arrives in one read); a NUL in
  the path, the query or a header is 422 (ids and ``Last-Event-ID`` included).
- :class:`HeadAsGet`: ``HEAD`` is answered as ``GET`` without the body, on
  every ``GET`` route, streams included (the stream ends after its headers).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.routing import Match, Mount

from ..http._handoff import at_end
from ._limits import RETRY_AFTER
from ._middleware import ASGIApp, Message, Receive, Scope, Send, reject

__all__ = ["HeadAsGet", "HeadCheck", "OpenLimit", "allowed_methods", "head_size"]

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at this request's path: ``Allow``.

    Starlette's own 405 names only the first route whose path matched, so
    ``/api/chats/{id}``, a GET route and a DELETE route, said ``Allow: GET``.
    Each method is tried against the app's routes as they match a request
    (included routers too); HEAD goes with every GET (:class:`HeadAsGet`).
    """
    allowed = []
    for method in _ORDER:
        probe = {**request.scope, "method": "GET" if method == "HEAD" else method}
        for route in request.app.router.routes:
            # A mount (the static files) takes every method under its path.
            if not isinstance(route, Mount) and route.matches(probe)[0] == Match.FULL:
                allowed.append(method)
                break
    return allowed


def head_size(scope: Scope) -> int:
    """The bytes of a request's head as it came: request line and header lines."""
    size = len(scope["method"]) + len(scope.get("raw_path") or b"") + 12
    size += len(scope["query_string"]) + 1
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class OpenLimit:
    """Answer 503 ``{"code": 503, ...}`` (with ``Retry-After``) to a request while
    ``limit`` others are in progress in this process; ``refused("connections")``
    is told of each (the metrics)."""

    def __init__(
        self, app: ASGIApp, *, limit: int, refused: Callable[[str], object] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.open = 0
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.open >= self.limit:
            if self._refused is not None:
                self._refused("connections")
            await reject(
                send,
                503,
                f"the server holds its limit of {self.limit} connections; try again soon",
                headers=[(b"retry-after", str(RETRY_AFTER).encode())],
            )
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            # A stream handed off (http/_handoff.py) is still in progress: it
            # is counted until its body ends, outside this frame.
            if not at_end(scope, self._leave):
                self.open -= 1

    def _leave(self) -> None:
        self.open -= 1


class HeadCheck:
    """431 for a head over ``max_size`` bytes; 422 for a NUL in the path, query or
    a header (every id and ``Last-Event-ID`` come from there); ``refused("head_size")``
    is told of each 431."""

    def __init__(
        self, app: ASGIApp, *, max_size: int, refused: Callable[[str], object] | None = None
    ) -> None:
        self.app = app
        self.max_size = max_size
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if head_size(scope) > self.max_size:
            if self._refused is not None:
                self._refused("head_size")
            await reject(send, 431, f"the request head is over {self.max_size} bytes")
            return
        # The path is percent-decoded; the query string is not (%00 is its NUL).
        if (
            "\x00" in scope["path"]
            or b"%00" in scope["query_string"]
            or any(b"\x00" in value for _, value in scope["headers"])
        ):
            await reject(send, 422, "the request's path, query or headers hold a NUL character")
            return
        await self.app(scope, receive, send)


class HeadAsGet:
    """Answer ``HEAD`` as the ``GET`` route would, with its headers and no body.

    The route runs as ``GET``; its body is dropped, and the response ends with
    its head, so a stream's route sees its client gone and stops at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def head_only(message: Message) -> None:
            nonlocal ended
            if ended:
                return
            if message["type"] == "http.response.start":
                await send(message)
                # Over at once: the server then tells the route its client left.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = True

        await self.app({**scope, "method": "GET"}, receive, head_only)
