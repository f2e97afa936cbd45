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

A server that ignores ``Last-Event-ID`` answers a reconnect with the stream
from its start; reading on would deliver it again after every drop, and a
stream without ``until`` would never end. The first id-bearing event of a
resumed connection tells: the stream's first id again raises
:class:`~askstream.ReplayError` before any of it is delivered.

The session speaks httpx; ``lib`` is the library of the client it builds
requests with (httpx or its fork httpx2, see ``_flavor``).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from types import ModuleType
from typing import Any, Literal

import httpx

from .._exceptions import (
    ConnectError,
    ContentTypeError,
    ReconnectError,
    ReplayError,
    ResponseError,
    TransportError,
    TransportTimeout,
)
from ..sse import Decoder, Event
from ._flavor import as_httpx_url, timeout_for_library
from ._reconnect import Reconnect

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_BODY_LIMIT",
    "Session",
    "Verdict",
    "is_event_stream",
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
_Phase = Literal["connect", "read", "write", "pool"]


class Verdict(Enum):
    STREAM = "stream"  # read events from this response
    STOP = "stop"  # 204: the server says there is nothing (more) to read
    RETRY = "retry"  # a reconnect was refused for now: count it, back off, try again
    FAIL = "fail"  # read the body and raise response_error()


def response_error(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> ResponseError:
    """The error for a non-2xx answer, with the server's ``{"code", "message"}`` if it sent one,
    and the response's ``headers``.

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
        status=status,
        code=code,
        message=message or httpx.codes.get_reason_phrase(status),
        headers=headers,
    )


def transport_error(exc: Exception, url: object) -> TransportError:
    """askstream's error for httpx's (or httpx2's) failed request to ``url``; raise it
    ``from exc``.

    httpx's own classes decide the leaf, so a timeout while connecting is a
    :class:`~askstream.TransportTimeout` (``phase="connect"``), not a
    :class:`~askstream.ConnectError`, as in httpx. The classes are told by
    name, which httpx and httpx2 share.

    >>> err = transport_error(httpx.ReadTimeout(""), httpx.URL("http://a/s"))
    >>> type(err).__name__, err.phase, str(err)
    ('TransportTimeout', 'read', 'read timeout on http://a/s: ReadTimeout')
    """
    detail = str(exc) or type(exc).__name__
    # Without the query and the user info: either may hold a secret.
    where = as_httpx_url(url).copy_with(query=None, fragment=None, userinfo=b"")
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    error: TransportError
    if "TimeoutException" in kinds:
        phase: _Phase = next((p for kind, p in _TIMEOUT_PHASES if kind in kinds), "read")
        error = TransportTimeout(f"{phase} timeout on {where}: {detail}", phase=phase)
    elif "ConnectError" in kinds:
        error = ConnectError(f"cannot connect to {where}: {detail}")
    else:
        error = TransportError(f"the connection to {where} failed: {detail}")
    # Set here, not only by `raise ... from`, because a drop's error may be
    # raised later (when the stream turns out not to be resumable).
    error.__cause__ = exc
    return error


_TIMEOUT_PHASES: tuple[tuple[str, _Phase], ...] = (
    ("ConnectTimeout", "connect"),
    ("ReadTimeout", "read"),
    ("WriteTimeout", "write"),
    ("PoolTimeout", "pool"),
)


# RFC 6265 §4.1.1: a cookie-name is an RFC 9110 token; a cookie-octet is any
# printable ASCII but space, DQUOTE, comma, semicolon and backslash.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_COOKIE_OCTETS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('",;\\')


def _cookie_pair(name: str, value: str) -> str:
    """``name=value`` for a Cookie header; anything that could end the pair early (a
    ``;``) or the header (CR, LF) is refused rather than sent."""
    if not name or not set(name) <= _TOKEN or not set(value) <= _COOKIE_OCTETS:
        raise ValueError(f"not a valid cookie (RFC 6265 §4.1.1): {name!r}={value!r}")
    return f"{name}={value}"


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
        auth: Any = None,
        cookies: Mapping[str, str] | None = None,
        lib: ModuleType = httpx,
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
        self.auth = auth  # a lib.Auth; None: the client's own, if it has any
        self.lib = lib
        # Sent instead of the caller's auth to another origin: httpx then applies
        # none, not even the client's own default auth.
        self._no_auth = lib.Auth()
        # The Cookie header's pairs (RFC 6265 §4.2.1), for the first request's origin.
        self._cookie = "; ".join(_cookie_pair(n, v) for n, v in (cookies or {}).items())
        self._rand = rand  # the backoff's jitter
        self.retry: int | None = None  # ms, from the server
        self.resume_url: httpx.URL | None = url if self.method == "GET" else None
        self.attempts = 0  # failed reconnect attempts since the last event
        self.finished = False  # a terminal event (one of `until`) was delivered
        self._decoder = Decoder(last_event_id=last_event_id, max_event_size=max_event_size)
        self._reconnecting = False
        # Replays: the first id this stream delivered, and whether the current
        # connection resumed after it and has not shown an id of its own yet.
        self._first_id: str | None = None
        self._resumed = False
        # The first request's absolute URL (a client's base_url merged in): its
        # origin is the only one that gets the caller's credentials.
        self._origin: httpx.URL | None = None

    # Requests ---------------------------------------------------------------

    def build_request(self, client: httpx.Client | httpx.AsyncClient, timeout: Any) -> Any:
        """The next request (of ``client``'s library): the caller's own first, then a
        resuming GET.

        Send it with :meth:`auth_for`'s auth.
        """
        timeout = timeout_for_library(timeout, self.lib)
        headers = httpx.Headers(self.headers)
        headers.setdefault("accept", "text/event-stream")
        headers.setdefault("cache-control", "no-cache")
        if not self._reconnecting:
            if self.last_event_id:
                headers["last-event-id"] = self.last_event_id
            request = client.build_request(
                self.method,
                self._wire_url(self.url),
                headers=self._wire_headers(headers),
                timeout=timeout,
                **self.request_kwargs,
            )
            if self._origin is None:
                self._origin = as_httpx_url(request.url)
            self._add_cookies(request)
            return request
        assert self.resume_url is not None
        for name in _BODY_HEADERS:
            headers.pop(name, None)
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        else:
            headers.pop("last-event-id", None)
        request = client.build_request(
            "GET",
            self._wire_url(self.resume_url),
            headers=self._wire_headers(headers),
            timeout=timeout,
        )
        if not self._at_origin(request.url):
            # Removed from the built request, so that the client's default headers
            # and its cookie jar (which matches cookies by host, not port: RFC 6265
            # §8.5) are left behind too.
            for name in _CREDENTIAL_HEADERS:
                request.headers.pop(name, None)
        else:
            self._add_cookies(request)
        return request

    def _wire_url(self, url: httpx.URL) -> httpx.URL | str:
        return url if self.lib is httpx else str(url)

    def _wire_headers(self, headers: httpx.Headers) -> httpx.Headers | list[tuple[str, str]]:
        return headers if self.lib is httpx else headers.multi_items()

    def _add_cookies(self, request: Any) -> None:
        """The caller's ``cookies=`` after the client's own (its jar's, its defaults)."""
        if self._cookie:
            jar = request.headers.get("cookie")
            request.headers["cookie"] = f"{jar}; {self._cookie}" if jar else self._cookie

    def auth_for(self, request: Any) -> Any:
        """The auth to send ``request`` with; ``None``: the client's own.

        The caller's ``auth`` at the first request's origin, none at all elsewhere.
        """
        return self.auth if self._at_origin(request.url) else self._no_auth

    def _at_origin(self, url: object) -> bool:
        return self._origin is None or same_origin(as_httpx_url(url), self._origin)

    def check(self, response: Any) -> Verdict:
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
            self.resume_url = as_httpx_url(response.request.url).join(location)
        # A new connection: what was half-read on the old one is discarded. A
        # resumed one starts its decoder with no id, so that the first id the
        # server sends shows (events before it get the stream's last id back).
        self._resumed = self._reconnecting and self._first_id is not None
        self._decoder = Decoder(
            last_event_id="" if self._resumed else self.last_event_id,
            max_event_size=self.max_event_size,
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
            if self._resumed:
                self._check_replay(events)
            elif self._first_id is None:
                self._first_id = next((e.id for e in events if e.id), None)
            if self.until:
                for index, event in enumerate(events):
                    if event.event in self.until:
                        self.finished = True
                        del events[index + 1 :]
                        break
        if not self._resumed:
            self.last_event_id = decoder.last_event_id
        return events

    def _check_replay(self, events: list[Event]) -> None:
        """On a resumed connection: raise if its first id is the stream's first id;
        events before that first id get the stream's last id (edits ``events``)."""
        index = next((i for i, event in enumerate(events) if event.id is not None), len(events))
        if index < len(events):
            event_id = events[index].id
            if event_id is not None and event_id == self._first_id:
                url = self.resume_url or self.url
                where = url.copy_with(query=None, fragment=None, userinfo=b"")  # may hold secrets
                raise ReplayError(
                    f"after a reconnect with Last-Event-ID {self.last_event_id!r}, "
                    f"{where} sent the stream again from its first event "
                    f"(id {event_id!r}): the server ignores Last-Event-ID, and reading "
                    "on would repeat the stream after every reconnect",
                    event_id=event_id,
                )
            self._resumed = False
        last = self.last_event_id or None
        for before in range(index):
            events[before] = dataclasses.replace(events[before], id=last)

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
