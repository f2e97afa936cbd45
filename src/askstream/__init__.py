"""askstream: Server-Sent Events for Python, spec-exact and built for streamed answers.

The names here are the public API; everything else is private.

>>> import askstream
>>> askstream.encode(askstream.Event("Hello"))
b'data: Hello\\n\\n'

Importing ``askstream`` loads the protocol core and the exception tree only:
the HTTP names (which need httpx and Starlette) load when first used, so
``from askstream import UpstreamError`` in an ``except`` costs no web stack.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

from ._exceptions import (
    AskstreamError,
    ConnectError,
    ContentTypeError,
    EventSourceError,
    EventTooLarge,
    InvalidEventId,
    JSONDataError,
    LocalProtocolError,
    ProtocolError,
    ReconnectError,
    RemoteProtocolError,
    ReplayError,
    ResponseError,
    SchemaError,
    ServiceError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    StreamExpired,
    StreamNotFound,
    TransportError,
    TransportTimeout,
    Unavailable,
    UpstreamError,
)
from .sse import Decoder, Event, comment, encode

if TYPE_CHECKING:
    from .http import (
        AsyncEventSource,
        BearerAuth,
        Broadcast,
        Clock,
        EventSource,
        EventStreamResponse,
        Join,
        Reconnect,
        ShutdownMiddleware,
        SystemClock,
        Timer,
        aconnect,
        aiter_events,
        connect,
        iter_events,
        openapi_event_stream,
    )

__version__ = "0.1.0"

__all__ = [
    "AskstreamError",
    "AsyncEventSource",
    "BearerAuth",
    "Broadcast",
    "Clock",
    "ConnectError",
    "ContentTypeError",
    "Decoder",
    "Event",
    "EventSource",
    "EventSourceError",
    "EventStreamResponse",
    "EventTooLarge",
    "InvalidEventId",
    "JSONDataError",
    "Join",
    "LocalProtocolError",
    "ProtocolError",
    "Reconnect",
    "ReconnectError",
    "RemoteProtocolError",
    "ReplayError",
    "ResponseError",
    "SchemaError",
    "ServiceError",
    "ShutdownMiddleware",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
    "SystemClock",
    "Timer",
    "TransportError",
    "TransportTimeout",
    "Unavailable",
    "UpstreamError",
    "__version__",
    "aconnect",
    "aiter_events",
    "comment",
    "connect",
    "encode",
    "iter_events",
    "openapi_event_stream",
]

# The names askstream.http provides, imported on first use (PEP 562).
_HTTP_NAMES = frozenset(
    {
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
    }
)
# Old names that still work, with a DeprecationWarning: old name -> new name.
_RENAMED = {"StreamError": "EventSourceError"}


# Subpackages, so that `import askstream; askstream.http.X` works as it did when
# the root imported askstream.http eagerly.
_SUBPACKAGES = frozenset({"http", "service", "streams", "testing"})


def __getattr__(name: str) -> object:
    if name in _HTTP_NAMES:
        return getattr(importlib.import_module(".http", __name__), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(
            f"askstream.{name} is now askstream.{new}; see askstream's CHANGELOG.md",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _HTTP_NAMES)
