"""The public API as users write it: type-checked by ``mypy --strict``, never run.

``./dev test`` runs ``mypy --strict tests/typing``: a change to a public
signature that breaks code like this fails the build even when every runtime
test still passes. Nothing here is called; the functions exist to be checked.
``assert_type`` pins what the API promises to return.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from typing import Any, Literal, assert_type

import httpx
import httpx2
import pydantic
from fastapi import FastAPI
from starlette.applications import Starlette

import askstream
from askstream.service import (
    Backend,
    ChatMessage,
    Chunk,
    DemoBackend,
    ModelOptions,
    OpenAIBackend,
    RetryPolicy,
    Settings,
    UpstreamError,
    create_app,
)
from askstream.sse import Decoder, Event, comment, encode
from askstream.streams import MemoryStore, RedisStore, Store, StreamExpired, StreamNotFound
from askstream.testing import FakeClock, FakeUpstream, ServerProcess, free_port, require


def the_protocol_core(chunks: Sequence[bytes]) -> list[str]:
    wire = encode(Event(data="line one\nline two", event="delta", id="7", retry=3000))
    wire += comment("keep-alive")
    decoder = Decoder(last_event_id="6", max_event_size=1 << 20)
    events = [event for chunk in [wire, *chunks] for event in decoder.feed(chunk)]
    assert_type(decoder.last_event_id, str)
    assert_type(decoder.retry, int | None)
    return [f"{event.id}:{event.event}:{event.data}" for event in events]


def serving_from_fastapi() -> FastAPI:
    app = FastAPI()

    @app.post("/api/ask")
    async def ask() -> askstream.EventStreamResponse:
        async def answer() -> AsyncIterator[Event | str | dict[str, str]]:
            yield Event(data='{"delta": "Hel"}', id="1")
            yield "lo"  # data
            yield {"delta": "!"}  # JSON data

        return askstream.EventStreamResponse(
            answer(), ping=15, retry=2000, send_timeout=30, on_disconnect="drain"
        )

    @app.get("/api/feed")
    def feed() -> askstream.EventStreamResponse:
        def numbers(last_event_id: str | None) -> Iterator[Event]:
            start = int(last_event_id or 0)
            for n in range(start + 1, start + 4):
                yield Event(data=str(n), id=str(n))

        return askstream.EventStreamResponse(numbers, headers={"X-Feed": "numbers"})

    return app


def one_source_to_many_readers() -> askstream.EventStreamResponse:
    log: list[Event] = []
    hub = askstream.Broadcast()
    log.append(Event("first", id="1"))
    hub.publish(len(log), log[-1])

    async def follow(after: int) -> AsyncIterator[Event | askstream.Join]:
        position = after
        while position < len(log):
            position += 1
            yield log[position - 1]
        if not hub.closed:
            join = hub.join(position)
            yield join
            assert_type(join.position, int)

    return askstream.EventStreamResponse(follow(0))


def serving_plain_asgi() -> Starlette:
    app = Starlette()
    app.add_middleware(askstream.ShutdownMiddleware)
    return app


async def reading_asynchronously(url: str, token: str) -> str:
    answer = ""
    body = {"chatId": None, "question": "Hello?"}
    try:
        async with askstream.aconnect(
            "POST",
            url,
            json=body,
            auth=askstream.BearerAuth(token),
            until={"done", "error"},
            reconnect=askstream.Reconnect(max_attempts=3, delay=0.5, jitter=0.1),
        ) as stream:
            assert_type(stream, askstream.AsyncEventSource)
            async for event in stream:
                assert_type(event, Event)
                if event.event == "message":
                    answer += json.loads(event.data)["delta"]
    except askstream.ResponseError as error:
        return f"{error.status} {error.code}: {error.message}"
    except askstream.AskstreamError as error:
        return str(error)
    return answer


def one_except_for_a_client_call(url: str) -> str:
    """Every failure of a client call is an AskstreamError, httpx's kept as the cause."""
    try:
        with askstream.connect("GET", url, until={"done"}) as source:
            return "".join(event.data for event in source)
    except askstream.ResponseError as error:
        assert_type(error.status, int)
        return error.message
    except askstream.TransportTimeout as error:
        assert_type(error.phase, Literal["connect", "read", "write", "pool"])
        return f"timed out ({error.phase})"
    except askstream.ConnectError as error:
        return f"no connection: {error.__cause__}"
    except askstream.EventSourceError as error:  # content type, a drop, reconnects used up
        return str(error)


def catching_by_layer(error: askstream.AskstreamError) -> str:
    """The branch names the layer that failed."""
    if isinstance(error, askstream.ProtocolError):
        return "the text/event-stream format"
    if isinstance(error, askstream.StoreError):
        return f"the answer log, stream {error.stream_id}"
    if isinstance(error, askstream.ServiceError):
        return f"the service: {error.status} {error.code} {error.message}"
    return "the HTTP client" if isinstance(error, askstream.EventSourceError) else "other"


def reading_synchronously(client: httpx.Client, url: str) -> list[Event]:
    with askstream.connect("GET", url, client=client, last_event_id="41", reconnect=None) as source:
        assert_type(source, askstream.EventSource)
        return list(source)


def reading_with_httpxs_auth_forms(url: str) -> None:
    auth: httpx.Auth = askstream.BearerAuth("token")
    with askstream.connect("GET", url, auth=auth) as source:
        list(source)
    with askstream.connect("GET", url, auth=("user", "password")) as source:
        list(source)
    with askstream.connect("GET", url, auth=httpx.DigestAuth("user", "password")) as source:
        list(source)


def reading_with_cookies_and_a_timeout(url: str) -> None:
    with askstream.connect(
        "GET", url, cookies={"session": "s1"}, timeout=httpx.Timeout(5.0, read=None)
    ) as source:
        list(source)


async def reading_with_an_httpx2_client(url: str) -> list[str]:
    async with (
        httpx2.AsyncClient() as client,
        askstream.aconnect(
            "GET", url, client=client, auth=httpx2.BasicAuth("u", "p"), until={"done"}
        ) as source,
    ):
        return [event.data async for event in source]


def reading_with_a_sync_httpx2_client(client: httpx2.Client, url: str) -> list[Event]:
    with askstream.connect("GET", url, client=client, timeout=httpx2.Timeout(5.0)) as source:
        return list(source)


async def events_of_a_response_i_already_have(client: httpx.AsyncClient, url: str) -> list[object]:
    async with client.stream("GET", url) as response:
        events = askstream.aiter_events(response, max_event_size=1 << 16)
        assert_type(events, AsyncIterator[Event])
        return [event.json() async for event in events]


def events_of_a_sync_response(url: str) -> list[str]:
    with httpx2.stream("GET", url) as response:
        return [event.data for event in askstream.iter_events(response)]


def json_data_and_replays(url: str) -> str:
    try:
        with askstream.connect("GET", url) as source:
            return str([event.json() for event in source])
    except askstream.JSONDataError as error:
        assert_type(error.data, str)
        return error.data
    except askstream.ReplayError as error:
        assert_type(error.event_id, str)
        return error.event_id


class Delta(pydantic.BaseModel):
    delta: str


@dataclasses.dataclass
class Usage:
    tokens: int


def describing_a_stream_in_openapi() -> FastAPI:
    app = FastAPI()
    doc = askstream.openapi_event_stream(
        {"message": Delta, "done": {"type": "object"}, "ping": None}, with_id=True
    )
    assert_type(doc, dict[str, Any])

    @app.get("/feed", responses={200: doc})
    async def feed() -> askstream.EventStreamResponse:
        return yielding_models_and_dataclasses()

    return app


def yielding_models_and_dataclasses() -> askstream.EventStreamResponse:
    async def answer() -> AsyncIterator[Delta | Usage | dict[str, str]]:
        yield Delta(delta="Hi")
        yield Usage(tokens=2)
        yield {"delta": "!"}

    return askstream.EventStreamResponse(answer())


async def a_store(store: Store) -> list[str]:
    await store.create("m1", on_cancel=lambda: None)
    event = await store.append("m1", '{"delta": "Hi"}')
    assert_type(event, Event)
    await store.finish("m1", "complete")
    try:
        return [e.data async for e in store.follow("m1", after=event.id)]
    except (StreamNotFound, StreamExpired):
        return []


async def both_stores() -> None:
    await a_store(MemoryStore(retention=60.0))
    async with RedisStore("redis://127.0.0.1:6379/0", prefix="app:", retention=3600.0) as redis:
        await a_store(redis)


class EchoBackend:
    """A back end of one's own: any class with ``stream`` and ``aclose``."""

    async def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        if not messages:
            raise UpstreamError("nothing to answer")
        yield Chunk(messages[-1]["content"])
        yield Chunk(finish_reason="stop")

    async def aclose(self) -> None:
        return None


async def the_service() -> FastAPI:
    backend: Backend = EchoBackend()
    async with aclosing(DemoBackend(delay=0).stream([{"role": "user", "content": "Hi"}])) as chunks:
        async for chunk in chunks:
            assert_type(chunk.delta, str)
    app = create_app(Settings.from_env(), store=MemoryStore(), backend=backend)
    assert_type(app, FastAPI)
    patient = OpenAIBackend(
        "https://example.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
        "gpt-4o",
        retry=RetryPolicy(attempts=5, base=1.0, cap=30.0),
    )
    async with aclosing(patient.stream([{"role": "user", "content": "Hi"}])) as pieces:
        async for piece in pieces:
            assert_type(piece.reasoning, str)
    await patient.aclose()
    return app


def the_test_helpers() -> None:
    require(True, "Redis at 127.0.0.1:6379")
    upstream = ServerProcess("askstream.testing:FakeUpstream.from_env", factory=True)
    assert_type(free_port(), int)
    assert_type(FakeUpstream.from_env({"ASKSTREAM_FAKE_TOKENS": "3"}), FakeUpstream)
    upstream.stop()


async def time_in_tests() -> None:
    clock = FakeClock()
    response = askstream.EventStreamResponse(["x"], ping=15.0, clock=clock)
    assert_type(response.clock, askstream.Clock)
    timer = clock.call_later(1.0, lambda: None)
    timer.cancel()
    await clock.advance(15.0)
    await clock.wait_sleepers(1)
    assert_type(clock.now(), float)
    real: askstream.Clock = askstream.SystemClock()
    assert_type(real.call_later(0.5, print), askstream.Timer)
