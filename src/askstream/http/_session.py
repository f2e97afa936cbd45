"""The part of reading a stream that both clients share: no I/O, no clock.

The sync and async clients own the sockets and the sleeping; a ``Session``
decides what to request next (the first request, or a resume with
``Last-Event-ID``) and where credentials may go, what an answer means, which
events to deliver, and how long to wait after a drop. EventSource's rules
(WHATWG HTML §9.2.3, "processing model") are followed where they fit an HTTP
client: 204 means stop, a partial event is discarded on a drop,
``Last-Event-ID`` goes with every reconnect.

Credentials stay with the origin of the first request, as httpx and browsers
keep them on a cross-origin redirect: a resume at another origin (the server
named one in ``Content-Location``) carries no ``Authorization``, no ``Cookie``
and no ``auth=``, whoever set them (the caller, the client's defaults or its
cookie jar).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from typing import Any, Literal

import httpx

from .._exceptions import (
    ConnectError,
    ContentTypeError,
    ReconnectError,
    ResponseError,
    TransportError,
    TransportTimeout,
)
from ..sse import Decoder, Event
from ._reconnect import Reconnect

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_BODY_LIMIT",
    "Session",
    "Verdict",
    "response_error",
    "same_origin",
    "transport_error",
]

# Streams sit idle between events: no 5 s read timeout (httpx's default). 60 s
# still notices a dead peer when the server pings (askstream does every 15 s).
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=60.0)
ERROR_BODY_LIMIT = 64 * 1024
# Answers to a reconnect that mean "try again later", not "stop".
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
# Headers that belong to the first request's body, not to a resuming GET.
_BODY_HEADERS = ("content-type", "content-length", "content-encoding", "transfer-encoding")
# Headers that carry the caller's credentials: for the first request's origin only.
_CREDENTIAL_HEADERS = ("authorization", "cookie")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Sent instead of the caller's auth to another origin: httpx then applies none,
# not even the client's own default auth.
_NO_AUTH = httpx.Auth()
_Phase = Literal["connect", "read", "write", "pool"]


class Verdict(Enum):
    STREAM = "stream"  # read events from this response
    STOP = "stop"  # 204: the server says there is nothing (more) to read
    RETRY = "retry"  # a reconnect was refused for now: count it, back off, try again
    FAIL = "fail"  # read the body and raise response_error()


def response_error(status: int, body: bytes) -> ResponseError:
    """The error for a non-2xx answer, with the server's ``{"code", "message"}`` if it sent one.

    >>> response_error(502, b'{"code": 502, "message": "LLM request failed"}').message
    'LLM request failed'
    """
    code, message = status, body.decode("utf-8", "replace").strip()[:500]
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        text = payload.get("message", payload.get("detail"))
        if isinstance(text, str):
            message = text
        if type(payload.get("code")) is int:
            code = payload["code"]
    return ResponseError(
        status=status, code=code, message=message or httpx.codes.get_reason_phrase(status)
    )


def transport_error(exc: httpx.RequestError, url: httpx.URL) -> TransportError:
    """askstream's error for httpx's failed request to ``url``; raise it ``from exc``.

    httpx's own classes decide the leaf, so a timeout while connecting is a
    :class:`~askstream.TransportTimeout` (``phase="connect"``), not a
    :class:`~askstream.ConnectError`, as in httpx.

    >>> err = transport_error(httpx.ReadTimeout(""), httpx.URL("http://a/s"))
    >>> type(err).__name__, err.phase, str(err)
    ('TransportTimeout', 'read', 'read timeout on http://a/s: ReadTimeout')
    """
    detail = str(exc) or type(exc).__name__
    # Without the query and the user info: either may hold a secret.
    where = url.copy_with(query=None, fragment=None, userinfo=b"")
    error: TransportError
    if isinstance(exc, httpx.TimeoutException):
        phase: _Phase = next((p for kind, p in _TIMEOUT_PHASES if isinstance(exc, kind)), "read")
        error = TransportTimeout(f"{phase} timeout on {where}: {detail}", phase=phase)
    elif isinstance(exc, httpx.ConnectError):
        error = ConnectError(f"cannot connect to {where}: {detail}")
    else:
        error = TransportError(f"the connection to {where} failed: {detail}")
    # Set here, not only by `raise ... from`, because a drop's error may be
    # raised later (when the stream turns out not to be resumable).
    error.__cause__ = exc
    return error


_TIMEOUT_PHASES: tuple[tuple[type[httpx.TimeoutException], _Phase], ...] = (
    (httpx.ConnectTimeout, "connect"),
    (httpx.ReadTimeout, "read"),
    (httpx.WriteTimeout, "write"),
    (httpx.PoolTimeout, "pool"),
)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Whether two absolute URLs share scheme, host and port (RFC 6454 §4).

    >>> same_origin(httpx.URL("http://a:80/x"), httpx.URL("http://a/y?z"))
    True
    >>> same_origin(httpx.URL("http://a/x"), httpx.URL("https://a/x"))
    False
    """

    def port(u: httpx.URL) -> int | None:
        return u.port or _DEFAULT_PORTS.get(u.scheme)

    return url.scheme == other.scheme and url.host == other.host and port(url) == port(other)


def is_event_stream(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


class Session:
    """One logical stream across its connections."""

    def __init__(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: httpx.Headers,
        request_kwargs: Mapping[str, Any],
        last_event_id: str,
        until: Collection[str],
        reconnect: Reconnect | None,
        max_event_size: int | None,
        auth: httpx.Auth | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = headers
        self.request_kwargs = request_kwargs
        self.last_event_id = last_event_id
        self.until = frozenset(until)
        self.reconnect = reconnect
        self.max_event_size = max_event_size
        self.auth = auth  # None: the client's own, if it has any
        self._rand = rand  # the backoff's jitter
        self.retry: int | None = None  # ms, from the server
        self.resume_url: httpx.URL | None = url if self.method == "GET" else None
        self.attempts = 0  # failed reconnect attempts since the last event
        self.finished = False  # a terminal event (one of `until`) was delivered
        self._decoder = Decoder(last_event_id=last_event_id, max_event_size=max_event_size)
        self._reconnecting = False
        # The first request's absolute URL (a client's base_url merged in): its
        # origin is the only one that gets the caller's credentials.
        self._origin: httpx.URL | None = None

    # Requests ---------------------------------------------------------------

    def build_request(
        self, client: httpx.Client | httpx.AsyncClient, timeout: Any
    ) -> httpx.Request:
        """The next request: the caller's own first, then a resuming GET.

        Send it with :meth:`auth_for`'s auth.
        """
        headers = httpx.Headers(self.headers)
        headers.setdefault("accept", "text/event-stream")
        headers.setdefault("cache-control", "no-cache")
        if not self._reconnecting:
            if self.last_event_id:
                headers["last-event-id"] = self.last_event_id
            request = client.build_request(
                self.method, self.url, headers=headers, timeout=timeout, **self.request_kwargs
            )
            if self._origin is None:
                self._origin = request.url
            return request
        assert self.resume_url is not None
        for name in _BODY_HEADERS:
            headers.pop(name, None)
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        else:
            headers.pop("last-event-id", None)
        request = client.build_request("GET", self.resume_url, headers=headers, timeout=timeout)
        if not self._at_origin(request.url):
            # Removed from the built request, so that the client's default headers
            # and its cookie jar (which matches cookies by host, not port: RFC 6265
            # §8.5) are left behind too.
            for name in _CREDENTIAL_HEADERS:
                request.headers.pop(name, None)
        return request

    def auth_for(self, request: httpx.Request) -> httpx.Auth | None:
        """The auth to send ``request`` with; ``None``: the client's own.

        The caller's ``auth`` at the first request's origin, none at all elsewhere.
        """
        return self.auth if self._at_origin(request.url) else _NO_AUTH

    def _at_origin(self, url: httpx.URL) -> bool:
        return self._origin is None or same_origin(url, self._origin)

    def check(self, response: httpx.Response) -> Verdict:
        """What an answer means; raises ``ContentTypeError`` for a 2xx that is not a stream."""
        status = response.status_code
        if status == 204:
            return Verdict.STOP
        if not 200 <= status < 300:
            return Verdict.RETRY if self._reconnecting and status in _RETRYABLE else Verdict.FAIL
        content_type = response.headers.get("content-type", "")
        if not is_event_stream(content_type):
            raise ContentTypeError(content_type)
        location = response.headers.get("content-location")
        if location:
            # Our service names the stream's resumable URL this way (RFC 9110 §8.7).
            self.resume_url = response.request.url.join(location)
        # A new connection: what was half-read on the old one is discarded.
        self._decoder = Decoder(
            last_event_id=self.last_event_id, max_event_size=self.max_event_size
        )
        return Verdict.STREAM

    # Events -----------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Event]:
        """The events ``chunk`` completes, up to and including a terminal one."""
        decoder = self._decoder
        events = decoder.feed(chunk)
        if decoder.retry is not None:
            self.retry = decoder.retry
        if events:
            self.attempts = 0
            if self.until:
                for index, event in enumerate(events):
                    if event.event in self.until:
                        self.finished = True
                        del events[index + 1 :]
                        break
        self.last_event_id = decoder.last_event_id
        return events

    # Drops ------------------------------------------------------------------

    @property
    def resumable(self) -> bool:
        return self.reconnect is not None and self.resume_url is not None

    def dropped(self, error: TransportError | None) -> float | None:
        """After a drop or failed reconnect (``error``) or an early end (``None``):
        seconds to wait, or ``None``.

        ``None`` means stop: the stream finished or cannot resume.

        Raises ``error`` when the stream cannot resume, and
        :class:`~askstream.ReconnectError` (from the last ``error``) when the
        attempts are used up.
        """
        if self.finished:
            return None
        if not self.resumable:
            if error is not None:
                raise error
            return None
        assert self.reconnect is not None
        self._reconnecting = True
        self.attempts += 1
        if self.attempts > self.reconnect.max_attempts:
            raise ReconnectError(
                f"the stream dropped and {self.reconnect.max_attempts} reconnects failed",
                attempts=self.reconnect.max_attempts,
            ) from error
        return self.reconnect.backoff(self.attempts, retry_ms=self.retry, rand=self._rand())
