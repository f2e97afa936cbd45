"""The OpenAI-compatible door (``/v1/``), spoken to by the real ``openai`` SDK over
real sockets: the demo model, and the fake upstream behind the service.

docs/api.md, "The OpenAI-compatible API", is what these tests quote.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from askstream.service._demo import DEMO_MODEL, demo_answer
from askstream.service._stopping import RESUME as RESUME_MESSAGE
from askstream.service._stopping import RESUME_EVENT
from askstream.testing import ServerProcess

from .conftest import AUTH, TOKEN, TOKEN_ENV, StartService, _module_service, llm_env, read_events

pytestmark = pytest.mark.anyio

RESUME = "x-askstream-resume"


@pytest.fixture(scope="module")
def demo_v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo model behind a service that needs a token."""
    yield from _module_service(tmp_path_factory, **TOKEN_ENV)


@pytest.fixture(scope="module")
def llm_v1(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The fake upstream (model ``fake``) behind a service that needs a token."""
    yield from _module_service(tmp_path_factory, **llm_env(upstream, **TOKEN_ENV))


def sdk(server: ServerProcess, api_key: str = TOKEN) -> AsyncOpenAI:
    # No retries: an error must reach the test as the first answer gave it.
    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=20)


async def upstream_request(upstream: ServerProcess, question: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        seen = (await client.get(upstream.url + "/requests")).json()
    return next(r for r in seen if r["messages"][-1]["content"] == question)


# -- the demo model ---------------------------------------------------------------


async def test_models_lists_the_demo_model(demo_v1: ServerProcess) -> None:
    async with sdk(demo_v1) as client:
        listed = [model.id async for model in client.models.list()]
        one = await client.models.retrieve(DEMO_MODEL)
    assert listed == [DEMO_MODEL]
    assert one.id == DEMO_MODEL


async def test_streaming_answer_comes_in_chunks_then_usage(demo_v1: ServerProcess) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "SSE?"}]},  # noqa: E501
    ]  # fmt: skip
    async with sdk(demo_v1) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=DEMO_MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in raw.parse()]
    assert raw.headers["content-type"].startswith("text/event-stream")
    expected = demo_answer(
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is SSE?"},
        ]
    )
    *answer, finish, usage = chunks
    assert "".join(c.choices[0].delta.content or "" for c in answer) == expected
    assert answer[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.content for c in answer)  # one chunk per piece, no empty one
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == len(answer)  # the demo counts pieces
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + len(answer)
    assert all(c.usage is None for c in [*answer, finish])
    assert {c.id for c in chunks} == {"chatcmpl-" + raw.headers[RESUME].rsplit("/", 1)[1]}
    assert all(c.model == DEMO_MODEL and c.object == "chat.completion.chunk" for c in chunks)


def test_the_readme_example_with_the_sync_client(demo_v1: ServerProcess) -> None:
    # README.md, "From the openai SDK", as written there but for the URL and token.
    with openai.OpenAI(base_url=f"{demo_v1.url}/v1", api_key=TOKEN, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="askstream-demo",
            messages=[{"role": "user", "content": "Hello?"}],
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == demo_answer([{"role": "user", "content": "Hello?"}])


async def test_without_include_usage_the_stream_has_no_usage_chunk(demo_v1: ServerProcess) -> None:
    async with sdk(demo_v1) as client:
        stream = await client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)


async def test_non_streaming_answer_is_one_completion(demo_v1: ServerProcess) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "First."},
        {"role": "user", "content": "Second?"},
    ]
    async with sdk(demo_v1) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=DEMO_MODEL, messages=messages
        )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == demo_answer(messages)
    assert "This chat has 2 earlier messages." in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 10
    assert raw.headers[RESUME] == f"/api/streams/{completion.id.removeprefix('chatcmpl-')}"


async def test_null_for_an_optional_field_means_not_set(demo_v1: ServerProcess) -> None:
    body = {
        "model": DEMO_MODEL,
        "messages": [{"role": "user", "content": "Hi", "name": "ignored"}],
        "stream": None,
        "stream_options": None,
        "temperature": None,
        "max_tokens": None,
        "n": None,
        "tools": [],  # ignored, as other fields OpenAI has and askstream does not
    }
    async with httpx.AsyncClient(base_url=demo_v1.url, headers=AUTH) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == demo_answer(
        [{"role": "user", "content": "Hi"}]
    )


async def test_max_tokens_cuts_the_demo_with_finish_reason_length(demo_v1: ServerProcess) -> None:
    async with sdk(demo_v1) as client:
        completion = await client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert completion.choices[0].message.content == "You asked: “Hi”."


async def test_the_answer_is_recorded_in_the_callers_chats(demo_v1: ServerProcess) -> None:
    question = f"Recorded? {uuid.uuid4().hex}"
    async with sdk(demo_v1) as client:
        completion = await client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": question}]
        )
    async with httpx.AsyncClient(base_url=demo_v1.url, headers=AUTH) as http:
        chats = (await http.get("/api/chats")).json()["chats"]
        chat = next(c for c in chats if c["title"].startswith("Recorded?"))
        detail = (await http.get(f"/api/chats/{chat['chatId']}")).json()
    assert [m["content"] for m in detail["messages"]] == [
        question,
        completion.choices[0].message.content,
    ]
    assert detail["messages"][1]["messageId"] == completion.id.removeprefix("chatcmpl-")


# -- errors, as the SDK raises them -------------------------------------------------


async def test_an_unknown_model_is_not_found(demo_v1: ServerProcess) -> None:
    async with sdk(demo_v1) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "Hi"}]
            )
    error = caught.value
    assert error.status_code == 404
    assert error.type == "invalid_request_error"
    assert isinstance(error.body, dict)
    assert error.body["message"] == (
        f"the model 'gpt-9' does not exist; this service has {DEMO_MODEL!r}"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 5}, "temperature: Input should be less than or equal to 2"),
        ({"messages": []}, "messages: List should have at least 1 item"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.content",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hi!"},
                ]
            },
            "messages: the last message must be the user's",
        ),
        ({"n": 2}, "n: Input should be less than or equal to 1"),
    ],
    ids=["temperature-too-high", "no-messages", "image-part", "last-not-user", "several-choices"],
)
async def test_a_bad_request_is_unprocessable_with_our_message(
    demo_v1: ServerProcess, change: dict[str, Any], message: str
) -> None:
    body: dict[str, Any] = {
        "model": DEMO_MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        **change,
    }
    async with sdk(demo_v1) as client:
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            await client.chat.completions.create(**body)
    assert caught.value.type == "invalid_request_error"
    assert message in caught.value.message


async def test_a_wrong_token_is_refused(demo_v1: ServerProcess) -> None:
    async with sdk(demo_v1, api_key="not-a-token") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.models.list()
    assert caught.value.type == "authentication_error"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "the bearer token is not valid"


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status"),
    [
        ("POST", "/v1/chat/completions", {}, b"{}", 401),
        ("POST", "/v1/chat/completions", AUTH, b"not json", 400),
        ("GET", "/v1/nothing-here", AUTH, b"", 404),
        ("GET", "/v1/chat/completions", AUTH, b"", 405),
        ("POST", "/v1/chat/completions", AUTH, b"[" + b" " * 100_000 + b"]", 413),
    ],
    ids=["no-token", "not-json", "unknown-route", "wrong-method", "too-large"],
)
async def test_every_v1_error_has_both_shapes(
    demo_v1: ServerProcess,
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes,
    status: int,
) -> None:
    async with httpx.AsyncClient(base_url=demo_v1.url) as http:
        response = await http.request(method, path, headers=headers, content=content)
    body = response.json()
    assert response.status_code == status
    assert body["code"] == status
    assert body["error"]["message"] == body["message"]
    assert body["error"]["type"] == (
        "authentication_error" if status == 401 else "invalid_request_error"
    )
    assert int(response.headers["content-length"]) == len(response.content)


async def test_errors_outside_v1_keep_only_our_shape(demo_v1: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=demo_v1.url) as http:
        response = await http.get("/api/nothing-here", headers=AUTH)
    assert response.json() == {"code": 404, "message": "no route GET '/api/nothing-here'"}


# -- the fake upstream behind the service ---------------------------------------------


async def test_temperature_max_tokens_and_messages_reach_the_upstream(
    llm_v1: ServerProcess, upstream: ServerProcess
) -> None:
    question = f"Count to ten please {uuid.uuid4().hex}"
    async with sdk(llm_v1) as client:
        stream = await client.chat.completions.create(
            model="fake",
            messages=[
                {"role": "system", "content": "You count."},
                {"role": "user", "content": question},
            ],
            temperature=0.3,
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    sent = await upstream_request(upstream, question)
    assert sent["temperature"] == 0.3
    assert sent["maxTokens"] == 3
    assert sent["messages"] == [
        {"role": "system", "content": "You count."},
        {"role": "user", "content": question},
    ]
    *answer, finish, usage = chunks
    assert "".join(c.choices[0].delta.content or "" for c in answer) == "Echo: Coun"
    assert finish.choices[0].finish_reason == "length"
    # The upstream's own count, carried through the answer log: its prompt's words
    # (three of the system message's and the question's five), its three pieces.
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (2 + 5, 3)


async def test_max_completion_tokens_goes_upstream_as_max_tokens(
    llm_v1: ServerProcess, upstream: ServerProcess
) -> None:
    question = f"Newer name {uuid.uuid4().hex}"
    async with sdk(llm_v1) as client:
        completion = await client.chat.completions.create(
            model="fake",
            messages=[{"role": "user", "content": question}],
            max_completion_tokens=2,
        )
    sent = await upstream_request(upstream, question)
    assert sent["maxTokens"] == 2
    assert sent["temperature"] is None
    assert completion.choices[0].message.content == "Echo:"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


async def test_models_lists_the_configured_model(llm_v1: ServerProcess) -> None:
    async with sdk(llm_v1) as client:
        assert [model.id async for model in client.models.list()] == ["fake"]


async def test_an_upstream_failing_mid_answer_raises_api_error_in_the_stream(
    start_service: StartService, upstream: ServerProcess
) -> None:
    service = start_service(**llm_env(upstream, "fake-fail", **TOKEN_ENV))
    received: list[str] = []
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="fake-fail",
            messages=[{"role": "user", "content": "Tell me a long story"}],
            stream=True,
        )
        with pytest.raises(openai.APIError) as caught:  # noqa: PT012 (raised mid-iteration)
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")  # noqa: PERF401 (what came before the error)
    assert "".join(received) == "Echo: Tell"  # the three pieces before the failure
    assert caught.value.message == "the LLM back end failed: the fake upstream failed mid-answer"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "server_error"


async def test_an_upstream_refusing_before_the_first_piece_is_a_502(
    start_service: StartService, upstream: ServerProcess
) -> None:
    service = start_service(**llm_env(upstream, "fake-refuse", **TOKEN_ENV))
    async with sdk(service) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="fake-refuse", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
    assert caught.value.status_code == 502
    assert caught.value.type == "server_error"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == (
        "the LLM back end answered HTTP 503: the fake upstream refuses"
    )


# -- resuming ------------------------------------------------------------------------


async def test_a_dropped_stream_resumes_at_the_header_url(
    start_service: StartService, upstream: ServerProcess
) -> None:
    # A piece every 0.3 s, and a heartbeat far more often: the SDK must read past
    # the comments (no `id:` lines, which would make them empty events).
    service = start_service(
        **llm_env(upstream, "fake-slow", ASKSTREAM_HEARTBEAT="0.05", **TOKEN_ENV)
    )
    question = "Resume me after two pieces"
    async with sdk(service) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-slow", messages=[{"role": "user", "content": question}], stream=True
        )
        stream = raw.parse()
        got: list[str] = []
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
            if len(got) == 2:
                break
        await stream.close()  # the client drops mid-answer
    resume = raw.headers[RESUME]
    # The n-th chunk with content is event n of the answer's log.
    async with (
        httpx.AsyncClient(base_url=service.url, headers=AUTH, timeout=20) as http,
        http.stream("GET", resume, headers={"Last-Event-ID": "2"}) as response,
    ):
        assert response.status_code == 200
        events = [event async for event in read_events(response)]
    rest = "".join(json.loads(e.data)["delta"] for e in events if e.event == "message")
    assert events[0].id == "3"
    assert events[-1].event == "done"
    assert "".join(got) + rest == f"Echo: {question}"
    assert json.loads(events[-1].data)["answer"] == f"Echo: {question}"


async def test_the_sdk_reads_a_whole_stream_with_heartbeats_between_chunks(
    start_service: StartService, upstream: ServerProcess
) -> None:
    service = start_service(
        **llm_env(upstream, "fake-slow", ASKSTREAM_HEARTBEAT="0.05", **TOKEN_ENV)
    )
    body = {
        "model": "fake-slow",
        "messages": [{"role": "user", "content": "Hi there"}],
        "stream": True,
    }
    async with httpx.AsyncClient(base_url=service.url, headers=AUTH, timeout=20) as http:
        raw = (await http.post("/v1/chat/completions", json=body)).text
    assert ": ping\n\n" in raw  # heartbeats did go out between the pieces
    assert "\nid:" not in "\n" + raw
    async with sdk(service) as client:
        stream = await client.chat.completions.create(**body)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Echo: Hi there"


# -- stopping ------------------------------------------------------------------------


async def test_a_stopping_server_ends_the_stream_with_an_error_the_sdk_raises(
    start_service: StartService,
) -> None:
    # About 85 pieces 0.2 s apart: far longer than the shutdown timeout.
    service = start_service(
        ASKSTREAM_DEMO_DELAY="0.2", ASKSTREAM_SHUTDOWN_TIMEOUT="0.5", **TOKEN_ENV
    )
    got: list[str] = []
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        with pytest.raises(openai.APIError) as caught:  # noqa: PT012 (raised mid-iteration)
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
                if len(got) == 1:
                    service.process.send_signal(signal.SIGTERM)
    # Not taken for a complete answer: the SDK raises, with the server's reason.
    assert "the server is shutting down" in caught.value.message
    assert 0 < len(got) < 80


def test_the_shutdown_event_carries_openai_error_object_too() -> None:
    # It ends every open stream, /v1/'s too (when a reader missed the answer's own end).
    data = json.loads(RESUME_EVENT.data)
    assert (data["code"], data["message"]) == (503, RESUME_MESSAGE)
    assert data["error"] == {
        "message": RESUME_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": None,
    }
