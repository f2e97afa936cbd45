"""``connect``: read an event stream with ``httpx.Client``.

The sync twin of ``_async_client.py``: the same ``Session`` decides everything,
this module only does blocking I/O. No event loop is involved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import Any, cast

import httpx

from .._exceptions import TransportError
from ..sse import Event
from ..sse._decoder import DEFAULT_MAX_EVENT_SIZE
from ._auth import AuthTypes, build_auth
from ._flavor import ClientTypes, auth_for_library, library_of
from ._reconnect import DEFAULT_RECONNECT, Reconnect
from ._session import (
    DEFAULT_TIMEOUT,
    ERROR_BODY_LIMIT,
    Session,
    Verdict,
    response_error,
    transport_error,
)

__all__ = ["EventSource", "connect"]


class EventSource:
    """An open event stream; iterate it for :class:`~askstream.Event` objects.

    Made by :func:`connect`, used as ``with``: leaving the block closes the
    connection at once. ``response``, ``last_event_id`` and ``retry`` are as on
    :class:`AsyncEventSource`.

    Example::

        with connect("GET", url, until={"done"}) as source:
            first = next(source)
            print(first.data, source.retry)
    """

    def __init__(
        self,
        session: Session,
        client: ClientTypes | None,
        *,
        timeout: Any,
        sleep: Callable[[float], object],
    ) -> None:
        self._session = session
        self._own_client = client is None
        # Typed as httpx's: an httpx2 client has the same API, and the session
        # hands it values of its own library (see _flavor).
        self._client = (
            cast("httpx.Client", client)
            if client is not None
            else httpx.Client(follow_redirects=True)
        )
        self._request_error: type[Exception] = session.lib.RequestError
        self._timeout = timeout
        self._sleep = sleep
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
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

    def __enter__(self) -> EventSource:
        if self._state != "new":
            raise RuntimeError("an EventSource can be entered only once")
        self._state = "open"
        try:
            verdict = self._connect()
        except BaseException:
            self.close()
            raise
        if verdict is not Verdict.STREAM:
            self._state = "done"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and the client, if it is ours)."""
        self._state = "closed"
        self._pending.clear()
        self._close_response()
        if self._own_client:
            self._client.close()

    def __iter__(self) -> EventSource:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._state in ("done", "closed"):
                if self._state == "closed":
                    raise RuntimeError("the event source is closed")
                raise StopIteration
            if self._state == "new":
                raise RuntimeError("use the event source in `with`")
            assert self._chunks is not None
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._reconnect(None)
                continue
            except self._request_error as exc:
                self._reconnect(transport_error(exc, self._url()))
                continue
            self._pending.extend(self._session.feed(chunk))
            if self._session.finished:
                self._state = "done"
                self._close_response()
        return self._pending.popleft()

    def _connect(self) -> Verdict:
        """One request; a streaming response is kept, anything else read and closed."""
        request = self._session.build_request(self._client, self._timeout)
        try:
            return self._exchange(request)
        except self._request_error as exc:
            raise transport_error(exc, request.url) from exc

    def _exchange(self, request: Any) -> Verdict:
        auth = self._session.auth_for(request)
        response = self._client.send(
            request,
            stream=True,
            auth=self._session.lib.USE_CLIENT_DEFAULT if auth is None else auth,
        )
        try:
            verdict = self._session.check(response)
        except BaseException:
            response.close()
            raise
        if verdict is Verdict.STREAM:
            self._response = response
            self._chunks = response.iter_bytes()
            return verdict
        body = bytearray()
        try:
            if verdict is Verdict.FAIL:
                for part in response.iter_bytes():
                    body += part
                    if len(body) >= ERROR_BODY_LIMIT:
                        break
        finally:
            response.close()
        if verdict is Verdict.FAIL:
            raise response_error(response.status_code, bytes(body), response.headers)
        return verdict

    def _url(self) -> httpx.URL:
        """The URL of the request being read, for an error's message."""
        return self._response.request.url if self._response is not None else self._session.url

    def _reconnect(self, error: TransportError | None) -> None:
        self._close_response()
        session = self._session
        delay = session.dropped(error)
        while delay is not None:
            self._sleep(delay)
            try:
                verdict = self._connect()
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

    def _close_response(self) -> None:
        self._chunks = None
        response, self._response = self._response, None
        if response is not None:
            response.close()


def connect(
    method: str,
    url: httpx.URL | str,
    *,
    client: ClientTypes | None = None,
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
    sleep: Callable[[float], object] = time.sleep,
) -> EventSource:
    """Open an event stream with ``httpx.Client``; use it as ``with``.

    The blocking twin of :func:`aconnect`, with the same arguments and rules
    (``client`` is an ``httpx.Client``, ``sleep`` a blocking sleep).

    Example::

        with connect("GET", "http://127.0.0.1:8000/api/streams/m1",
                     last_event_id="41", until={"done"}) as source:
            for event in source:
                print(event.id, event.data)
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
    return EventSource(session, client, timeout=timeout, sleep=sleep)
