"""The ``text/event-stream`` protocol, sans I/O: bytes in, events out, and back.

Nothing here touches a socket or an event loop, so the same code serves the
ASGI response, the sync and async clients, and any other transport.

>>> from askstream.sse import Decoder, Event, encode
>>> decoder = Decoder()
>>> decoder.feed(encode(Event("Hello", id="1")) + b"data: wor")
[Event(data='Hello', event='message', id='1', retry=None)]
>>> decoder.feed(b"ld\\n\\n")
[Event(data='world', event='message', id='1', retry=None)]
"""

from ._decoder import Decoder
from ._encoder import comment, encode
from ._event import Event

__all__ = ["Decoder", "Event", "comment", "encode"]
