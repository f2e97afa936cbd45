"""The ask service's errors, a branch of askstream's one exception tree::

    AskstreamError
    └── ServiceError               a request to the ask service failed; carries the
        │                          HTTP ``status`` and the JSON body's ``code``, ``message``
        ├── UpstreamError          the LLM back end was unreachable, refused, timed out
        │                          or broke off (502)
        └── Unavailable            a dependency (database, stream store) is unreachable,
                                   or the server is stopping (503 with ``Retry-After``)

A ``ServiceError`` raised anywhere in a request becomes the response
``{"code": ..., "message": ...}`` with its ``status``; once an answer is
streaming it becomes the ``event: error`` that ends the stream instead.
"""

from __future__ import annotations

__all__ = ["ServiceError", "Unavailable", "UpstreamError"]

from .._exceptions import AskstreamError


class ServiceError(AskstreamError):
    """A request failed; ``status``, ``code`` and ``message`` are what the client sees.

    ``code`` is the HTTP status unless given, as in the founding guide's
    ``{"code": 500, "message": "..."}``.

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
