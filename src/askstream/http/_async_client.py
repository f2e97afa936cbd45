"""``aconnect``: read an event stream with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from types import TracebackType
from typing import Any, cast

import httpx

from .._exceptions import TransportError
from ..sse import Event
from ..sse._decoder import DEFAULT_MAX_EVENT_SIZE
from ._auth import AuthTypes, build_auth
from ._flavor import AsyncClientTypes, auth_for_library, library_of
from ._reconnect import DEFAULT_RECONNECT, Reconnect
from ._session import (
    DEFAULT_TIMEOUT,
    ERROR_BODY_LIMIT,
    Session,
    Verdict,
    response_error,
    transport_error,
)

__all__ = ["AsyncEventSource", "aconnect"]


class AsyncEventSource:
    """An open event stream; iterate it for :class:`~askstream.Event` objects.

    Made by :func:`aconnect`, used as ``async with``: leaving the block (or
    cancelling the task) closes the connection at once.

    ``response`` is the current ``httpx.Response``; ``last_event_id`` and
    ``retry`` (ms) are what a reconnect will send and honour.

    Example::

        async def first_token(url):
            async with aconnect("GET", url, until={"done"}) as source:
                event = await anext(source)
                return event.data, source.last_event_id
    """

    def __init__(
        self,
        session: Session,
        client: AsyncClientTypes | None,
        *,
        timeout: Any,
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self._session = session
        self._own_client = client is None
        # Typed as httpx's: an httpx2 client has the same API, and the session
        # hands it values of its own library (see _flavor).
        self._client = (
            cast("httpx.AsyncClient", client)
            if client is not None
            else httpx.AsyncClient(follow_redirects=True)
        )
        self._request_error: type[Exception] = session.lib.RequestError
        self._timeout = timeout
        self._sleep = sleep
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._pending: deque[Event] = deque()
        self._state = "new"  # new -> open -> done (no more reads) -> closed

    @property
    def response(self) -> httpx.Response | None:
        return self._response

    @property
    def last_event_id(self) -> str:
        return self._session.last_event_id

    @property
    def retry(self) -> int | None:
        return self._session.retry

    async def __aenter__(self) -> AsyncEventSource:
        if self._state != "new":
            raise RuntimeError("an AsyncEventSource can be entered only once")
        self._state = "open"
        try:
            verdict = await self._connect()
        except BaseException:
            await self.aclose()
            raise
        if verdict is not Verdict.STREAM:
            self._state = "done"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (and the client, if it is ours)."""
        self._state = "closed"
        self._pending.clear()
        await self._close_response()
        if self._own_client:
            await self._client.aclose()

    def __aiter__(self) -> AsyncEventSource:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._state in ("done", "closed"):
                if self._state == "closed":
                    raise RuntimeError("the event source is closed")
                raise StopAsyncIteration
            if self._state == "new":
                raise RuntimeError("use the event source in `async with`")
            assert self._chunks is not None
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                await self._reconnect(None)
                continue
            except self._request_error as exc:
                await self._reconnect(transport_error(exc, self._url()))
                continue
            self._pending.extend(self._session.feed(chunk))
            if self._session.finished:
                self._state = "done"
                await self._close_response()
        return self._pending.popleft()

    async def _connect(self) -> Verdict:
        """One request; a streaming response is kept, anything else read and closed."""
        request = self._session.build_request(self._client, self._timeout)
        try:
            return await self._exchange(request)
        except self._request_error as exc:
            raise transport_error(exc, request.url) from exc

    async def _exchange(self, request: Any) -> Verdict:
        auth = self._session.auth_for(request)
        response = await self._client.send(
            request,
            stream=True,
            auth=self._session.lib.USE_CLIENT_DEFAULT if auth is None else auth,
        )
        try:
            verdict = self._session.check(response)
        except BaseException:
            await response.aclose()
            raise
        if verdict is Verdict.STREAM:
            self._response = response
            self._chunks = response.aiter_bytes()
            return verdict
        body = bytearray()
        try:
            if verdict is Verdict.FAIL:
                async for part in response.aiter_bytes():
                    body += part
                    if len(body) >= ERROR_BODY_LIMIT:
                        break
        finally:
            await response.aclose()
        if verdict is Verdict.FAIL:
            raise response_error(response.status_code, bytes(body), response.headers)
        return verdict

    def _url(self) -> httpx.URL:
        """The URL of the request being read, for an error's message."""
        return self._response.request.url if self._response is not None else self._session.url

    async def _reconnect(self, error: TransportError | None) -> None:
        await self._close_response()
        session = self._session
        delay = session.dropped(error)
        while delay is not None:
            await self._sleep(delay)
            try:
                verdict = await self._connect()
            except TransportError as exc:
                delay = session.dropped(exc)
                continue
            if verdict is Verdict.RETRY:
                delay = session.dropped(None)
                continue
            if verdict is Verdict.STREAM:
                return
            break
        self._state = "done"

    async def _close_response(self) -> None:
        chunks, self._chunks = self._chunks, None
        response, self._response = self._response, None
        if chunks is not None:
            await chunks.aclose()  # type: ignore[attr-defined]
        if response is not None:
            await response.aclose()


def aconnect(
    method: str,
    url: httpx.URL | str,
    *,
    client: AsyncClientTypes | None = None,
    params: Any = None,
    headers: Mapping[str, str] | httpx.Headers | None = None,
    auth: AuthTypes | None = None,
    cookies: Mapping[str, str] | None = None,
    json: Any = None,
    content: Any = None,
    data: Any = None,
    last_event_id: str = "",
    until: Collection[str] = (),
    reconnect: Reconnect | None = DEFAULT_RECONNECT,
    timeout: Any = DEFAULT_TIMEOUT,
    max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncEventSource:
    """Open an event stream with any method and body; use it as ``async with``.

    A non-2xx answer raises :class:`~askstream.ResponseError` (with the
    server's JSON ``{"code", "message"}`` if any) and a 2xx that is not
    ``text/event-stream`` raises :class:`~askstream.ContentTypeError`; 204
    yields no events. A failed connection raises
    :class:`~askstream.TransportError` (:class:`~askstream.ConnectError`,
    :class:`~askstream.TransportTimeout`), httpx's error as its ``__cause__``:
    no httpx exception escapes, so ``except askstream.AskstreamError`` is enough.

    A stream that drops or ends early reconnects by ``reconnect``'s policy
    (``None``: never) with ``Last-Event-ID``, honouring the server's
    ``retry``: a GET stream at its own URL, any stream whose response named
    a ``Content-Location`` (a POST that started a resumable stream) with a GET
    there. A reconnect answered 204 ends the stream quietly; events of a type
    in ``until`` are the last delivered, and the stream does not reconnect
    after one.

    ``auth``: httpx's (an ``httpx.Auth`` such as :class:`~askstream.BearerAuth`,
    a ``(user, password)`` tuple, or a function that edits the request), sent
    with every request of the stream, resumes included. Credentials stay with
    the first request's origin (scheme, host, port), as on an httpx redirect: a
    resume at another origin carries no ``auth``, ``Authorization`` or ``Cookie``
    (yours, the client's defaults or its cookie jar's).

    ``client``: your ``httpx.AsyncClient`` (left open), else a private one.
    ``timeout`` applies to every request; the default has no 5 s read timeout
    (pass ``httpx.USE_CLIENT_DEFAULT`` to keep the client's). ``sleep`` is the
    backoff's sleep, for tests.

    Example::

        async def main():
            async with aconnect("POST", "http://127.0.0.1:8000/api/ask",
                                json={"question": "Hi"}, until={"done", "error"}) as source:
                async for event in source:
                    print(event.event, event.data)
    """
    request_kwargs = {"json": json, "content": content, "data": data}
    lib = httpx if client is None else library_of(client)
    session = Session(
        method,
        httpx.URL(url).copy_merge_params(params) if params is not None else httpx.URL(url),
        headers=httpx.Headers(headers),
        request_kwargs={k: v for k, v in request_kwargs.items() if v is not None},
        last_event_id=last_event_id,
        until=until,
        reconnect=reconnect,
        max_event_size=max_event_size,
        auth=auth_for_library(build_auth(auth), lib),
        cookies=cookies,
        lib=lib,
    )
    return AsyncEventSource(session, client, timeout=timeout, sleep=sleep)
