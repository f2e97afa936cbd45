"""askstream's one exception tree.

Everything askstream raises at run time derives from :class:`AskstreamError`::

    AskstreamError
    ├── ProtocolError                 the event-stream format was broken
    │   ├── LocalProtocolError        we were asked to emit something illegal (also a ValueError)
    │   └── RemoteProtocolError       the peer sent something we refuse
    │       └── EventTooLarge         a line or event passed the decoder's size limit
    ├── StreamError                   talking to an event-stream endpoint over HTTP failed
    │   ├── ResponseError             the server answered, but not with a stream (non-2xx)
    │   ├── ContentTypeError          a 2xx answer that is not text/event-stream
    │   └── ReconnectError            the stream dropped and every reconnect attempt failed
    ├── StoreError                    the stream log (askstream.streams) refused
    │   ├── StreamNotFound            no such stream
    │   ├── StreamExpired             a stream past its retention (HTTP 410)
    │   ├── StoreUnavailable          the store (or the stream) stayed away too long (503)
    │   └── InvalidEventId            Last-Event-ID that the stream never handed out
    ├── ServiceError                  the ask service answers with .status, .code, .message
    │   ├── UpstreamError             the LLM back end failed (502)
    │   └── Unavailable               a dependency is down, or the server stops (503)
    └── SchemaError                   the database's schema is not the one the service works with

The last three branches live beside the code that raises them
(``askstream.streams``, ``askstream.service``) and derive from this root.

The split between local and remote protocol errors follows h11: a
``LocalProtocolError`` means the calling code is wrong (an ``id`` holding a
newline would let one event forge another), a ``RemoteProtocolError`` means the
bytes that came in are. Usage errors (iterating a stream that was closed) are not
part of the tree; they raise ``RuntimeError``, as httpx does.

This module imports nothing of askstream's so every layer, the sans-I/O core
included, can raise from it.
"""

from __future__ import annotations

__all__ = [
    "AskstreamError",
    "ContentTypeError",
    "EventTooLarge",
    "LocalProtocolError",
    "ProtocolError",
    "ReconnectError",
    "RemoteProtocolError",
    "ResponseError",
    "StreamError",
]


class AskstreamError(Exception):
    """The root of every run-time error askstream raises.

    >>> try:
    ...     raise EventTooLarge("line longer than 10 bytes", limit=10)
    ... except AskstreamError as exc:
    ...     print(type(exc).__name__, exc.limit)
    EventTooLarge 10
    """


class ProtocolError(AskstreamError):
    """The ``text/event-stream`` format was broken, by us or by the peer."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to encode something the format cannot carry safely.

    It is a ``ValueError`` too, since it always stems from a bad argument::

        encode(Event(id="1\\n2"))  # raises LocalProtocolError
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes we refuse to parse."""


class EventTooLarge(RemoteProtocolError):
    """A line or an event grew past the decoder's limit (``limit`` bytes).

    Raised instead of buffering without bound: a peer that never sends a line
    end would otherwise grow our memory for as long as the connection lasts.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class StreamError(AskstreamError):
    """Opening or reading an event stream over HTTP failed."""


class ResponseError(StreamError):
    """The server answered with a non-2xx status instead of a stream.

    ``code`` and ``message`` come from the server's JSON body ``{"code", "message"}``
    when it sent one (the founding guide's error shape); otherwise ``code`` is the
    HTTP status and ``message`` the body's text, shortened.

    >>> err = ResponseError(status=404, code=404, message="unknown chat")
    >>> str(err)
    '404: unknown chat'
    """

    def __init__(self, *, status: int, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ContentTypeError(StreamError):
    """A 2xx answer whose ``Content-Type`` is not ``text/event-stream``."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"expected Content-Type text/event-stream, got {content_type or '(none)'!r}"
        )
        self.content_type = content_type


class ReconnectError(StreamError):
    """The stream dropped and ``attempts`` reconnects in a row failed."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts
