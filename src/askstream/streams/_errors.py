"""The stream log's errors, a branch of askstream's one exception tree::

    AskstreamError
    └── StoreError                  the stream log refused a read or a write
        ├── StreamNotFound          no stream with that id: never made (or long forgotten)
        ├── StreamExpired           the stream existed but its retention ran out (HTTP 410)
        ├── StoreUnavailable        the store stayed unreachable, or the stream vanished
        │                           from it, for longer than a follower waits (HTTP 503)
        ├── InvalidEventId          an ``after`` / Last-Event-ID this stream never gave out
        │                           (also a ValueError: it is always a bad argument)
        └── StoreFull               no room for a new stream: live streams fill the store

Appending to a finished stream is a usage error, so it is a ``RuntimeError``
outside the tree, as httpx does for a closed client.
"""

from __future__ import annotations

from .._exceptions import AskstreamError

__all__ = [
    "InvalidEventId",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
]


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
