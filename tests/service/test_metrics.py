"""``GET /metrics``: a real service asked, scraped and parsed as Prometheus reads it.

docs/deploy.md ("Metrics") lists each metric; the values here are counted from
what the client itself saw (asks by outcome, tokens delivered, a resume, a
cancel, refusals by limit, upstream errors by kind).
"""

from __future__ import annotations

import json

import httpx
import pytest

from askstream.streams import MemoryStore
from askstream.testing import ServerProcess

from .conftest import AUTH, TOKEN_ENV, Answer, StartService, ask, llm_env, read_events
from .scrape import scrape, settled, value

pytestmark = pytest.mark.anyio


async def test_metrics_count_what_the_clients_saw(
    start_service: StartService, upstream: ServerProcess
) -> None:
    service = start_service(**llm_env(upstream), **TOKEN_ENV, ASKSTREAM_MAX_USER_GENERATIONS="1")
    url = service.url
    delivered = 0  # message events the clients were given, each stream read whole

    async with httpx.AsyncClient(timeout=20, headers=AUTH) as client:
        complete = await ask(client, url, "count these tokens please")
        assert complete.last.event == "done"
        delivered += len(complete.data())

        # Three pieces, then the upstream's error payload: failed after its first token.
        failed = await ask(client, url, "fake-fail: and then it breaks")
        assert failed.last.event == "error"
        assert len(failed.data()) == 3
        delivered += 3

        # Refused by the upstream (HTTP 503) before any token: 502, no stream.
        refused_upstream = await ask(client, url, "fake-refuse: no")
        assert refused_upstream.status == 502

        # A slow answer: resumed after its first event, a second ask refused by the
        # user's limit meanwhile (1 answer generating), then cancelled.
        async with client.stream(
            "POST", url + "/api/ask", json={"question": "fake-slow: cancel me" + " and on" * 20}
        ) as response:
            assert response.status_code == 200
            events = read_events(response)
            first = await anext(events)
            message_id = json.loads(first.data)["messageId"]
            over = await ask(client, url, "one too many")
            assert (over.status, over.body["code"]) == (429, 429)
            resumed = Answer(200, httpx.Headers())
            async with client.stream(
                "GET", f"{url}/api/streams/{message_id}", headers={"Last-Event-ID": first.id}
            ) as again:
                assert again.status_code == 200
                async for event in read_events(again):
                    resumed.events.append(event)
                    break  # one event, then this reader leaves
            cancel = await client.post(f"{url}/api/streams/{message_id}/cancel")
            assert cancel.status_code == 204
            rest = [first] + [event async for event in events]
        assert rest[-1].event == "done"
        assert json.loads(rest[-1].data)["finishReason"] == "cancelled"
        delivered += sum(1 for event in rest if event.event == "message")

        too_large = await client.post(url + "/api/ask", content=b"x" * (64 * 1024 + 1))
        assert too_large.status_code == 413

    samples = settled(url, lambda s: value(s, "askstream_readers") == 0, AUTH)
    assert value(samples, "askstream_asks_total", outcome="complete") == 1
    assert value(samples, "askstream_asks_total", outcome="failed") == 2
    assert value(samples, "askstream_asks_total", outcome="cancelled") == 1
    assert value(samples, "askstream_asks_total", outcome="refused") == 1
    assert value(samples, "askstream_tokens_total") == delivered
    assert value(samples, "askstream_resumes_total") == 1
    assert value(samples, "askstream_cancels_total", result="cancelled") == 1
    assert value(samples, "askstream_refusals_total", limit="user_generations") == 1
    assert value(samples, "askstream_refusals_total", limit="body_size") == 1
    assert value(samples, "askstream_refusals_total", limit="generations") == 0
    assert value(samples, "askstream_upstream_errors_total", kind="error_payload") == 1
    assert value(samples, "askstream_upstream_errors_total", kind="status") == 1
    # Three answers had a first token and a stream (the 502 had neither).
    assert value(samples, "askstream_first_token_seconds_count") == 3
    assert value(samples, "askstream_answer_seconds_count") == 3
    assert value(samples, "askstream_open_streams") == 0
    assert value(samples, "askstream_readers") == 0
    # One process: its own CPU and memory too.
    assert value(samples, "process_cpu_seconds_total") > 0


async def test_metrics_need_the_token_when_there_are_tokens(
    start_service: StartService,
) -> None:
    service = start_service(**TOKEN_ENV)
    async with httpx.AsyncClient(timeout=20) as client:
        missing = await client.get(service.url + "/metrics")
        wrong = await client.get(
            service.url + "/metrics", headers={"Authorization": "Bearer not-a-token"}
        )
        right = await client.get(service.url + "/metrics", headers=AUTH)
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.json()["code"] == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert right.status_code == 200
    assert "askstream_asks_total" in right.text


async def test_metrics_without_tokens_are_open_and_make_no_session(demo: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.get(demo.url + "/metrics")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert value(scrape(demo.url), "askstream_open_streams") >= 0


async def test_openmetrics_is_served_when_asked_for(demo: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.get(
            demo.url + "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_the_memory_store_tells_each_eviction() -> None:
    evicted: list[None] = []
    # Room for about one short answer (an event costs its data and ~170 bytes).
    store = MemoryStore(max_bytes=600, on_evict=lambda: evicted.append(None))
    for n in range(3):
        await store.create(f"m{n}")
        await store.append(f"m{n}", "x" * 200)
        await store.finish(f"m{n}")
    # Each new stream made room by dropping the finished one before it.
    assert len(evicted) == 2
    assert await store.status("m0") is None
    assert await store.status("m2") == "complete"
