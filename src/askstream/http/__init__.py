"""The wire: an ASGI event-stream response and httpx clients for event streams.

Server side, :class:`EventStreamResponse` streams a source's events from any
Starlette or FastAPI endpoint, and :class:`ShutdownMiddleware` ends open streams
when the server stops, and a :class:`Broadcast` writes one source's events to
many streams, each encoded once. Client side, :func:`aconnect` and :func:`connect` read a
stream with httpx (or httpx2) and reconnect where it broke off; :class:`BearerAuth` passes a
token; :func:`aiter_events` and :func:`iter_events` read the events of a response you
already have; :func:`openapi_event_stream` describes a stream in an OpenAPI document.
The response's timers read a :class:`Clock` (:class:`SystemClock` unless a test
passes ``askstream.testing.FakeClock``).

>>> from askstream.http import EventStreamResponse
>>> response = EventStreamResponse(["Hello", "world"])
>>> response.headers["content-type"]
'text/event-stream; charset=utf-8'
"""

from ._async_client import AsyncEventSource, aconnect
from ._auth import BearerAuth
from ._broadcast import Broadcast, Join
from ._clock import Clock, SystemClock, Timer
from ._iter import aiter_events, iter_events
from ._openapi import openapi_event_stream
from ._reconnect import Reconnect
from ._response import EventStreamResponse
from ._shutdown import ShutdownMiddleware
from ._sync_client import EventSource, connect

__all__ = [
    "AsyncEventSource",
    "BearerAuth",
    "Broadcast",
    "Clock",
    "EventSource",
    "EventStreamResponse",
    "Join",
    "Reconnect",
    "ShutdownMiddleware",
    "SystemClock",
    "Timer",
    "aconnect",
    "aiter_events",
    "connect",
    "iter_events",
    "openapi_event_stream",
]
