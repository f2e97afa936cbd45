"""askstream: Server-Sent Events for Python, spec-exact and built for streamed answers.

The names here are the public API; everything else is private.

>>> import askstream
>>> askstream.encode(askstream.Event("Hello"))
b'data: Hello\\n\\n'
"""

from ._exceptions import (
    AskstreamError,
    ContentTypeError,
    EventTooLarge,
    LocalProtocolError,
    ProtocolError,
    ReconnectError,
    RemoteProtocolError,
    ResponseError,
    StreamError,
)
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
    connect,
)
from .sse import Decoder, Event, comment, encode

__version__ = "0.1.0"

__all__ = [
    "AskstreamError",
    "AsyncEventSource",
    "BearerAuth",
    "Broadcast",
    "Clock",
    "ContentTypeError",
    "Decoder",
    "Event",
    "EventSource",
    "EventStreamResponse",
    "EventTooLarge",
    "Join",
    "LocalProtocolError",
    "ProtocolError",
    "Reconnect",
    "ReconnectError",
    "RemoteProtocolError",
    "ResponseError",
    "ShutdownMiddleware",
    "StreamError",
    "SystemClock",
    "Timer",
    "__version__",
    "aconnect",
    "comment",
    "connect",
    "encode",
]
