"""uvicorn's httptools protocol with the limits only a connection can enforce.

What uvicorn 0.55 does on its own (measured, docs/deploy.md): no timeout at
all before a request's head is complete (a head trickled one line a second,
a connection that never sends a byte, both stay open for ever), and with
httptools, its default parser, no cap on an unfinished head (five unfinished
20 MB heads held 140 MB). An ASGI middleware never sees a request before its
head is complete, so these two need the protocol:

- ``header_timeout``: a head (the first one, or the next on a kept-alive
  connection) not complete within it gets 408 and the connection ends;
- ``max_head_size``: an unfinished head past it gets 431 and the end;
- ``max_connections``: a connection past it gets 503 (and the end) as soon as
  its request arrives, before the parser or the app sees anything;
- uvicorn's own 400 for a request it cannot parse is the service's JSON.

Every refusal is the service's JSON error. The settings are the app's: its
lifespan publishes them in the lifespan state (:data:`SETTINGS_STATE`), which
uvicorn hands every protocol; with another app, the defaults apply.
"""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ._limits import RETRY_AFTER
from ._settings import Settings

__all__ = ["REFUSED_STATE", "SETTINGS_STATE", "HttpProtocol"]

#: The lifespan state's key under which :func:`create_app` publishes its settings.
SETTINGS_STATE = "askstream.settings"
#: ... and its metrics' ``refused(limit)``, told of each refusal here.
REFUSED_STATE = "askstream.refused"

# After a refusal the connection reads (and drops) what the client still sends
# for a moment before closing: closing with unread bytes makes the kernel send
# a reset, and a client still writing its head would see that, not our answer
# (nginx's lingering_close, for the same reason).
_LINGER = 2.0
_LINGER_BYTES = 1024 * 1024


def _ignore(limit: str) -> None:
    pass


def error_response(
    status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """A whole HTTP/1.1 response ``{"code", "message"}`` that closes the connection."""
    body = json.dumps({"code": status, "message": message}).encode()
    lines = [
        b"HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase.encode()),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        *(name + b": " + value for name, value in headers or []),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a head timeout, a head size cap and a
    connection cap, each refusal the service's JSON error.

    ``askstream serve`` installs it; under plain uvicorn, name it::

        uvicorn --factory askstream.service:create_app --http askstream.service:HttpProtocol
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = app_state.get(SETTINGS_STATE)
        if not isinstance(settings, Settings):
            settings = Settings()
        self._max_head_size = settings.max_head_size
        self._header_timeout = settings.header_timeout
        self._max_connections = settings.max_connections
        refused = app_state.get(REFUSED_STATE)
        self._refused: Callable[[str], object] = refused if callable(refused) else _ignore
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: bytes | None = None  # answered when the request arrives
        self._dropped: int | None = None  # bytes read and dropped since a refusal

    # -- the connection -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # Counted after uvicorn added this one; answered once its request is in,
        # so that the client reads our 503 rather than a reset.
        if len(self.connections) > self._max_connections:
            self._refused("connections")
            self._refusal = error_response(
                503,
                f"the server holds its limit of {self._max_connections} connections; "
                "try again soon",
                [(b"retry-after", str(RETRY_AFTER).encode())],
            )
        self._start_head_timer()  # a connection that never sends a byte is a head too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._dropped is not None:
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.close()
            return
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Still no whole head after this read: all of it was head (but for
            # a previous request's tail in the same read, rare and small).
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_size:
                self._refused("head_size")
                self._refuse(
                    error_response(431, f"the request head is over {self._max_head_size} bytes")
                )

    def send_400_response(self, msg: str) -> None:
        self._stop_head_timer()
        self._refuse(error_response(400, msg))

    # -- the parser's callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    # -- refusing ------------------------------------------------------------

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still going: no room for a 408.
            self.transport.close()
            return
        self._refused("head_timeout")
        self._refuse(
            error_response(
                408, f"the request head did not arrive within {self._header_timeout:g} s"
            )
        )

    def _refuse(self, response: bytes) -> None:
        if self._dropped is not None or self.transport.is_closing():
            return
        # No keep-alive timer runs here: uvicorn stops it on every read, and a
        # fresh connection has none.
        self._stop_head_timer()
        self.transport.write(response)
        self._dropped = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then FIN; the client may finish sending
            self.loop.call_later(_LINGER, self.transport.close)
        else:  # TLS: no half close
            self.transport.close()
