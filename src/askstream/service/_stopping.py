"""A graceful stop of the service: SIGTERM (or Ctrl+C) under any uvicorn.

uvicorn stops accepting connections at once, then waits for the open
responses to end before it runs the lifespan's shutdown; an event stream never
ends by itself. :class:`Stopping` runs beside the app for as long as its
lifespan runs and, once the server is told to exit:

1. refuses new asks (503 with ``Retry-After``) and fails readiness;
2. lets the answers being generated here finish, for up to ``timeout``
   seconds; those still running then are cancelled: each is stored
   ``cancelled`` with its text so far and its stream ends with ``error`` 503;
3. gives the readers of those answers a moment (at most ``catch_up``
   seconds) to read their last event;
4. ends every stream still open (:attr:`streams_must_end`, which the app's
   ``ShutdownMiddleware`` polls) with :data:`RESUME_EVENT`: ``error`` 503 that
   tells the reader to resume with ``Last-Event-ID``. With Redis, another
   instance serves the rest of an answer that instance generates.

The responses then end, so uvicorn goes on to the lifespan shutdown and exits
within ``timeout`` plus about a second, with no cancelled task to log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from ..http._shutdown import uvicorn_should_exit
from ..sse import Event
from ._fanout import Fanout
from ._generation import SHUTDOWN, Generations
from ._health import Dependencies
from ._openai_api import openai_error

__all__ = ["RESUME", "RESUME_EVENT", "Stopping"]

logger = logging.getLogger("askstream.service")

#: What a reader whose stream this instance ends on shutdown is told.
RESUME = "the server is shutting down; resume this stream with Last-Event-ID"
# The same bytes end every stream, /v1/'s too: with OpenAI's error object beside
# our code and message, the openai SDKs raise it instead of taking it for a chunk
# (and then for a complete answer, as no [DONE] follows).
RESUME_EVENT = Event(json.dumps(openai_error(503, RESUME), separators=(",", ":")), event="error")


class Stopping:
    """The service's graceful stop; :meth:`watch` runs in the lifespan.

    ``should_exit`` tells when the server was asked to stop (uvicorn's flag by
    default); ``sleep`` paces the looks at it (a test passes its own).
    """

    def __init__(
        self,
        *,
        timeout: float,
        catch_up: float = 0.25,
        poll_interval: float = 0.1,
        should_exit: Callable[[], bool] = uvicorn_should_exit,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._timeout = timeout
        self._catch_up = catch_up
        self._poll_interval = poll_interval
        self._should_exit = should_exit
        self._sleep = sleep
        self._streams_end = False

    def streams_must_end(self) -> bool:
        """Whether every open stream must end now (polled by ``ShutdownMiddleware``)."""
        return self._streams_end

    async def watch(
        self, generations: Generations, fanout: Fanout, dependencies: Dependencies
    ) -> None:
        """Wait for the server to be told to exit, then stop gracefully."""
        while not self._should_exit():
            await self._sleep(self._poll_interval)
        await self.stop(generations, fanout, dependencies)

    async def stop(
        self, generations: Generations, fanout: Fanout, dependencies: Dependencies
    ) -> None:
        """Steps 1 to 4 of the module's docstring."""
        dependencies.stopping = True
        generations.drain()
        local = generations.message_ids()
        if local:
            logger.info(
                "stopping: %d answers in flight get up to %g s to finish",
                len(local),
                self._timeout,
            )
        if not await generations.wait_idle(self._timeout):
            logger.warning(
                "stopping: %d answers did not finish in %g s; they end as cancelled",
                generations.running,
                self._timeout,
            )
            await generations.cancel_all(SHUTDOWN)
        waited = 0.0
        while fanout.readers(local) and waited < self._catch_up:
            await self._sleep(self._poll_interval / 2)
            waited += self._poll_interval / 2
        self._streams_end = True
