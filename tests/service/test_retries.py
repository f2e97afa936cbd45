"""Asking the LLM back end again (service/_retry.py): the pure decisions with plain
calls, then OpenAIBackend against the fake upstream as a real server, with a fake
sleep and clock, and the service asking a flaky upstream over real sockets."""

from __future__ import annotations

import datetime as dt
import uuid
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from askstream import ConnectError, ResponseError, TransportTimeout
from askstream.service import ChatMessage, Chunk, OpenAIBackend, RetryPolicy, UpstreamError
from askstream.service._retry import retry_after, retry_delay
from askstream.testing import ServerProcess, free_port

from .conftest import StartService, ask, llm_env

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(attempts=4, base=1.0, cap=10.0)


def half() -> float:
    return 0.5


def refused(status: int, retry_after: str | None = None) -> ResponseError:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return ResponseError(status=status, code=status, message="no", headers=headers)


# -- the decisions, no network ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("Sat, 05 Dec 2026 12:00:30 GMT", 30.0),
        ("Sat, 05 Dec 2026 11:59:00 GMT", 0.0),  # already past: at once
        ("Saturday, 05-Dec-26 12:01:00 GMT", 60.0),  # RFC 850, which RFC 9110 still accepts
        ("-3", None),
        ("1.5", None),  # delay-seconds is digits only
        ("soon", None),
        ("", None),
        (None, None),
    ],
    ids=repr,
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("error", "retry", "delay"),
    [
        (refused(429), 0, 0.75),  # base 1 s, from its upper half: 0.5 + 0.5 * 0.5
        (refused(503), 1, 1.5),  # doubled
        (refused(500), 2, 3.0),
        (refused(502, "2"), 0, 2.0),  # Retry-After instead of the backoff
        (refused(429, "3600"), 0, 10.0),  # ... capped
        (refused(503, "Sat, 05 Dec 2026 12:00:04 GMT"), 1, 4.0),
        (refused(429, "whenever"), 0, 0.75),  # unreadable: the backoff
        (refused(429), 3, None),  # four attempts made
        (refused(400), 0, None),
        (refused(401), 0, None),
        (refused(404), 0, None),
        (ConnectError("refused"), 0, 0.75),
        (TransportTimeout("connect timeout", phase="connect"), 1, 1.5),
        (TransportTimeout("read timeout", phase="read"), 0, None),  # it may be answering
        (UpstreamError("the stream broke"), 0, None),
        (None, 0, None),
    ],
    ids=[
        "429",
        "503-second",
        "500-third",
        "retry-after",
        "retry-after-capped",
        "retry-after-date",
        "retry-after-unreadable",
        "attempts-spent",
        "400",
        "401",
        "404",
        "connect-error",
        "connect-timeout",
        "read-timeout",
        "other",
        "no-cause",
    ],
)
def test_only_a_refusal_or_a_failed_connection_is_asked_again(
    error: BaseException | None, retry: int, delay: float | None
) -> None:
    assert retry_delay(error, retry, POLICY, now=NOW, random=half) == delay


def test_the_jitter_spreads_each_wait_over_its_upper_half() -> None:
    policy = RetryPolicy(attempts=5, base=0.5, cap=8.0)
    lows = [policy.backoff(n, random=lambda: 0.0) for n in range(6)]
    highs = [policy.backoff(n, random=lambda: 1.0) for n in range(6)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


# -- OpenAIBackend against the fake upstream -------------------------------------------


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def backend(url: str, model: str, sleep: FakeSleep, **kwargs: Any) -> OpenAIBackend:
    return OpenAIBackend(url, model, sleep=sleep, clock=lambda: NOW, random=lambda: 1.0, **kwargs)


async def collect(backend: OpenAIBackend, messages: list[ChatMessage]) -> list[Chunk]:
    try:
        async with aclosing(backend.stream(messages)) as chunks:
            return [chunk async for chunk in chunks]
    finally:
        await backend.aclose()


async def requests_for(upstream: ServerProcess, question: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        seen = (await client.get(upstream.url + "/requests")).json()
    return [r for r in seen if r["messages"][-1]["content"] == question]


def question() -> list[ChatMessage]:
    return [{"role": "user", "content": f"Again? {uuid.uuid4().hex}"}]


async def test_a_429_twice_then_an_answer_is_asked_three_times(upstream: ServerProcess) -> None:
    sleep = FakeSleep()
    messages = question()
    flaky = backend(upstream.url, "fake-flaky", sleep, retry=RetryPolicy(3, base=0.5, cap=8.0))
    chunks = await collect(flaky, messages)
    assert "".join(c.delta for c in chunks) == "Echo: " + messages[0]["content"]
    # Retry-After: 30 each time, cut to the cap.
    assert sleep.calls == [8.0, 8.0]
    outcomes = [r["outcome"] for r in await requests_for(upstream, messages[0]["content"])]
    assert outcomes == ["refused", "refused", "done"]


async def test_attempts_are_bounded_and_the_last_refusal_is_the_error(
    upstream: ServerProcess,
) -> None:
    sleep = FakeSleep()
    messages = question()
    refusing = backend(upstream.url, "fake-refuse", sleep, retry=RetryPolicy(4, base=0.5, cap=8.0))
    with pytest.raises(UpstreamError, match="HTTP 503: the fake upstream refuses"):
        await collect(refusing, messages)
    assert sleep.calls == [0.5, 1.0, 2.0]  # no Retry-After: the backoff (random 1.0: its top)
    assert len(await requests_for(upstream, messages[0]["content"])) == 4


async def test_one_attempt_means_no_retry(upstream: ServerProcess) -> None:
    sleep = FakeSleep()
    messages = question()
    once = backend(upstream.url, "fake-flaky", sleep, retry=RetryPolicy(attempts=1))
    with pytest.raises(UpstreamError, match="HTTP 429"):
        await collect(once, messages)
    assert sleep.calls == []


async def test_a_refused_connection_is_asked_again_until_the_attempts_are_spent() -> None:
    sleep = FakeSleep()
    closed = backend(f"http://127.0.0.1:{free_port()}", "m", sleep, retry=RetryPolicy(3, 0.5, 8))
    with pytest.raises(UpstreamError, match="cannot reach the LLM back end"):
        await collect(closed, question())
    assert sleep.calls == [0.5, 1.0]


class FailingConnects(httpx.AsyncBaseTransport):
    """A transport whose first ``failures`` connections fail, then a real one."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_a_connection_that_fails_then_opens_gets_the_answer(upstream: ServerProcess) -> None:
    sleep = FakeSleep()
    messages = question()
    async with httpx.AsyncClient(transport=FailingConnects(2)) as client:
        flaky = backend(upstream.url, "fake", sleep, client=client)
        chunks = await collect(flaky, messages)
    assert "".join(c.delta for c in chunks) == "Echo: " + messages[0]["content"]
    assert len(sleep.calls) == 2
    assert len(await requests_for(upstream, messages[0]["content"])) == 1


@pytest.mark.parametrize("model", ["fake-fail", "fake-drop"])
async def test_a_failure_after_the_first_piece_is_never_asked_again(
    upstream: ServerProcess, model: str
) -> None:
    sleep = FakeSleep()
    messages = question()
    pieces: list[str] = []

    async def read() -> None:
        async with aclosing(failing.stream(messages)) as chunks:
            async for chunk in chunks:
                pieces.append(chunk.delta)  # noqa: PERF401 (what came before counts)

    failing = backend(upstream.url, model, sleep)
    try:
        with pytest.raises(UpstreamError):
            await read()
    finally:
        await failing.aclose()
    assert pieces == ["Echo", ":", " Agai"]  # fail_after (3) pieces, then the failure
    assert sleep.calls == []
    assert len(await requests_for(upstream, messages[0]["content"])) == 1


async def test_a_read_timeout_is_not_asked_again(upstream: ServerProcess) -> None:
    # The upstream has the question and may be answering it: a second request
    # could make a second answer.
    sleep = FakeSleep()
    messages = question()
    silent = backend(upstream.url, "fake-slow", sleep, read_timeout=0.05)
    with pytest.raises(UpstreamError, match="sent nothing"):
        await collect(silent, messages)
    assert sleep.calls == []
    assert len(await requests_for(upstream, messages[0]["content"])) == 1


# -- the service ------------------------------------------------------------------------


async def test_the_service_asks_a_flaky_upstream_again_and_answers(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-flaky", ASKSTREAM_LLM_ATTEMPTS="3"))
    text = f"Flaky {uuid.uuid4().hex}"
    answer = await ask(client, service.url, text)
    assert answer.status == 200
    assert answer.done["answer"] == f"Echo: {text}"
    outcomes = [r["outcome"] for r in await requests_for(upstream, text)]
    assert outcomes == ["refused", "refused", "done"]


async def test_the_service_gives_up_after_its_attempts_with_502(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-flaky", ASKSTREAM_LLM_ATTEMPTS="2"))
    text = f"Flaky {uuid.uuid4().hex}"
    answer = await ask(client, service.url, text)
    assert answer.status == 502
    assert answer.body["code"] == 502
    assert "HTTP 429" in answer.body["message"]
    assert len(await requests_for(upstream, text)) == 2
    # Nothing of the failed ask is left in the history (as for any 502).
    assert (await client.get(service.url + "/api/chats")).json()["chats"] == []
