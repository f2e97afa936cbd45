"""The LLM back end's event stream, read lean: an asyncio protocol, httptools, our Decoder.

Why not httpx on this path: profiled at 20 tokens/s (``bench/profile_service.py``,
docs/benchmarks.md), reading the upstream through httpx's stream machinery
(httpcore, h11, anyio's cancel scopes and timeouts, three async iterators per
chunk) was half of the service's CPU per token. Here a chunk costs one parse by
httptools (C, already installed with ``uvicorn[standard]``), one
:meth:`Decoder.feed`, and one wake-up of the reading task, only once an event
is complete. The read timeout is a deadline checked by one timer per
``read_timeout`` seconds, not a timer set and cancelled per chunk.

What it keeps of httpx's behaviour, so that :class:`OpenAIBackend` maps failures to
the same :class:`UpstreamError` messages: the connect timeout (TCP and TLS
handshake) and the read timeout (the first byte, and between chunks; not while
events wait for the reader); TLS with :func:`ssl.create_default_context`; kept-alive
connections reused per origin (at most ``_IDLE_MAX`` idle, ``_IDLE_EXPIRY``
seconds, as httpx's pool); closing the connection when the reader stops before
the end (the upstream sees the disconnect at once); and the errors of
askstream's own client: :class:`ConnectError`, :class:`TransportTimeout`,
:class:`ResponseError`, :class:`ContentTypeError`, :class:`TransportError`.
Not supported: proxies and credentials in the URL (:func:`lean_ok` says no,
and the back end uses httpx).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import cast
from urllib.parse import SplitResult, urlsplit

import httptools

from .._exceptions import (
    ConnectError,
    ContentTypeError,
    ResponseError,
    TransportError,
    TransportTimeout,
)
from ..sse import Decoder, Event

__all__ = ["Upstream", "lean_ok"]

_ERROR_BODY_LIMIT = 64 * 1024  # of a non-2xx answer's body, as askstream's client reads
_PAUSE_EVENTS = 1024  # events waiting for the reader before the socket stops being read
_IDLE_MAX = 100  # kept-alive connections per origin, as httpx's default pool
_IDLE_EXPIRY = 5.0  # seconds an idle connection is kept, as httpx's default pool


def lean_ok(url: str) -> bool:
    """Whether :class:`Upstream` can reach ``url``: http or https, no credentials in
    it, and no proxy configured for it (httpx's ``trust_env`` variables)."""
    parts = urlsplit(url)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or "@" in parts.netloc
        or not parts.netloc.isascii()  # an IDN host: httpx encodes it
    ):
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))  # NO_PROXY


def _is_event_stream(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to the upstream, and the state of its current response.

    The parser's callbacks (``on_*``) run inside :meth:`data_received`; they
    only record, and wake the reader when something it waits for happened.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str) -> None:
        self.loop = loop
        self.where = where  # the URL without query, for messages
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.closed: asyncio.Future[None] = loop.create_future()  # connection_lost ran
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.read_timeout = 0.0
        self.reset()

    def reset(self) -> None:
        """Make ready for the next response on this connection."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.content_type = ""
        self.retry_after: str | None = None  # a refusal's Retry-After, for the retries
        self.length_known = False  # Content-Length or chunked: the end is in the message
        self.head_done = False
        self.keep_alive = False  # as the response's head says (asked there: llhttp forgets)
        self.complete = False
        self.streaming = False  # a 2xx event stream: the body goes to the decoder
        self.decoder = Decoder()
        self.events: list[Event] = []
        self.body = bytearray()
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.last_read = self.loop.time()
        self.paused = False

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own failure (the decoder's) is recorded there first.
            self.fail(self.error or TransportError(f"the connection to {self.where} failed: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.closed.done():
            self.closed.set_result(None)
        if self.head_done and not self.length_known and not self.complete and exc is None:
            self.complete = True  # a body that ends with the connection (RFC 9112 §6.3)
        if not self.complete and self.error is None:
            why = exc or "the server closed it"
            self.error = TransportError(f"the connection to {self.where} failed: {why}")
        self.wake()

    def pause_writing(self) -> None:  # the request waits in the transport's buffer
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks --------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lowered == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.length_known = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        if 200 <= self.status < 300 and self.status != 204:
            if _is_event_stream(self.content_type):
                self.streaming = True
            else:
                self.fail(ContentTypeError(self.content_type))
                return
        self.wake()

    def on_body(self, body: bytes) -> None:
        if not self.streaming:
            room = _ERROR_BODY_LIMIT - len(self.body)
            if room > 0:
                self.body += body[:room]
            return
        try:
            events = self.decoder.feed(body)
        except Exception as exc:  # EventTooLarge: the decoder is of no further use
            self.streaming = False
            self.fail(exc)
            return
        if events:
            if self.events:
                self.events += events
                if len(self.events) > _PAUSE_EVENTS and not self.paused:
                    self.paused = True  # the reader is far behind: stop reading the socket
                    assert self.transport is not None
                    self.transport.pause_reading()
            else:
                self.events = events
                self.wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.wake()

    # -- the reader's side -------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self.wake()

    def close(self) -> None:
        self.disarm()
        if self.transport is not None:
            self.transport.close()
        self.lost = True

    async def wait(self) -> None:
        """Until the parser has something new for the reader (or the connection failed)."""
        waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        if self.paused:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return events

    def arm(self, read_timeout: float) -> None:
        """Start the read timeout: the server must send something every ``read_timeout`` s."""
        self.read_timeout = read_timeout
        self.last_read = self.loop.time()
        self.timer = self.loop.call_at(self.last_read + read_timeout, self._check)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        # One timer per read_timeout seconds, not one per chunk: the deadline
        # moves with last_read, and the timer looks again when it would be due.
        self.timer = None
        if self.complete or self.error is not None:
            return
        due = self.last_read + self.read_timeout
        if self.paused or self.events:  # waiting for our reader, not for the server
            due = self.loop.time() + self.read_timeout
        if self.loop.time() >= due:
            self.fail(
                TransportTimeout(
                    f"read timeout on {self.where}: nothing for {self.read_timeout:g} s",
                    phase="read",
                )
            )
        else:
            self.timer = self.loop.call_at(due, self._check)

    def reusable(self) -> bool:
        return (
            self.complete
            and self.error is None
            and not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
            and self.keep_alive
        )


class Upstream:
    """POSTs JSON to an upstream and yields its ``text/event-stream`` answer's events.

    One per :class:`OpenAIBackend`; it keeps idle connections for reuse until
    :meth:`aclose`.
    """

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None  # made on first https use
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}

    async def events(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncGenerator[Event, None]:
        """POST ``body`` (JSON) to ``url`` and yield its events as they come;
        closing it early closes the connection.

        Raises :class:`ResponseError` for a non-2xx answer, :class:`ContentTypeError`
        for a 2xx that is not an event stream, :class:`ConnectError`,
        :class:`TransportTimeout` or :class:`TransportError` when the connection
        fails; a 204 yields nothing.
        """
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "", parts.port or _default_port(parts.scheme))
        where = parts._replace(query="", fragment="").geturl()
        request = _request(parts, body, headers)
        conn = self._checkout(key)
        if conn is None:
            conn = await self._connect(key, where)
        else:
            conn.reset()
        try:
            assert conn.transport is not None
            conn.transport.write(request)
            conn.arm(self._read_timeout)
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
            if not 200 <= conn.status < 300:
                while not conn.complete and conn.error is None:
                    await conn.wait()
                text = bytes(conn.body).decode("utf-8", "replace").strip()[:500]
                retry_after = conn.retry_after
                raise ResponseError(
                    status=conn.status,
                    code=conn.status,
                    message=text,
                    headers=None if retry_after is None else {"retry-after": retry_after},
                )
            create_future = conn.loop.create_future
            while True:
                if conn.events:
                    for event in conn.take():
                        yield event
                elif conn.error is not None:
                    raise conn.error
                elif conn.complete:
                    break
                else:  # conn.wait(), inline: this is once per token
                    waiter = conn.waiter = create_future()
                    await waiter
                    conn.waiter = None
        finally:
            # Also when the reader stopped at `data: [DONE]`: if the response is
            # complete by then (its last chunk came in the same read), the
            # connection serves the next ask; otherwise closing it ends the request.
            conn.disarm()
            if conn.reusable():
                self._checkin(key, conn)
            else:
                conn.close()

    async def _connect(self, key: tuple[str, str, int], where: str) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, where),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except TimeoutError as exc:
            raise TransportTimeout(
                f"connect timeout on {where}: no connection within {self._connect_timeout:g} s",
                phase="connect",
            ) from exc
        except OSError as exc:  # refused, unreachable, unknown host, TLS (ssl.SSLError)
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        return conn

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        expired = time.monotonic() - _IDLE_EXPIRY
        while idle:
            conn = idle.pop()  # the most recent: the least likely to be closed by the server
            if conn.reusable() and conn.idle_since > expired:
                return conn
            conn.close()
        return None

    def _checkin(self, key: tuple[str, str, int], conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(key, deque())
        idle.append(conn)
        while len(idle) > _IDLE_MAX:
            idle.popleft().close()

    async def aclose(self) -> None:
        """Close the idle connections, and wait until their sockets are closed."""
        idle, self._idle = self._idle, {}
        closing = [conn for connections in idle.values() for conn in connections]
        for conn in closing:
            conn.close()
        if closing:
            await asyncio.wait([conn.closed for conn in closing], timeout=1.0)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _request(parts: SplitResult, body: bytes, headers: Mapping[str, str]) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Accept: text/event-stream",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "User-Agent: askstream",
    ]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} is not a valid HTTP header")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
