"""The LLM back ends: OpenAIBackend against the fake upstream as a real server (read
by the lean client and by httpx alike), the demo model with a fake sleep, and the
chunk parsing on its own (no network)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from askstream.service import (
    ChatMessage,
    Chunk,
    DemoBackend,
    ModelOptions,
    OpenAIBackend,
    RetryPolicy,
    UpstreamError,
    Usage,
)
from askstream.service._demo import demo_answer
from askstream.service._openai import completions_url
from askstream.sse import Event
from askstream.testing import ServerProcess, free_port

from .conftest import CHINESE

pytestmark = pytest.mark.anyio

HI: list[ChatMessage] = [{"role": "user", "content": "Hi there"}]


async def collect(backend: OpenAIBackend | DemoBackend, messages: list[ChatMessage]) -> list[Chunk]:
    async with aclosing(backend.stream(messages)) as chunks:
        return [chunk async for chunk in chunks]


@pytest.fixture(params=["lean", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which client reads the upstream: the lean one (``_upstream.py``, the default)
    or httpx (a ``client`` given, or a proxy): every test holds for both."""
    return str(request.param)


@pytest.fixture
async def backend(upstream: ServerProcess, transport: str) -> AsyncIterator[OpenAIBackend]:
    backend = make(upstream.url + "/v1", "fake", transport, read_timeout=2.0)
    yield backend
    await close(backend)


def make(url: str, model: str, transport: str, **kwargs: Any) -> OpenAIBackend:
    if transport == "httpx":
        kwargs["client"] = httpx.AsyncClient()  # closed by the test, not the back end
    backend = OpenAIBackend(url, model, **kwargs)
    assert (backend._upstream is None) == (transport == "httpx")
    return backend


async def close(backend: OpenAIBackend) -> None:
    await backend.aclose()
    if backend._upstream is None:
        await backend._client.aclose()


@pytest.fixture
def with_model(upstream: ServerProcess, transport: str) -> Callable[..., OpenAIBackend]:
    def with_model(model: str, **kwargs: Any) -> OpenAIBackend:
        return make(upstream.url + "/v1", model, transport, **kwargs)

    return with_model


async def test_it_streams_the_content_and_the_finish_reason(backend: OpenAIBackend) -> None:
    chunks = await collect(backend, HI)
    assert "".join(c.delta for c in chunks) == "Echo: Hi there"
    assert all(c.delta for c in chunks[:-1])  # the empty role-only chunk is skipped
    # The usage the upstream sends after the finish reason rides on the last chunk:
    # the fake counts the prompt's words and the pieces it sent.
    assert chunks[-1] == Chunk("", "stop", Usage(prompt_tokens=2, completion_tokens=5))


async def test_temperature_and_max_tokens_reach_the_upstream(
    backend: OpenAIBackend, upstream: ServerProcess
) -> None:
    question = f"Count to ten {uuid.uuid4().hex}"
    messages: list[ChatMessage] = [{"role": "user", "content": question}]
    async with aclosing(
        backend.stream(messages, ModelOptions(temperature=0.25, max_tokens=2))
    ) as stream:
        chunks = [chunk async for chunk in stream]
    assert "".join(c.delta for c in chunks) == "Echo:"  # two pieces: "Echo", ":"
    assert chunks[-1].finish_reason == "length"
    async with httpx.AsyncClient() as client:
        seen = (await client.get(upstream.url + "/requests")).json()
    sent = next(r for r in seen if r["messages"][-1]["content"] == question)
    assert sent["temperature"] == 0.25
    assert sent["maxTokens"] == 2
    assert sent["streamOptions"] == {"include_usage": True}


async def test_without_options_nothing_is_sent_for_them(
    backend: OpenAIBackend, upstream: ServerProcess
) -> None:
    question = f"Plain {uuid.uuid4().hex}"
    await collect(backend, [{"role": "user", "content": question}])
    async with httpx.AsyncClient() as client:
        seen = (await client.get(upstream.url + "/requests")).json()
    sent = next(r for r in seen if r["messages"][-1]["content"] == question)
    assert (sent["temperature"], sent["maxTokens"]) == (None, None)


async def test_chinese_pieces_survive_the_round_trip(backend: OpenAIBackend) -> None:
    question = CHINESE
    chunks = await collect(backend, [{"role": "user", "content": question}])
    assert "".join(c.delta for c in chunks) == f"Echo: {question}"


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("fake-fail", ["the LLM back end failed", "the fake upstream failed mid-answer"]),
        ("fake-drop", ["ended the answer without finishing"]),
        ("fake-refuse", ["HTTP 503", "the fake upstream refuses"]),
    ],
)
async def test_upstream_failures_are_upstream_errors(
    with_model: Callable[..., OpenAIBackend], model: str, words: list[str]
) -> None:
    backend = with_model(model, retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(UpstreamError) as caught:
            await collect(backend, HI)
    finally:
        await close(backend)
    assert caught.value.status == caught.value.code == 502
    for word in words:
        assert word in caught.value.message


async def test_an_unreachable_upstream_is_an_upstream_error(transport: str) -> None:
    backend = make(f"http://127.0.0.1:{free_port()}", "m", transport, retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(UpstreamError, match="cannot reach the LLM back end"):
            await collect(backend, HI)
    finally:
        await close(backend)


async def test_a_silent_upstream_hits_the_read_timeout(
    with_model: Callable[..., OpenAIBackend],
) -> None:
    backend = with_model("fake-slow", read_timeout=0.05)
    try:
        with pytest.raises(UpstreamError, match=r"sent nothing for 0\.05 s"):
            await collect(backend, HI)
    finally:
        await close(backend)


async def read_until_it_fails(backend: OpenAIBackend, pieces: list[str]) -> None:
    async with aclosing(backend.stream(HI)) as chunks:
        async for chunk in chunks:
            pieces.append(chunk.delta)  # noqa: PERF401 (what came before the failure counts)


async def test_a_stalling_upstream_goes_quiet_mid_answer_then_finishes(
    with_model: Callable[..., OpenAIBackend],
) -> None:
    # 0.2 s: a hundred times the pause between pieces, below the stall (0.3 s).
    hasty = with_model("fake-stall", read_timeout=0.2)
    patient = with_model("fake-stall")
    pieces: list[str] = []
    try:
        with pytest.raises(UpstreamError, match=r"sent nothing for 0\.2 s"):
            await read_until_it_fails(hasty, pieces)
        whole = await collect(patient, HI)
    finally:
        await close(hasty)
        await close(patient)
    assert pieces == ["Echo", ":", " Hi"]  # the silence comes after fail_after (3) pieces
    assert "".join(c.delta for c in whole) == "Echo: Hi there"


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen backlog is full: new connections hang in SYN_SENT."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_an_upstream_that_never_accepts_hits_the_connect_timeout(
    full_backlog: int, transport: str
) -> None:
    backend = make(
        f"http://127.0.0.1:{full_backlog}",
        "m",
        transport,
        connect_timeout=0.2,
        retry=RetryPolicy(attempts=1),
    )
    try:
        with pytest.raises(UpstreamError, match=r"did not accept a connection within 0\.2 s"):
            await collect(backend, HI)
    finally:
        await close(backend)


async def test_closing_the_stream_early_closes_the_upstream_request_at_once(
    upstream: ServerProcess, with_model: Callable[..., OpenAIBackend], transport: str
) -> None:
    question = f"close me early please ({transport})"
    backend = with_model("fake-slow")
    try:
        async with aclosing(backend.stream([{"role": "user", "content": question}])) as chunks:
            await anext(chunks)
    finally:
        await close(backend)
    async with httpx.AsyncClient() as client:
        for _ in range(50):  # the upstream notes the disconnect within a moment
            records = (await client.get(upstream.url + "/requests")).json()
            record = next(r for r in records if r["messages"][-1]["content"] == question)
            if record["outcome"] != "open":
                break
            await asyncio.sleep(0.01)
    assert record["outcome"] == "disconnected"
    assert record["sent"] == record["sentBeforeDisconnect"] == 1  # no drain after the first


async def test_the_api_key_is_sent_as_a_bearer_token(transport: str) -> None:
    with ServerProcess(
        "askstream.testing:FakeUpstream.from_env",
        factory=True,
        env={"ASKSTREAM_FAKE_API_KEY": "sk-test"},
    ) as guarded:
        good = make(guarded.url, "fake", transport, api_key="sk-test")
        bad = make(guarded.url, "fake", transport, api_key="sk-nope")
        try:
            assert (await collect(good, HI))[-1].finish_reason == "stop"
            with pytest.raises(UpstreamError, match="HTTP 401: Incorrect API key provided"):
                await collect(bad, HI)
        finally:
            await close(good)
            await close(bad)


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://localhost:11434", "http://localhost:11434/v1/chat/completions"),
        ("http://localhost:11434/", "http://localhost:11434/v1/chat/completions"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
        ("https://h/v1beta/openai", "https://h/v1beta/openai/chat/completions"),
        ("http://h:8080/v1/chat/completions", "http://h:8080/v1/chat/completions"),
        # Azure OpenAI: the version is a query, which stays after the path.
        (
            "https://r.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21",
            "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
            "?api-version=2024-10-21",
        ),
        (
            "https://r.openai.azure.com/openai/v1/?api-version=preview",
            "https://r.openai.azure.com/openai/v1/chat/completions?api-version=preview",
        ),
        ("http://h:1/?a=1&b=2", "http://h:1/v1/chat/completions?a=1&b=2"),
        ("http://h/v1/chat/completions?x=y", "http://h/v1/chat/completions?x=y"),
        ("http://h/v1#frag", "http://h/v1/chat/completions"),
    ],
)
def test_the_configured_url_names_the_chat_completions_endpoint(url: str, endpoint: str) -> None:
    assert completions_url(url) == endpoint


# -- parsing chunks, no network ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "chunk"),
    [
        ('{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}', Chunk("Hi")),
        ('{"choices":[{"delta":{"role":"assistant"}}]}', Chunk("")),
        ('{"choices":[{"delta":{},"finish_reason":"length"}]}', Chunk("", "length")),
        ('{"choices":[]}', Chunk("")),  # OpenAI's usage-only last chunk
        ('{"choices":[{"delta":{"content":null}}]}', Chunk("")),
        (
            '{"choices":[{"delta":{"content":null,"reasoning_content":"Hmm, "}}]}',
            Chunk(reasoning="Hmm, "),
        ),
        ('{"choices":[{"delta":{"reasoning":"Let me see"}}]}', Chunk(reasoning="Let me see")),
        (
            '{"choices":[{"delta":{"content":"A","reasoning_content":""}}]}',
            Chunk("A"),
        ),
    ],
    ids=[
        "content",
        "role-only",
        "finish",
        "no-choices",
        "null-content",
        "reasoning_content",
        "reasoning",
        "empty-reasoning",
    ],
)
def test_chunks_are_read_from_openai_payloads(data: str, chunk: Chunk) -> None:
    assert OpenAIBackend("http://h", "m")._chunk(Event(data)) == chunk


def test_done_marks_the_end() -> None:
    assert OpenAIBackend("http://h", "m")._chunk(Event("[DONE]")) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            '{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}',
            "quota exceeded",
        ),
        ('{"object": "error", "message": "model not loaded", "code": 400}', "model not loaded"),
        ('{"error": "plain text error"}', "plain text error"),
        ("not json at all", "not JSON"),
        ('{"choices": "nope"}', "unknown shape"),
    ],
    ids=["openai", "vllm", "string", "not-json", "bad-shape"],
)
def test_error_payloads_are_upstream_errors(data: str, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        OpenAIBackend("http://h", "m")._chunk(Event(data))


# -- the demo model -----------------------------------------------------------------


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_the_demo_streams_its_answer_word_by_word_with_the_delay() -> None:
    sleep = FakeSleep()
    chunks = await collect(DemoBackend(delay=0.03, sleep=sleep), HI)
    text = "".join(c.delta for c in chunks)
    assert text == demo_answer(HI)
    pieces = len(chunks) - 1
    # Its usage counts pieces: the prompt's two words, the answer's pieces.
    assert chunks[-1] == Chunk("", "stop", Usage(prompt_tokens=2, completion_tokens=pieces))
    assert len(chunks) > 20
    assert sleep.calls == [0.03] * (len(chunks) - 2)  # between pieces, not before the first


async def test_the_demo_stops_at_max_tokens_with_finish_reason_length() -> None:
    backend = DemoBackend(delay=0)
    async with aclosing(backend.stream(HI, ModelOptions(max_tokens=3))) as stream:
        chunks = [chunk async for chunk in stream]
    assert [c.delta for c in chunks[:-1]] == ["You", " asked:", " “Hi"]
    assert chunks[-1] == Chunk("", "length", Usage(prompt_tokens=2, completion_tokens=3))


async def test_the_demo_is_deterministic() -> None:
    sleep = FakeSleep()
    first = await collect(DemoBackend(sleep=sleep), HI)
    second = await collect(DemoBackend(sleep=sleep), HI)
    assert first == second


async def test_the_demo_without_delay_never_sleeps() -> None:
    sleep = FakeSleep()
    await collect(DemoBackend(delay=0, sleep=sleep), HI)
    assert sleep.calls == []


def test_the_demo_answer_counts_the_earlier_messages() -> None:
    messages: list[ChatMessage] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert "This chat has 2 earlier messages." in demo_answer(messages)
    assert "earlier messages" not in demo_answer(messages[-1:])
