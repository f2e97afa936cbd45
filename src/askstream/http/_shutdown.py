"""Ending open event streams when the server begins to shut down.

uvicorn's graceful shutdown waits for every open response to end before it
runs the lifespan shutdown, and an event stream never ends by itself: without
help a worker with one open stream never exits on SIGTERM. ASGI has no message
for "the server is stopping" (uvicorn tried one in 2026 and reverted it), so
:class:`ShutdownMiddleware` watches for it. It patches nothing and keeps no
global state: it runs a small watcher for as long as the app's lifespan runs,
and hands each request a :class:`Shutdown` under the scope key
``"askstream.shutdown"``, where :class:`EventStreamResponse` finds it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..sse import Event, encode
from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["SCOPE_KEY", "Shutdown", "ShutdownMiddleware", "uvicorn_should_exit"]

SCOPE_KEY = "askstream.shutdown"


def uvicorn_should_exit() -> bool:
    """Whether the uvicorn server of this process was asked to exit.

    uvicorn installs a bound method of its ``Server`` as the SIGTERM handler
    while it serves; ``Server.should_exit`` is its documented stop flag. This
    only reads them. It is ``False`` anywhere else (another server, uvicorn in
    a thread), where you call :meth:`ShutdownMiddleware.shutdown` yourself.

    >>> uvicorn_should_exit()
    False
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return getattr(server, "should_exit", False) is True


class Shutdown:
    """A one-shot "the server is stopping" signal that open streams listen to.

    ``final`` is what a stream it ends sends last (encoded; empty: nothing).

    >>> shutdown = Shutdown()
    >>> shutdown.subscribe(lambda: print("stopping"))
    True
    >>> shutdown.set()
    stopping
    """

    __slots__ = ("_callbacks", "_is_set", "final")

    def __init__(self, final: bytes = b"") -> None:
        self._callbacks: set[Callable[[], object]] = set()
        self._is_set = False
        self.final = final

    @property
    def is_set(self) -> bool:
        return self._is_set

    def subscribe(self, callback: Callable[[], object]) -> bool:
        """Call ``callback`` once when the signal is set; ``False`` if it already is."""
        if self._is_set:
            return False
        self._callbacks.add(callback)
        return True

    def unsubscribe(self, callback: Callable[[], object]) -> None:
        self._callbacks.discard(callback)

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()


class ShutdownMiddleware:
    """ASGI middleware: open :class:`EventStreamResponse` streams end when the server stops.

    The streams end cleanly (a reader sees the end of the body, and an
    askstream client reconnects elsewhere), so uvicorn exits promptly on
    SIGTERM instead of waiting for readers that never leave.

    The watcher asks ``should_exit()`` every ``poll_interval`` seconds while
    the app's lifespan runs, so the wrapped app must run the ASGI lifespan
    (Starlette and FastAPI do). The default, :func:`uvicorn_should_exit`,
    recognises uvicorn serving in the main thread. The lifespan's own
    ``lifespan.shutdown`` message, and :meth:`shutdown`, end the streams too.
    With ``final_event``, every stream it ends sends that event last (say, an
    ``error`` that tells the reader to resume elsewhere); without, it just ends.
    ``clock`` paces the watcher (:class:`SystemClock`; a test passes a fake).

    >>> from starlette.applications import Starlette
    >>> from starlette.middleware import Middleware
    >>> app = Starlette(middleware=[Middleware(ShutdownMiddleware)])
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        should_exit: Callable[[], bool] = uvicorn_should_exit,
        poll_interval: float = 0.1,
        final_event: Event | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.app = app
        self.clock = clock
        self.should_exit = should_exit
        self.poll_interval = poll_interval
        self._signal = Shutdown(b"" if final_event is None else encode(final_event))

    def shutdown(self) -> None:
        """End every open stream now, and every stream that opens from now on."""
        self._signal.set()

    @property
    def shutting_down(self) -> bool:
        """Whether the shutdown has begun."""
        return self._signal.is_set

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SCOPE_KEY] = self._signal
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_watch() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self._signal.set()
            return message

        watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            await self.app(scope, receive_and_watch, send)
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])

    async def _watch(self) -> None:
        while not self._signal.is_set:
            if self.should_exit():
                self._signal.set()
                return
            await self.clock.sleep(self.poll_interval)
