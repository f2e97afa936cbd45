"""``EventStreamResponse``: a Starlette response that streams a source's events."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, Final, Literal

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ._clock import SYSTEM_CLOCK, Clock
from ._handoff import Slot, claim, hand_off
from ._headers import stream_headers
from ._pull import Source
from ._shutdown import SCOPE_KEY
from ._stream import Stream

__all__ = ["EventStreamResponse", "Source"]


def _last_event_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            # Browsers send the id as UTF-8 (WHATWG HTML §9.2.4, "reestablish the connection").
            return value.decode("utf-8", "replace") or None
    return None


_DEFAULT_RAW_HEADERS: Final = (
    *(
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in stream_headers().items()
    ),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)


class EventStreamResponse(Response):
    """Stream events from ``source`` as ``text/event-stream``.

    ``source`` is an async or sync iterable of :class:`~askstream.Event`, ``str``
    (the data of a message) or mappings (sent as JSON data). To resume, pass a
    callable instead: it is called with the request's ``Last-Event-ID`` (``None``
    when absent) and returns the iterable. A sync iterable runs in a worker
    thread, one item per hop; prefer async sources.

    - ``ping``: a heartbeat comment after this many idle seconds (``None``: off).
    - ``retry``: the reconnection delay in ms the reader should use, sent first.
    - ``send_timeout``: a reader that takes nothing for this many seconds is
      dropped (``None``: never). The source is pulled only as fast as the reader
      takes events, so memory stays bounded either way.
    - ``clock``: where the heartbeat and the send timeout read the time
      (:class:`SystemClock`; a test passes ``askstream.testing.FakeClock``).
    - ``on_disconnect``: when the reader leaves, ``"close"`` closes the source
      at once (its ``finally`` runs); ``"drain"`` pulls it to its end, throwing
      the events away, for a source whose work must complete.

    An exception in the source is logged (logger ``"askstream"``) and the
    reader gets ``event: error`` with data ``{"code": 500, "message": ...}``,
    then a clean end. Wrap the app in :class:`ShutdownMiddleware` so open
    streams end when the server stops. A HEAD request gets the headers only.

    >>> from starlette.applications import Starlette
    >>> from starlette.routing import Route
    >>> async def tokens(request):
    ...     async def source(last_event_id):
    ...         for n in range(int(last_event_id or 0) + 1, 4):
    ...             yield Event(f"token {n}", id=str(n))
    ...     return EventStreamResponse(source, retry=2000)
    >>> app = Starlette(routes=[Route("/tokens", tokens)])
    """

    media_type = "text/event-stream"
    clock: Clock = SYSTEM_CLOCK

    def __init__(
        self,
        source: Source,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        ping: float | None = 15.0,
        retry: int | None = None,
        send_timeout: float | None = 30.0,
        on_disconnect: Literal["close", "drain"] = "close",
        background: BackgroundTask | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(source, str | bytes | Mapping):
            raise TypeError(f"not an event source: {type(source).__name__}")
        if ping is not None and not ping > 0:
            raise ValueError("ping must be a positive number of seconds or None")
        if send_timeout is not None and not send_timeout > 0:
            raise ValueError("send_timeout must be a positive number of seconds or None")
        if retry is not None and (type(retry) is not int or retry < 0):
            raise ValueError("retry must be a non-negative int (milliseconds) or None")
        if on_disconnect not in ("close", "drain"):
            raise ValueError('on_disconnect must be "close" or "drain"')
        self.source = source
        self.status_code = status_code
        self.background = background
        self.ping = ping
        self.retry = retry
        self.send_timeout = send_timeout
        self.on_disconnect = on_disconnect
        if clock is not SYSTEM_CLOCK:
            self.clock = clock  # else the class's: an idle stream's response holds one key less
        if headers:
            self.init_headers(stream_headers(headers))
        else:
            # Shared, immutable pairs in a list of its own: an idle stream holds its
            # response, and this saves every one of them ~0.4 KiB.
            self.raw_headers = list(_DEFAULT_RAW_HEADERS)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        # Not `async def`: it hands back the coroutine that does the work rather
        # than awaiting it in a frame of its own. `await response(...)` is the
        # same either way, and an open stream holds one frame (~0.3 KiB) less.
        if scope["type"] == "websocket":
            send = self._wrap_websocket_denial_send(send)
        start = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        if scope["type"] != "http" or scope["method"] == "HEAD":
            return self._headers_only(start, send)
        slot = claim(scope)
        if slot is not None:
            # Under a Handoff: the head goes out through the middleware, the
            # body runs outside them (_handoff.py).
            return self._hand_off(slot, start, scope, send)
        return self._stream(scope, send).run(
            start,
            receive,
            self.source,
            last_event_id=_last_event_id(scope),
            head=b"retry: %d\n\n" % self.retry if self.retry is not None else b"",
            shutdown=scope.get(SCOPE_KEY),
            background=self.background,
        )

    def _stream(self, scope: Scope, send: Send) -> Stream:
        return Stream(
            send,
            ping=self.ping,
            send_timeout=self.send_timeout,
            on_disconnect=self.on_disconnect,
            clock=self.clock,
        )

    async def _hand_off(self, slot: Slot, start: Message, scope: Scope, send: Send) -> None:
        await send(start)
        body = self._stream(scope, slot.send).run(
            None,
            slot.receive,
            self.source,
            last_event_id=_last_event_id(scope),
            head=b"retry: %d\n\n" % self.retry if self.retry is not None else b"",
            shutdown=scope.get(SCOPE_KEY),
            background=self.background,
        )
        hand_off(slot, body)

    async def _headers_only(self, start: Message, send: Send) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
