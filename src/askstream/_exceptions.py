"""askstream's one exception tree.

Everything askstream raises at run time derives from :class:`AskstreamError`,
and each branch is named for the layer that failed::

    AskstreamError
    ├── ProtocolError               askstream.sse: the text/event-stream format was broken
    │   ├── LocalProtocolError      we were asked to emit something illegal (also a ValueError)
    │   └── RemoteProtocolError     the peer sent something we refuse
    │       ├── EventTooLarge       a line or event passed the decoder's size limit
    │       └── JSONDataError       Event.json(): the data is not JSON (also a ValueError)
    ├── EventSourceError            askstream.http client: reading an event stream over HTTP failed
    │   ├── ResponseError           the server answered, but not with a stream (non-2xx)
    │   ├── ContentTypeError        a 2xx answer that is not text/event-stream
    │   ├── TransportError          the connection failed or broke (httpx's error is __cause__)
    │   │   ├── ConnectError        no connection: refused, unreachable, unknown host, TLS
    │   │   └── TransportTimeout    a connect, read, write or pool timeout ran out (.phase)
    │   ├── ReconnectError          the stream dropped and every reconnect attempt failed
    │   └── ReplayError             a reconnect replayed what was delivered: Last-Event-ID ignored
    ├── StoreError                  askstream.streams: the answer log refused (.stream_id)
    │   ├── StreamNotFound          no such stream in the log
    │   ├── StreamExpired           a stream past its retention (HTTP 410)
    │   ├── StoreUnavailable        the store (or the stream) stayed away too long (503)
    │   ├── InvalidEventId          a Last-Event-ID the stream never gave out (also a ValueError)
    │   └── StoreFull               no room for a new stream (503)
    ├── ServiceError                askstream.service: a request failed (.status, .code, .message)
    │   ├── UpstreamError           the LLM back end failed (502)
    │   └── Unavailable             a dependency is down, or the server stops (503)
    └── SchemaError                 askstream.service: the database's schema is not ours

Every class is importable from ``askstream`` itself, and this module imports
nothing at all: catching :class:`UpstreamError` or :class:`TransportError`
loads no FastAPI, SQLAlchemy or httpx. ("Stream" in a name means a stream of
the answer log; the HTTP client's branch is named for its ``EventSource``.)

The split between local and remote protocol errors follows h11: a
``LocalProtocolError`` means the calling code is wrong (an ``id`` holding a
newline would let one event forge another), a ``RemoteProtocolError`` means the
bytes that came in are. The client wraps httpx's transport errors as httpx
itself sorts them (``httpx.ConnectError`` -> :class:`ConnectError`,
``httpx.TimeoutException`` -> :class:`TransportTimeout`, any other
``httpx.RequestError`` -> :class:`TransportError`), so one ``except
AskstreamError`` covers everything a client call can fail with.

Usage errors (iterating a stream that was closed, appending to a finished
stream) are not part of the tree; they raise ``RuntimeError``, as httpx does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AskstreamError",
    "ConnectError",
    "ContentTypeError",
    "EventSourceError",
    "EventTooLarge",
    "InvalidEventId",
    "JSONDataError",
    "LocalProtocolError",
    "ProtocolError",
    "ReconnectError",
    "RemoteProtocolError",
    "ReplayError",
    "ResponseError",
    "SchemaError",
    "ServiceError",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
    "TransportError",
    "TransportTimeout",
    "Unavailable",
    "UpstreamError",
]


class AskstreamError(Exception):
    """The root of every run-time error askstream raises.

    >>> try:
    ...     raise EventTooLarge("line longer than 10 bytes", limit=10)
    ... except AskstreamError as exc:
    ...     print(type(exc).__name__, exc.limit)
    EventTooLarge 10
    """


# askstream.sse: the format ---------------------------------------------------


class ProtocolError(AskstreamError):
    """The ``text/event-stream`` format was broken, by us or by the peer.

    >>> issubclass(EventTooLarge, ProtocolError)
    True
    """


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to encode something the format cannot carry safely.

    It is a ``ValueError`` too, since it always stems from a bad argument::

        encode(Event(id="1\\n2"))  # raises LocalProtocolError
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes we refuse to parse.

    >>> issubclass(RemoteProtocolError, LocalProtocolError)
    False
    """


class EventTooLarge(RemoteProtocolError):
    """A line or an event grew past the decoder's limit (``limit`` bytes).

    Raised instead of buffering without bound: a peer that never sends a line
    end would otherwise grow our memory for as long as the connection lasts.

    >>> EventTooLarge("an event of 2 MiB", limit=1024).limit
    1024
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class JSONDataError(RemoteProtocolError, ValueError):
    """:meth:`Event.json() <askstream.Event.json>` found data that is not JSON.

    ``data`` is the event's data (cut to 200 characters); ``json``'s own error
    is the ``__cause__``. A ``ValueError`` too, as ``json.JSONDecodeError`` is.

    >>> JSONDataError("not json", data="not json").data
    'not json'
    """

    def __init__(self, message: str, *, data: str) -> None:
        super().__init__(message)
        self.data = data


# askstream.http: the client ----------------------------------------------------


class EventSourceError(AskstreamError):
    """Opening or reading an event stream over HTTP (``connect``, ``aconnect``) failed.

    One ``except EventSourceError`` covers an error answer, a wrong content
    type, a connection that failed and a stream that could not be resumed.

    >>> issubclass(ConnectError, EventSourceError)
    True
    """


class ResponseError(EventSourceError):
    """The server answered with a non-2xx status instead of a stream.

    ``code`` and ``message`` come from the server's JSON body ``{"code", "message"}``
    when it sent one (the founding guide's error shape); otherwise ``code`` is the
    HTTP status and ``message`` the body's text, shortened. ``headers`` are the
    response's (``Retry-After`` says when to ask again); empty when not known.

    >>> err = ResponseError(status=404, code=404, message="unknown chat")
    >>> str(err)
    '404: unknown chat'
    """

    def __init__(
        self, *, status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = headers if headers is not None else {}


class ContentTypeError(EventSourceError):
    """A 2xx answer whose ``Content-Type`` is not ``text/event-stream``.

    >>> ContentTypeError("text/html").content_type
    'text/html'
    """

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"expected Content-Type text/event-stream, got {content_type or '(none)'!r}"
        )
        self.content_type = content_type


class TransportError(EventSourceError):
    """The connection failed or broke before the stream was complete.

    httpx's own exception is the ``__cause__``; the two cases a caller most
    often treats apart are the subclasses :class:`ConnectError` and
    :class:`TransportTimeout`. A stream that can resume reconnects instead;
    this is raised when it cannot (a POST whose answer named no stream URL,
    ``reconnect=None``, or the first request).

    >>> try:
    ...     raise TransportError("the peer closed mid-body") from OSError("reset")
    ... except EventSourceError as exc:
    ...     print(repr(exc.__cause__))
    OSError('reset')
    """


class ConnectError(TransportError):
    """No connection was made: refused, unreachable, an unknown host, TLS failed.

    >>> str(ConnectError("cannot connect to http://127.0.0.1:9: connection refused"))
    'cannot connect to http://127.0.0.1:9: connection refused'
    """


_TimeoutPhase = Literal["connect", "read", "write", "pool"]


class TransportTimeout(TransportError):
    """An HTTP timeout ran out; ``phase`` says which: ``"connect"``, ``"read"``
    (the server sent nothing for that long), ``"write"`` or ``"pool"``.

    >>> TransportTimeout("no byte for 60 s", phase="read").phase
    'read'
    """

    def __init__(self, message: str, *, phase: _TimeoutPhase) -> None:
        super().__init__(message)
        self.phase: _TimeoutPhase = phase


class ReconnectError(EventSourceError):
    """The stream dropped and ``attempts`` reconnects in a row failed.

    The last attempt's failure (a :class:`TransportError` or a
    :class:`ResponseError`) is the ``__cause__`` when there was one.

    >>> ReconnectError("gave up", attempts=5).attempts
    5
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ReplayError(EventSourceError):
    """A reconnect sent again, from the start, events this stream had delivered.

    The server ignores ``Last-Event-ID``: reading on would deliver the same
    events again on every reconnect, for ever (a stream without ``until`` has
    no other end). ``event_id`` is the id that came again.

    >>> ReplayError("the server replayed the stream", event_id="1").event_id
    '1'
    """

    def __init__(self, message: str, *, event_id: str) -> None:
        super().__init__(message)
        self.event_id = event_id


# askstream.streams: the answer log ----------------------------------------------


class StoreError(AskstreamError):
    """A stream store refused a read or a write; ``stream_id`` names the stream.

    >>> try:
    ...     raise StreamNotFound("m1")
    ... except StoreError as exc:
    ...     print(exc.stream_id)
    m1
    """

    def __init__(self, message: str, *, stream_id: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class StreamNotFound(StoreError):
    """The store holds no stream with this id and never did, as far as it remembers.

    A stream whose retention ran out raises :class:`StreamExpired` instead for
    a while (a week by default): stores keep a small marker of it.

    >>> str(StreamNotFound("m1"))
    "no stream 'm1'"
    """

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream {stream_id!r}", stream_id=stream_id)


class StreamExpired(StoreError):
    """The stream existed but is gone: its retention after the end ran out, or the
    events a reader asked for were cut by the store's length cap.

    The service answers it with 410 Gone; the answer itself is still in the history.

    >>> str(StreamExpired("m1"))
    "stream 'm1' has expired"
    """

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} has expired", stream_id=stream_id)


class InvalidEventId(StoreError, ValueError):
    """``after`` (a reader's Last-Event-ID) is not an id this stream handed out.

    >>> InvalidEventId("m1", "abc").event_id
    'abc'
    """

    def __init__(self, stream_id: str, event_id: str) -> None:
        super().__init__(f"stream {stream_id!r} has no event id {event_id!r}", stream_id=stream_id)
        self.event_id = event_id


class StoreUnavailable(StoreError):
    """A follower gave up: the store stayed unreachable, or the stream it
    followed vanished from it (a store restarted empty), for longer than the
    producer's lease lasts. Readers are told 503: try again later.

    ``vanished`` tells the second case: the stream will never move again.

    >>> str(StoreUnavailable("m1", "Redis is unreachable"))
    "stream 'm1': Redis is unreachable"
    """

    def __init__(self, stream_id: str, reason: str, *, vanished: bool = False) -> None:
        super().__init__(f"stream {stream_id!r}: {reason}", stream_id=stream_id)
        self.reason = reason
        self.vanished = vanished


class StoreFull(StoreError):
    """The store has no room for a new stream: the streams still open fill its byte
    cap (finished ones are dropped first, oldest first). The service answers 503.

    >>> str(StoreFull("m1", 1024))
    "no room for stream 'm1': open streams hold the store's 1024 bytes"
    """

    def __init__(self, stream_id: str, max_bytes: int) -> None:
        super().__init__(
            f"no room for stream {stream_id!r}: open streams hold the store's {max_bytes} bytes",
            stream_id=stream_id,
        )
        self.max_bytes = max_bytes


# askstream.service: the ask service ---------------------------------------------


class ServiceError(AskstreamError):
    """A request failed; ``status``, ``code`` and ``message`` are what the client sees.

    Raised anywhere in a request, it becomes the response ``{"code", "message"}``
    with its ``status``; once an answer is streaming it becomes the
    ``event: error`` that ends the stream instead. ``code`` is the HTTP status
    unless given, as in the founding guide's ``{"code": 500, "message": "..."}``.

    >>> err = ServiceError(404, "no chat 'c1'")
    >>> err.status, err.code, err.message
    (404, 404, "no chat 'c1'")
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.code = status if code is None else code
        self.message = message
        #: Seconds after which the client may try again (429, 503): ``Retry-After``.
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        """The response headers the error asks for: ``Retry-After`` if it has one."""
        if self.retry_after is None:
            return None
        return {"Retry-After": str(self.retry_after)}


class UpstreamError(ServiceError):
    """The LLM back end failed: unreachable, an HTTP error, a timeout, an error payload.

    Before the first token it answers the ask with 502; after it, it ends the
    stream with ``event: error`` and code 502.

    ``kind`` says what failed, in a word the metrics count it by
    (``askstream_upstream_errors_total``): ``connect``, ``connect_timeout``,
    ``read_timeout``, ``status`` (an HTTP error), ``not_streaming``,
    ``broken`` (the stream broke off), ``incomplete`` (it ended unfinished),
    ``bad_chunk``, ``error_payload`` (the API streamed an error), ``other``.

    >>> err = UpstreamError("connection refused", kind="connect")
    >>> err.status, err.kind
    (502, 'connect')
    """

    def __init__(self, message: str, *, kind: str = "other") -> None:
        super().__init__(502, message)
        self.kind = kind


class Unavailable(ServiceError):
    """503: the service cannot do this now, but will again: a ``dependency`` (the
    database, the stream store) is unreachable, or the server is stopping
    (``dependency`` is ``None``). Answered with ``Retry-After: retry_after``.

    >>> err = Unavailable("the database is unreachable", dependency="the database")
    >>> err.status, err.retry_after
    (503, 2)
    """

    def __init__(
        self, message: str, *, dependency: str | None = None, retry_after: int = 2
    ) -> None:
        super().__init__(503, message, retry_after=retry_after)
        self.dependency = dependency


class SchemaError(AskstreamError):
    """The database's schema is not the one this askstream works with, and is not
    upgraded here (``db_upgrade`` off, or a revision this askstream does not know).

    Raised when the service starts and by ``askstream db upgrade``; the message
    says what to run.

    >>> issubclass(SchemaError, ServiceError)
    False
    """
