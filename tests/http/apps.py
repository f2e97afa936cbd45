"""The apps tests/http serves with uvicorn in a subprocess.

``app`` streams with askstream; ``rival`` (in rival_apps.py) with sse-starlette,
which is kept apart because importing sse-starlette patches uvicorn's signal
handling. A stream named ``{name}`` records when its source's ``finally`` ran;
``GET /closed/{name}`` tells the tests, and doubles as an unrelated request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Iterator

import pydantic
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from askstream import Event, EventStreamResponse, ShutdownMiddleware, encode

# The events both directions of the interop tests send (rival_apps.py serves
# them with sse-starlette). No id="": sse-starlette cannot write one.
INTEROP_EVENTS = [
    Event("plain"),
    Event('{"delta": "你好"}', event="token", id="1"),
    Event("line one\nline two\n\nafter a blank line", id="2"),
    Event("  leading spaces kept", event="note"),
    Event("emoji 🎉 and a : colon", id="3", retry=2500),
    Event("", event="done", id="4"),
]

# Full-width punctuation on purpose: three bytes each in UTF-8, like the characters.
CHINESE = "流式回答：你好，世界！每个汉字都是三个字节，跨越 TCP 分段也必须完整到达。"  # noqa: RUF001


class Board:
    """What the streams of this process report: closed sources, produced counts, requests,
    credentials."""

    def __init__(self) -> None:
        self.closed: dict[str, float] = {}
        self.produced: dict[str, int] = {}
        self.requests: dict[str, list[str | None]] = {}
        self.credentials: dict[str, list[dict[str, str | None]]] = {}


board = Board()


def _number(request: Request, name: str, default: float | None) -> float | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    return None if value == "none" else float(value)


async def closed(request: Request) -> Response:
    name = request.path_params["name"]
    return JSONResponse({"closed": name in board.closed, "produced": board.produced.get(name, 0)})


async def requests_seen(request: Request) -> Response:
    return JSONResponse({"last_event_ids": board.requests.get(request.path_params["name"], [])})


async def idle(request: Request) -> Response:
    """A source that waits forever."""
    name = request.path_params["name"]

    async def source() -> AsyncIterator[str]:
        try:
            yield "open"
            await asyncio.Event().wait()
        finally:
            board.closed[name] = time.monotonic()

    return EventStreamResponse(
        source(),
        ping=_number(request, "ping", 15.0),
        send_timeout=_number(request, "send_timeout", 30.0),
    )


async def never_awaits(request: Request) -> Response:
    """An endless source that never awaits anything (async or sync)."""
    name = request.path_params["name"]

    async def async_source() -> AsyncIterator[str]:
        try:
            for n in itertools.count():
                board.produced[name] = n
                yield "spin"
        finally:
            board.closed[name] = time.monotonic()

    def sync_source() -> Iterator[str]:
        try:
            for n in itertools.count():
                board.produced[name] = n
                yield "spin"
        finally:
            board.closed[name] = time.monotonic()

    kind = request.query_params.get("kind", "async")
    return EventStreamResponse(async_source() if kind == "async" else sync_source())


async def flood(request: Request) -> Response:
    """An endless source of large events, for a reader that stops reading."""
    name = request.path_params["name"]
    size = int(request.query_params.get("size", "65536"))
    payload = "x" * size

    async def source() -> AsyncIterator[str]:
        try:
            for n in itertools.count(1):
                board.produced[name] = n
                yield payload
                await asyncio.sleep(0)
        finally:
            board.closed[name] = time.monotonic()

    return EventStreamResponse(source(), send_timeout=_number(request, "send_timeout", 1.0))


async def tokens(request: Request) -> Response:
    """``n`` events as fast as possible; ``text`` is repeated as each event's data."""
    n = int(request.query_params.get("n", "10"))
    text = request.query_params.get("text", "token")

    async def source() -> AsyncIterator[str]:
        for _ in range(n):
            yield text

    return EventStreamResponse(source())


async def chinese(request: Request) -> Response:
    """Large events of three-byte characters: TCP cuts them mid-character."""
    repeat = int(request.query_params.get("repeat", "2000"))

    async def source() -> AsyncIterator[Event]:
        for n in range(5):
            yield Event(f"{n}:" + CHINESE * repeat, event="zh", id=str(n))

    return EventStreamResponse(source())


async def boom(request: Request) -> Response:
    async def source() -> AsyncIterator[str]:
        yield "one"
        yield "two"
        raise RuntimeError("secret database password in this message")

    return EventStreamResponse(source())


async def interop(request: Request) -> Response:
    return EventStreamResponse(INTEROP_EVENTS)


class Delta(pydantic.BaseModel):
    """A Pydantic model a source yields: sent with its aliases, as FastAPI would."""

    model_config = pydantic.ConfigDict(serialize_by_alias=True)
    chat_id: str = pydantic.Field(serialization_alias="chatId")
    delta: str


@dataclasses.dataclass
class Usage:
    prompt: int
    completion: int
    models: list[str]


async def objects(request: Request) -> Response:
    async def source() -> AsyncIterator[object]:
        yield Delta(chat_id="c1", delta="Hi")
        yield Usage(prompt=1, completion=2, models=["demo"])
        yield {"plain": "dict"}

    return EventStreamResponse(source())


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def status(request: Request) -> Response:
    code = request.path_params["code"]
    return JSONResponse({"code": code, "message": "LLM request failed"}, status_code=code)


async def plain(request: Request) -> Response:
    return PlainTextResponse("not a stream")


# A resumable log: GET /log/{name}?total=N&drop_after=K&mode=end|abort&retry=ms.
# Each connection sends at most K events after Last-Event-ID, then ends early
# (mode=end) or breaks the connection (mode=abort); after event N comes `done`.


def _log_events(after: int, total: int) -> Iterator[Event]:
    for n in range(after + 1, total + 1):
        yield Event(f"event {n}", id=str(n))
    yield Event("", event="done", id=str(total + 1))


class _Abort(Exception):
    pass


async def _send_then_abort(
    send: Send, events: list[Event], head: bytes, headers: dict[str, str]
) -> None:
    raw = [(b"content-type", b"text/event-stream; charset=utf-8")]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    body = head + b"".join(encode(event) for event in events) + b"data: half an eve"
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise _Abort  # uvicorn closes the connection mid-body: a network error for the reader


class LogApp:
    """A raw ASGI endpoint, so that it can break its connection on purpose."""

    def __init__(self, resume_path: str | None = None) -> None:
        self.resume_path = resume_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        name = request.path_params["name"]
        last_id = request.headers.get("last-event-id")
        board.requests.setdefault(name, []).append(last_id)
        total = int(request.query_params.get("total", "6"))
        drop_after = int(request.query_params.get("drop_after", "2"))
        mode = request.query_params.get("mode", "end")
        retry = request.query_params.get("retry")
        after = int(last_id or 0)
        if after > total:
            await Response(status_code=204)(scope, receive, send)
            return
        events = list(itertools.islice(_log_events(after, total), drop_after))
        head = f"retry: {retry}\n\n".encode() if retry else b""
        headers = {}
        if self.resume_path:
            query = scope["query_string"].decode()
            headers["content-location"] = self.resume_path.format(name=name) + "?" + query
        if mode == "abort" and events[-1].event != "done":
            await _send_then_abort(send, events, head, headers)
            return
        await EventStreamResponse(events, headers=headers, retry=int(retry) if retry else None)(
            scope, receive, send
        )


async def flaky(request: Request) -> Response:
    """One event on the first connection; 503 on every reconnect."""
    name = request.path_params["name"]
    seen = board.requests.setdefault(name, [])
    seen.append(request.headers.get("last-event-id"))
    if len(seen) > 1:
        return JSONResponse({"code": 503, "message": "try later"}, status_code=503)
    return EventStreamResponse([Event("only", id="1")])


async def deaf(request: Request) -> Response:
    """A server that ignores Last-Event-ID: every request gets events 1-3 from the start."""
    board.requests.setdefault(request.path_params["name"], []).append(
        request.headers.get("last-event-id")
    )
    return EventStreamResponse([Event(f"event {n}", id=str(n)) for n in (1, 2, 3)])


async def once(request: Request) -> Response:
    """Two events and an early end; a reconnect (with Last-Event-ID) gets 204."""
    if request.headers.get("last-event-id"):
        return Response(status_code=204)
    return EventStreamResponse([Event("a", id="1"), Event("b", id="2")])


# Credentials on a resume: POST /handoff/{name}?to=URL sends one event and ends
# early, naming URL (any origin) in Content-Location and setting a cookie; a
# request with Last-Event-ID (the resume) gets the rest. Every request's
# credential headers are recorded; GET /credentials/{name} tells the tests.
_CREDENTIALS = ("authorization", "cookie", "last-event-id")


async def handoff(request: Request) -> Response:
    name = request.path_params["name"]
    seen = {key: request.headers.get(key) for key in _CREDENTIALS}
    board.credentials.setdefault(name, []).append(seen)
    if request.headers.get("last-event-id"):
        return EventStreamResponse([Event("second", id="2"), Event("", event="done", id="3")])
    to = request.query_params.get("to", str(request.url.replace(query="")))
    response = EventStreamResponse([Event("first", id="1")], headers={"content-location": to})
    response.set_cookie("session", "s1", httponly=True, samesite="lax")
    return response


async def credentials_seen(request: Request) -> Response:
    return JSONResponse(board.credentials.get(request.path_params["name"], []))


async def _pass_through(request: Request, call_next: RequestResponseEndpoint) -> Response:
    return await call_next(request)


# The same streams behind BaseHTTPMiddleware, whose receive() runs anyio task
# groups (and whose send() waits for the outer response to take each message):
# the response's task awaits that receive() and cancels it when the stream ends.
wrapped = Starlette(
    routes=[Route("/idle/{name}", idle), Route("/tokens", tokens), Route("/boom", boom)],
    middleware=[Middleware(BaseHTTPMiddleware, dispatch=_pass_through)],
)

app = Starlette(
    routes=[
        Mount("/wrapped", wrapped),
        Route("/closed/{name}", closed),
        Route("/requests/{name}", requests_seen),
        Route("/idle/{name}", idle),
        Route("/never-awaits/{name}", never_awaits),
        Route("/flood/{name}", flood),
        Route("/tokens", tokens),
        Route("/chinese", chinese),
        Route("/boom", boom),
        Route("/hello", hello),
        Route("/objects", objects),
        Route("/interop", interop),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/plain", plain),
        Route("/log/{name}", LogApp(), methods=["GET"]),
        Route("/ask/{name}", LogApp(resume_path="/log/{name}"), methods=["POST"]),
        Route("/flaky/{name}", flaky),
        Route("/once", once),
        Route("/deaf/{name}", deaf),
        Route("/handoff/{name}", handoff, methods=["GET", "POST"]),
        Route("/credentials/{name}", credentials_seen),
    ],
    middleware=[Middleware(ShutdownMiddleware)],
)
