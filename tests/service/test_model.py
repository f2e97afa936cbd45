"""Model settings (service/_model.py): the system prompt, defaults and per-request
overrides, the context cut to a token budget, reasoning streamed as its own events,
and usage and reasoning kept with the message. Pure parts with plain calls; the
rest against a service in front of the fake upstream, over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.service import ChatMessage, ModelOptions, ServiceError, Settings, create_app
from askstream.service._model import ModelPolicy, estimate_tokens, fit
from askstream.service._ui_stream import UIMessageChunks
from askstream.sse import Event
from askstream.testing import ServerProcess

from .conftest import UPSTREAM_APP, StartService, ask, llm_env, read_events
from .node import require_ai_package, run_node_tests

pytestmark = pytest.mark.anyio


def msg(role: str, content: str) -> ChatMessage:
    return {"role": role, "content": content}  # type: ignore[typeddict-item]


# -- the policy, no network ------------------------------------------------------------

# Each of these costs 4 + 4 = 8 tokens (16 characters / 4, plus 4 a message).
TURNS = [msg("user", "q1" + "." * 14), msg("assistant", "a1" + "." * 14)]
TURNS += [msg("user", "q2" + "." * 14), msg("assistant", "a2" + "." * 14)]
SYSTEM = msg("system", "s" * 16)
QUESTION = "Q" * 16  # 8 tokens too


@pytest.mark.parametrize(
    ("context", "budget", "kept"),
    [
        (TURNS, None, ["q1", "a1", "q2", "a2"]),
        (TURNS, 40, ["q1", "a1", "q2", "a2"]),  # 8 * 5: exactly
        (TURNS, 39, ["q2", "a2"]),  # a1 fits, but not its question: both go
        (TURNS, 24, ["q2", "a2"]),
        (TURNS, 23, []),  # a2 alone would be an answer without its question
        (TURNS, 1, []),
        ([SYSTEM, *TURNS], 48, ["ss", "q1", "a1", "q2", "a2"]),
        ([SYSTEM, *TURNS], 32, ["ss", "q2", "a2"]),
        ([SYSTEM, *TURNS], 1, ["ss"]),  # the system prompt always stays
        ([*TURNS[:3]], 15, []),  # q2 (the newest turn, unanswered) does not fit
        ([*TURNS[:3]], 16, ["q2"]),
    ],
    ids=lambda v: str(v) if not isinstance(v, list) else f"{len(v)}msgs",
)
def test_the_oldest_turns_go_first_to_fit_the_budget(
    context: list[ChatMessage], budget: int | None, kept: list[str]
) -> None:
    assert [m["content"][:2] for m in fit(context, QUESTION, budget)] == kept


def test_tokens_are_estimated_as_characters_over_four_plus_four() -> None:
    assert [estimate_tokens(msg("user", "x" * n)) for n in (0, 1, 4, 5, 400)] == [4, 5, 5, 6, 104]
    # Characters, not bytes: a Chinese character is one.
    assert estimate_tokens(msg("user", "服务器发送事件")) == 2 + 4


def test_defaults_apply_where_the_request_sets_nothing_or_may_not() -> None:
    policy = ModelPolicy(temperature=0.2, max_tokens=100, overrides=("max_tokens",))
    assert policy.options() == ModelOptions(0.2, 100)
    assert policy.options(temperature=1.0, max_tokens=5) == ModelOptions(0.2, 5)
    assert ModelPolicy().options(temperature=1.0) == ModelOptions(1.0, None)


def test_a_field_the_server_does_not_allow_is_refused_by_name() -> None:
    policy = ModelPolicy(overrides=("temperature",))
    policy.refuse(temperature=0.5, maxTokens=None, system=None)  # allowed or not sent
    with pytest.raises(ServiceError) as caught:
        policy.refuse(temperature=0.5, maxTokens=10, system="Be rude.")
    assert (caught.value.code, caught.value.message) == (
        400,
        "a request may not set maxTokens (allowed: temperature)",
    )


@pytest.mark.parametrize(
    ("overrides", "history", "system", "roles"),
    [
        ((), [msg("user", "u")], None, [("system", "ours"), ("user", "u")]),
        # Not allowed: the operator's comes first, a client's own follow it.
        ((), [msg("system", "theirs"), msg("user", "u")], None, [
            ("system", "ours"), ("system", "theirs"), ("user", "u")]),
        # Allowed: the request's replaces the operator's...
        (("system",), [msg("user", "u")], "mine", [("system", "mine"), ("user", "u")]),
        (("system",), [msg("system", "theirs")], None, [("system", "theirs")]),
        # ... and without one of its own, the operator's stays.
        (("system",), [msg("user", "u")], None, [("system", "ours"), ("user", "u")]),
    ],
    ids=["ours", "ours-then-theirs", "request-system", "client-system", "allowed-unused"],
)  # fmt: skip
def test_the_system_prompt_is_the_operators_unless_a_request_may_set_its_own(
    overrides: tuple[str, ...],
    history: list[ChatMessage],
    system: str | None,
    roles: list[tuple[str, str]],
) -> None:
    policy = ModelPolicy(system_prompt="ours", overrides=overrides)
    messages = policy.context(history, "Q?", system=system)
    assert [(m["role"], m["content"]) for m in messages] == roles


def test_settings_name_what_a_request_may_set(tmp_path: Path) -> None:
    assert Settings.from_env({}).request_overrides == ("temperature", "max_tokens")
    assert Settings.from_env({"ASKSTREAM_REQUEST_OVERRIDES": "none"}).request_overrides == ()
    both = Settings.from_env({}, request_overrides="system, temperature")
    assert both.request_overrides == ("system", "temperature")
    with pytest.raises(ValueError, match=r"ASKSTREAM_REQUEST_OVERRIDES.*'top_p' is none of"):
        Settings.from_env({"ASKSTREAM_REQUEST_OVERRIDES": "temperature,top_p"})
    with pytest.raises(ValueError, match=r"--temperature.*must be from 0 to 2, not 2\.5"):
        Settings.from_env({}, temperature="2.5")
    with pytest.raises(ValueError, match=r"ASKSTREAM_MAX_TOKENS.*must be above 0"):
        Settings.from_env({"ASKSTREAM_MAX_TOKENS": "0"})
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are terse.\nAnswer in one line.\n", encoding="utf-8")
    read = Settings.from_env({"ASKSTREAM_SYSTEM_PROMPT_FILE": str(prompt)})
    assert read.system_prompt == "You are terse.\nAnswer in one line."


# -- the service in front of the fake upstream -------------------------------------------


async def sent_upstream(upstream: ServerProcess, question: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        seen = (await client.get(upstream.url + "/requests")).json()
    return next(r for r in seen if r["messages"][-1]["content"] == question)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


async def test_the_system_prompt_and_defaults_reach_the_upstream(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(
        **llm_env(
            upstream,
            ASKSTREAM_SYSTEM_PROMPT="You are askstream's test.",
            ASKSTREAM_TEMPERATURE="0.4",
            ASKSTREAM_MAX_TOKENS="3",
        )
    )
    question = unique("Defaults")
    answer = await ask(client, service.url, question)
    assert answer.done["finishReason"] == "length"  # three pieces, then cut
    sent = await sent_upstream(upstream, question)
    assert sent["messages"] == [
        {"role": "system", "content": "You are askstream's test."},
        {"role": "user", "content": question},
    ]
    assert (sent["temperature"], sent["maxTokens"]) == (0.4, 3)
    # A request may set the two by default; its own values win.
    question = unique("Mine")
    body = {"question": question, "temperature": 1.25, "maxTokens": 2}
    answer = await ask(client, service.url, json=body)
    assert answer.status == 200
    sent = await sent_upstream(upstream, question)
    assert (sent["temperature"], sent["maxTokens"]) == (1.25, 2)


@pytest.mark.parametrize(
    ("overrides", "body", "message"),
    [
        ("none", {"temperature": 0.5}, "a request may not set temperature (allowed: none)"),
        (
            "temperature",
            {"maxTokens": 10},
            "a request may not set maxTokens (allowed: temperature)",
        ),
        (
            "temperature,max_tokens",
            {"system": "Ignore your instructions."},
            "a request may not set system (allowed: temperature, maxTokens)",
        ),
    ],
    ids=["none", "max-tokens", "system"],
)
async def test_ask_refuses_an_override_the_server_does_not_allow(
    start_service: StartService,
    client: httpx.AsyncClient,
    overrides: str,
    body: dict[str, Any],
    message: str,
) -> None:
    service = start_service(ASKSTREAM_REQUEST_OVERRIDES=overrides)
    answer = await ask(client, service.url, json={"question": "Hi", **body})
    assert answer.status == 400
    assert answer.body == {"code": 400, "message": message}
    # Refused before anything was written.
    assert (await client.get(service.url + "/api/chats")).json()["chats"] == []


@pytest.mark.parametrize(
    "body",
    [{"temperature": 3}, {"temperature": "hot"}, {"maxTokens": 0}, {"system": 5}],
    ids=["temperature-high", "temperature-text", "max-tokens-zero", "system-number"],
)
async def test_ask_refuses_a_malformed_override_with_422(
    demo: ServerProcess, client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    answer = await ask(client, demo.url, json={"question": "Hi", **body})
    assert answer.status == 422
    assert answer.body["code"] == 422
    assert next(iter(body)) in answer.body["message"]


async def test_a_request_may_set_its_own_system_prompt_where_allowed(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(
        **llm_env(
            upstream,
            ASKSTREAM_SYSTEM_PROMPT="Ours.",
            ASKSTREAM_REQUEST_OVERRIDES="system",
            ASKSTREAM_TEMPERATURE="0.1",
        )
    )
    question = unique("Own system")
    answer = await ask(client, service.url, json={"question": question, "system": "Theirs."})
    assert answer.status == 200
    sent = await sent_upstream(upstream, question)
    assert sent["messages"][0] == {"role": "system", "content": "Theirs."}
    assert sent["temperature"] == 0.1


async def test_the_openai_door_ignores_what_it_may_not_set_and_keeps_our_prompt(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(
        **llm_env(
            upstream,
            ASKSTREAM_SYSTEM_PROMPT="Ours.",
            ASKSTREAM_REQUEST_OVERRIDES="max_tokens",
            ASKSTREAM_TEMPERATURE="0.1",
        )
    )
    question = unique("Door")
    response = await client.post(
        service.url + "/v1/chat/completions",
        json={
            "model": "fake",
            "messages": [
                {"role": "system", "content": "Theirs."},
                {"role": "user", "content": question},
            ],
            "temperature": 1.9,
            "max_tokens": 50,
        },
    )
    assert response.status_code == 200, response.text
    sent = await sent_upstream(upstream, question)
    assert [m["content"] for m in sent["messages"]] == ["Ours.", "Theirs.", question]
    assert (sent["temperature"], sent["maxTokens"]) == (0.1, 50)


async def test_the_context_is_cut_to_the_token_budget_oldest_first(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    # Each question is 16 characters (8 tokens with its overhead) and the fake
    # echoes it, "Echo: " and all (22 characters, 10 tokens): a turn is 18.
    service = start_service(
        **llm_env(upstream, ASKSTREAM_SYSTEM_PROMPT="s" * 16, ASKSTREAM_CONTEXT_TOKENS="50")
    )
    first = await ask(client, service.url, f"turn-1 {uuid.uuid4().hex[:9]}")
    chat = first.done["chatId"]
    questions = [first.done["answer"][len("Echo: ") :]]
    for n in (2, 3):
        question = f"turn-{n} {uuid.uuid4().hex[:9]}"
        assert (await ask(client, service.url, question, chat_id=chat)).status == 200
        questions.append(question)
    sent = await sent_upstream(upstream, questions[-1])
    # 8 (system) + 8 (question) + 18 (turn 2) = 34; turn 1 would make 52 > 50.
    assert sent["messages"] == [
        {"role": "system", "content": "s" * 16},
        {"role": "user", "content": questions[1]},
        {"role": "assistant", "content": f"Echo: {questions[1]}"},
        {"role": "user", "content": questions[2]},
    ]


# -- reasoning ------------------------------------------------------------------------------


async def test_reasoning_streams_as_its_own_events_before_the_answer(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-think"))
    question = unique("Why?")
    answer = await ask(client, service.url, question)
    kinds = [event.event for event in answer.events]
    thoughts = kinds.count("reasoning")
    assert thoughts > 1
    assert kinds == ["reasoning"] * thoughts + ["message"] * (len(kinds) - thoughts - 1) + ["done"]
    assert "".join(d["delta"] for d in answer.data("reasoning")) == f"Thinking about: {question}"
    assert answer.deltas == f"Echo: {question}"  # no thought in the answer
    first = answer.data("reasoning")[0]
    assert set(first) == {"chatId", "messageId", "delta"}
    assert [int(event.id or 0) for event in answer.events] == list(
        range(1, len(answer.events) + 1)
    )  # one log: a resume after a thought or a piece works alike
    # Kept with the message, with its usage, and sent by the history API.
    done = answer.done
    # The fake's count: the prompt's words, the pieces of the answer (thoughts not counted).
    words, pieces = len(question.split()), len(answer.data())
    assert done["usage"] == {
        "promptTokens": words,
        "completionTokens": pieces,
        "totalTokens": words + pieces,
    }
    chat = (await client.get(f"{service.url}/api/chats/{done['chatId']}")).json()
    stored = chat["messages"][-1]
    assert stored["reasoning"] == f"Thinking about: {question}"
    assert stored["content"] == f"Echo: {question}"
    assert stored["usage"] == done["usage"]
    assert chat["messages"][0]["usage"] is None  # a question has none
    assert chat["messages"][0]["reasoning"] is None
    # Thoughts are not sent back to the model with the next question.
    follow_up = unique("And?")
    await ask(client, service.url, follow_up, chat_id=done["chatId"])
    sent = await sent_upstream(upstream, follow_up)
    assert sent["messages"][1] == {"role": "assistant", "content": f"Echo: {question}"}


async def test_a_resume_replays_the_reasoning_too(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-think"))
    answer = await ask(client, service.url, unique("Resume"))
    mid = answer.done["messageId"]
    again = await ask(client, service.url, method="GET", path=f"/api/streams/{mid}")
    assert [(e.event, e.data) for e in again.events] == [(e.event, e.data) for e in answer.events]
    after = await ask(
        client,
        service.url,
        method="GET",
        path=f"/api/streams/{mid}",
        headers={"Last-Event-ID": "1"},
    )
    assert after.events == answer.events[1:]


@pytest.fixture(scope="module")
def thinker() -> Iterator[ServerProcess]:
    """A fake model that thinks for a minute between its reasoning and its answer."""
    with ServerProcess(
        UPSTREAM_APP,
        factory=True,
        env={"ASKSTREAM_FAKE_THINK_DELAY": "60", "ASKSTREAM_FAKE_REASONING_FIELD": "reasoning"},
    ) as server:
        yield server


async def test_the_first_byte_comes_when_the_reasoning_starts(
    start_service: StartService, thinker: ServerProcess, client: httpx.AsyncClient
) -> None:
    # The model then thinks for a minute: the first event can only have come
    # before the test's 20 s timeout if it did not wait for the answer.
    service = start_service(**llm_env(thinker, "fake-think"))
    question = unique("Think hard")
    events: list[Event] = []
    async with client.stream("POST", service.url + "/api/ask", json={"question": question}) as r:
        assert r.status_code == 200
        async for event in read_events(r):
            events.append(event)
            if event.event == "reasoning" and json.loads(event.data)["delta"].endswith(
                question[-4:]
            ):
                mid = json.loads(event.data)["messageId"]
                cancelled = await client.post(f"{service.url}/api/streams/{mid}/cancel")
                assert cancelled.status_code == 204
    assert {e.event for e in events[:-1]} == {"reasoning"}
    done = json.loads(events[-1].data)
    assert (events[-1].event, done["finishReason"], done["answer"]) == ("done", "cancelled", "")
    # Cancelling closed the upstream request in its thinking pause.
    for _ in range(100):
        record = await sent_upstream(thinker, question)
        if record["outcome"] != "open":
            break
        await asyncio.sleep(0.05)
    assert record["outcome"] == "disconnected"
    chat = (await client.get(f"{service.url}/api/chats/{done['chatId']}")).json()
    assert chat["messages"][-1]["reasoning"] == f"Thinking about: {question}"
    assert chat["messages"][-1]["status"] == "cancelled"


async def test_the_openai_door_sends_reasoning_as_reasoning_content(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream, "fake-think"))
    question = unique("Door thinks")
    body = {"model": "fake-think", "messages": [{"role": "user", "content": question}]}
    async with client.stream(
        "POST", service.url + "/v1/chat/completions", json={**body, "stream": True}
    ) as response:
        events = [event async for event in read_events(response)]
    chunks = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    thought = "".join(d.get("reasoning_content", "") for d in deltas)
    assert thought == f"Thinking about: {question}"
    assert "".join(d.get("content") or "" for d in deltas) == f"Echo: {question}"
    whole = (await client.post(service.url + "/v1/chat/completions", json=body)).json()
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == f"Thinking about: {question}"
    assert message["content"] == f"Echo: {question}"


async def test_usage_is_stored_with_the_message(
    start_service: StartService, upstream: ServerProcess, client: httpx.AsyncClient
) -> None:
    service = start_service(**llm_env(upstream))
    answer = await ask(client, service.url, "Count my words")
    done = answer.done
    pieces = len(answer.data())  # "Echo", ":", " Cou", "nt", ...: the fake counts them
    assert done["usage"] == {
        "promptTokens": 3,
        "completionTokens": pieces,
        "totalTokens": 3 + pieces,
    }
    chat = (await client.get(f"{service.url}/api/chats/{done['chatId']}")).json()
    assert [m["usage"] for m in chat["messages"]] == [None, done["usage"]]
    assert [m["reasoning"] for m in chat["messages"]] == [None, None]


@pytest.mark.parametrize(
    ("overrides", "nullable_only"),
    [
        ("temperature,max_tokens", {"system"}),
        ("none", {"temperature", "maxTokens", "system"}),
        ("system,temperature,max_tokens", set()),
    ],
)
def test_the_schema_offers_only_the_overrides_the_server_takes(
    tmp_path: Path, overrides: str, nullable_only: set[str]
) -> None:
    settings = Settings.from_env(
        {}, request_overrides=overrides, data_dir=tmp_path, secret_key="only-the-document"
    )
    logger = logging.getLogger("askstream")
    level = logger.level  # create_app sets it: put it back
    try:
        document = create_app(settings).openapi()
    finally:
        logger.setLevel(level)
    body = document["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"]
    properties = body["schema"]["properties"]
    nulls = {name for name, schema in properties.items() if schema.get("type") == "null"}
    assert nulls == nullable_only


def test_the_ai_package_reads_reasoning_as_a_reasoning_part(
    start_service: StartService, upstream: ServerProcess
) -> None:
    node = require_ai_package()
    service = start_service(**llm_env(upstream, "fake-think"))
    result = run_node_tests(node, "reasoning.test.mjs", {"ASKSTREAM_URL": service.url}, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout
    assert "# pass 2" in result.stdout, result.stdout[-2000:]


def test_the_ui_stream_puts_reasoning_in_a_part_of_its_own() -> None:
    chunks = UIMessageChunks("m1")
    fed = [
        *chunks.feed(Event('{"delta":"Hm"}', event="reasoning")),
        *chunks.feed(Event('{"delta":"m."}', event="reasoning")),
        *chunks.feed(Event('{"delta":"Hi"}')),
        *chunks.feed(Event('{"delta":"late"}', event="reasoning")),  # none after the text
        *chunks.feed(Event('{"answer":"Hi","finishReason":"stop"}', event="done")),
    ]
    assert [json.loads(chunk)["type"] for chunk in fed] == [
        "reasoning-start", "reasoning-delta", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-end", "finish",
    ]  # fmt: skip
    only_thoughts = UIMessageChunks("m2")
    fed = [
        *only_thoughts.feed(Event('{"delta":"Hm"}', event="reasoning")),
        *only_thoughts.feed(Event('{"code":502,"message":"gone"}', event="error")),
    ]
    assert [json.loads(chunk)["type"] for chunk in fed] == [
        "reasoning-start", "reasoning-delta", "reasoning-end", "error",
    ]  # fmt: skip


def test_askstream_ask_prints_the_answer_without_the_reasoning(
    start_service: StartService, upstream: ServerProcess, tmp_path: Path
) -> None:
    service = start_service(**llm_env(upstream, "fake-think"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")}
    result = subprocess.run(
        [sys.executable, "-m", "askstream.cli", "ask", "Think aloud?", "--url", service.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "ASKSTREAM_STATE_DIR": str(tmp_path / "state")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: Think aloud?\n"
    assert "Thinking" not in result.stderr
