"""``aiter_events`` / ``iter_events``: the events of a response the caller already has.

For code that makes its own request (its own client, retries, hooks, an SDK's
raw response) and wants only the parsing: no reconnect, no ``Last-Event-ID``.
``connect`` / ``aconnect`` do the whole job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from .._exceptions import ContentTypeError
from ..sse import Decoder, Event
from ..sse._decoder import DEFAULT_MAX_EVENT_SIZE
from ._flavor import ResponseTypes, library_of
from ._session import ERROR_BODY_LIMIT, is_event_stream, response_error, transport_error

__all__ = ["aiter_events", "iter_events"]


def _decoder(response: ResponseTypes, body: bytes, max_event_size: int | None) -> Decoder | None:
    """The decoder for ``response``'s events; ``None``: a 204, a stream with no
    events (WHATWG HTML §9.2.3). Raises for a response that is not a readable
    stream (``body``: what was read of a non-2xx response's body).
    """
    status = response.status_code
    if status == 204:
        return None
    if not 200 <= status < 300:
        raise response_error(status, body)
    content_type = response.headers.get("content-type", "")
    if not is_event_stream(content_type):
        raise ContentTypeError(content_type)
    return Decoder(max_event_size=max_event_size)


async def aiter_events(
    response: ResponseTypes, *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
) -> AsyncIterator[Event]:
    """The events of an ``httpx`` (or ``httpx2``) response, read as it streams.

    Like httpx-sse's ``aiter_sse``, over askstream's decoder. A non-2xx
    response raises :class:`~askstream.ResponseError` (its body read for the
    server's ``{"code", "message"}``), a 2xx that is not ``text/event-stream``
    :class:`~askstream.ContentTypeError`; a 204 yields nothing. A connection
    that breaks raises :class:`~askstream.TransportError` (httpx's error as
    the ``__cause__``). Nothing reconnects: use :func:`aconnect` for that.
    The response stays the caller's to close.

    Example::

        async with httpx.AsyncClient() as client:
            async with client.stream("GET", url) as response:
                async for event in askstream.aiter_events(response):
                    print(event.event, event.json())
    """
    request_error: type[Exception] = library_of(response).RequestError
    status = response.status_code
    try:
        body = bytearray()
        if not 200 <= status < 300:
            async for part in response.aiter_bytes():
                body += part
                if len(body) >= ERROR_BODY_LIMIT:
                    break
        decoder = _decoder(response, bytes(body), max_event_size)
        if decoder is None:
            return
        async for chunk in response.aiter_bytes():
            for event in decoder.feed(chunk):
                yield event
    except request_error as exc:
        raise transport_error(exc, response.request.url) from exc


def iter_events(
    response: ResponseTypes, *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
) -> Iterator[Event]:
    """The events of a sync ``httpx`` (or ``httpx2``) response: :func:`aiter_events`'s twin.

    Example::

        with httpx.stream("GET", url) as response:
            for event in askstream.iter_events(response):
                print(event.data)
    """
    request_error: type[Exception] = library_of(response).RequestError
    status = response.status_code
    try:
        body = bytearray()
        if not 200 <= status < 300:
            for part in response.iter_bytes():
                body += part
                if len(body) >= ERROR_BODY_LIMIT:
                    break
        decoder = _decoder(response, bytes(body), max_event_size)
        if decoder is None:
            return
        for chunk in response.iter_bytes():
            yield from decoder.feed(chunk)
    except request_error as exc:
        raise transport_error(exc, response.request.url) from exc
