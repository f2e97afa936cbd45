"""A stream's body, handed out of the middleware stack once its head is out.

An event stream lasts as long as its reader stays, and everything its
``await`` chain holds lives as long: each middleware's suspended frame and
the closures of its ``send`` wrappers, a framework's request objects, its
routing frames and exit stacks. Behind the service's gate and FastAPI's
routing that was ~19 KiB per reader, half again the stream itself
(bench/bench_resume.py, "memory per reader").

:class:`Handoff` cuts that chain. It puts a :class:`Slot` in the scope of
each request; an :class:`~askstream.http.EventStreamResponse` that finds one
sends its ``http.response.start`` through the ``send`` it was given (so every
middleware still adds its headers and sees the response begin), then leaves
its body in the slot and returns at once. The stack unwinds, its frames and
objects are freed, and :class:`Handoff` runs the body with the ``send`` and
``receive`` it was itself given, in the context variables the handler saw.

So the middleware inside :class:`Handoff` see a stream's request end when its
head has gone out: only middleware that leave a stream's body alone once its
start has passed may sit inside it (headers, checks, identity, routing; not a
body rewriter such as gzip), and whatever must see the stream's real end (a
cap on open requests) sits outside it or asks :func:`at_end`. HEAD requests are not handed off.
A middleware that relays the response from a task of its own
(``BaseHTTPMiddleware``) ends it before the body could run: the body is then
closed and the mistake logged, rather than written after the end.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SCOPE_KEY", "Body", "Handoff", "Slot", "at_end", "claim", "hand_off", "run"]

logger = logging.getLogger("askstream")

#: The scope key under which :class:`Handoff` leaves its slot.
SCOPE_KEY = "askstream.handoff"


Body = Coroutine[Any, Any, None]
_UNSET = object()


class Slot:
    """Where a response leaves its body for :class:`Handoff` to run."""

    __slots__ = ("body", "context", "ended", "ends", "receive", "send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.body: Body | None = None
        self.context: contextvars.Context | None = None
        self.ended = False  # a response ended before the app returned
        self.ends: list[Callable[[], object]] = []  # at_end()'s callbacks

    def end(self) -> None:
        """The body is over (or will never run): call what :func:`at_end` was given."""
        ends, self.ends = self.ends, []
        for callback in ends:
            callback()

    async def watch(self, message: Message) -> None:
        """The app's ``send``: the server's, noting whether a response ended."""
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self.send(message)


def claim(scope: Scope) -> Slot | None:
    """The slot of this request if its body may be handed off (once only), else ``None``."""
    slot = scope.get(SCOPE_KEY)
    if type(slot) is not Slot or slot.body is not None:
        return None  # one body per request: a second response runs in place
    return slot


def at_end(scope: Scope, callback: Callable[[], object]) -> bool:
    """Call ``callback`` when this request's handed-off body ends: ``True``; or
    ``False`` if its response was not handed off (it is over: call it yourself).

    For a middleware inside the handoff that must see a stream's real end (a
    count of requests in progress, a duration), from its ``finally``.
    """
    slot = scope.get(SCOPE_KEY)
    if type(slot) is not Slot or slot.body is None:
        return False
    slot.ends.append(callback)
    return True


def hand_off(slot: Slot, body: Body) -> None:
    """Leave ``body`` for :class:`Handoff` to run once the stack has unwound."""
    slot.body = body
    # The handler's context variables (a request id, say) as they are now:
    # middleware that set them may reset them on their way out.
    slot.context = contextvars.copy_context()


async def run(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> Slot | None:
    """Run ``app`` with a slot in its scope: the slot, if a response left its body there.

    The caller then awaits ``slot.body`` (once ``app`` has returned, so in a
    frame of its own, the outermost it has) and calls ``slot.end()`` after it,
    whatever happens. Context variables the handler saw are set again in the
    caller's task: middleware that reset them on their way out (a request id)
    still name the stream's log lines.
    """
    if scope["type"] != "http" or scope["method"] == "HEAD":
        await app(scope, receive, send)
        return None
    slot = Slot(receive, send)
    try:
        # The app gets a scope of its own: what it puts there (a framework's
        # exit stacks, its route, the path parameters) goes with it.
        await app({**scope, SCOPE_KEY: slot}, receive, slot.watch)
    except BaseException:
        if slot.body is not None:
            slot.body.close()  # never started: nothing of it runs
            slot.end()
        raise
    body, context = slot.body, slot.context
    if body is None:
        return None
    slot.context = None
    if slot.ended:
        # A middleware finished the response itself (BaseHTTPMiddleware
        # relays a response from its own task, and ends it when the handler
        # returns): the body has nowhere to go.
        body.close()
        slot.end()
        logger.error(
            "%s %s: the response ended before its event stream ran; a middleware "
            "inside the handoff must pass the stream on as plain ASGI (see _handoff.py)",
            scope["method"],
            scope["path"],
        )
        return None
    if context is not None:
        for var, value in context.items():
            if var.get(_UNSET) is not value:  # a set() of the same value still copies
                var.set(value)
    return slot


class Handoff:
    """ASGI middleware: run a stream's body here, after the app inside has returned.

    See the module's docstring for what may sit inside it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = await run(self.app, scope, receive, send)
        if slot is not None:
            try:
                assert slot.body is not None
                await slot.body
            finally:
                slot.end()
