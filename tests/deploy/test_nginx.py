"""deploy/nginx.conf, run by Debian's nginx in front of two instances on Redis and PostgreSQL.

Every request of these tests goes through nginx, as a browser's would; the
instances are reached directly only to stop them. nginx's access log says which
instance served what.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from askstream.sse import Decoder, Event
from askstream.testing import ServerProcess

from ..conftest import StartServer
from ..service.conftest import UPSTREAM_APP, llm_env
from .conftest import Nginx, StartNginx, StartPair, address

pytestmark = pytest.mark.anyio

TERMINAL = {"done", "error"}
# How a stopped uvicorn exits: 0, or killed by the SIGTERM it re-raises once stopped.
STOPPED = {0, -signal.SIGTERM}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
        yield client


@dataclass
class Received:
    """One connection's stream: its events, when each arrived, and the bytes."""

    location: str = ""
    served_by: str = ""  # the instance nginx passed the request to
    events: list[Event] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)  # time.monotonic_ns() per event
    raw: bytearray = field(default_factory=bytearray)

    @property
    def complete(self) -> bool:
        return bool(self.events) and self.events[-1].event in TERMINAL


async def receive(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    after: str | None = None,
    limit: int | None = None,
    into: Received | None = None,
    begun: asyncio.Future[Event] | None = None,
    **kwargs: Any,
) -> Received:
    """Read a stream to its end, or drop it after ``limit`` events (``into``: a
    Received that keeps what came if the connection breaks; ``begun``: set to the
    first event)."""
    received = Received() if into is None else into
    headers = {"Last-Event-ID": after} if after else {}
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        received.location = response.headers["content-location"]
        received.served_by = response.headers["x-served-by"].split(", ")[-1]
        decoder = Decoder()
        async for chunk in response.aiter_bytes():
            now = time.monotonic_ns()
            received.raw += chunk
            for event in decoder.feed(chunk):
                received.events.append(event)
                received.arrived.append(now)
                if begun is not None and not begun.done():
                    begun.set_result(event)
                if event.event in TERMINAL or len(received.events) == limit:
                    return received
    return received


def ask(question: str) -> dict[str, Any]:
    return {"json": {"chatId": None, "question": question}}


def deltas(events: list[Event]) -> str:
    return "".join(json.loads(e.data)["delta"] for e in events if e.event == "message")


def check_whole(events: list[Event]) -> str:
    """Every id once, in order from 1; a `done` whose answer is the deltas: the answer."""
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1].event == "done", events[-1]
    answer = deltas(events)
    assert json.loads(events[-1].data)["answer"] == answer
    return answer


async def stored(client: httpx.AsyncClient, nginx: Nginx, event: Event) -> dict[str, Any]:
    chat_id = json.loads(event.data)["chatId"]  # a message event of the answer
    chat = (await client.get(f"{nginx.url}/api/chats/{chat_id}")).json()
    message: dict[str, Any] = chat["messages"][-1]
    return message


# -- no buffering ----------------------------------------------------------------------


async def test_the_first_token_reaches_the_client_within_100_ms_of_leaving_the_model(
    start_server: StartServer,
    start_pair: StartPair,
    start_nginx: StartNginx,
    client: httpx.AsyncClient,
) -> None:
    # Each piece is the time the model sent it (time.monotonic_ns(), one clock
    # for every process on the machine), 20 pieces 50 ms apart.
    model = start_server(
        UPSTREAM_APP,
        factory=True,
        env={
            "ASKSTREAM_FAKE_STAMP": "1",
            "ASKSTREAM_FAKE_TOKENS": "20",
            "ASKSTREAM_FAKE_DELAY": "0.05",
        },
    )
    a, b = start_pair(**llm_env(model))
    nginx = start_nginx([a, b])
    served: set[str] = set()
    while served != {address(a), address(b)}:  # an ask on each instance at least
        assert len(nginx.served()) < 6, "nginx sends every ask to the same instance"
        answer = await receive(client, "POST", nginx.url + "/api/ask", **ask("when?"))
        check_whole(answer.events)
        sent = [int(stamp) for stamp in deltas(answer.events).split()]
        assert len(sent) == 20
        first = json.loads(answer.events[0].data)["delta"]
        latency_ms = (answer.arrived[0] - int(first.split()[0])) / 1e6
        assert latency_ms < 100, f"the first token took {latency_ms:.1f} ms through nginx"
        # Held by nothing: the client had it while the model was still writing.
        assert answer.arrived[0] < sent[-1]
        served.add(answer.served_by)


# -- heartbeats -------------------------------------------------------------------------


async def test_a_quiet_answer_outlives_proxy_read_timeout_thanks_to_heartbeats(
    start_server: StartServer,
    start_pair: StartPair,
    start_nginx: StartNginx,
    client: httpx.AsyncClient,
) -> None:
    # Two pieces, then the model thinks for 3 s (three proxy_read_timeouts),
    # then the rest; the instances send `: ping` after 0.3 s of quiet.
    model = start_server(
        UPSTREAM_APP,
        factory=True,
        env={
            "ASKSTREAM_FAKE_TOKENS": "4",
            "ASKSTREAM_FAKE_FAIL_AFTER": "2",
            "ASKSTREAM_FAKE_SLOW_DELAY": "3",
        },
    )
    a, b = start_pair(**llm_env(model, "fake-stall"), ASKSTREAM_HEARTBEAT="0.3")
    nginx = start_nginx([a, b], proxy_read_timeout="1s")
    answer = await receive(client, "POST", nginx.url + "/api/ask", **ask("think first"))
    assert check_whole(answer.events) == " tok0 tok1 tok2 tok3"
    silence = max(later - earlier for earlier, later in itertools.pairwise(answer.arrived))
    assert silence > 1e9, "no event-free second: proxy_read_timeout was never at stake"
    assert answer.raw.count(b": ping\n\n") >= 3, bytes(answer.raw)


# -- resume ---------------------------------------------------------------------------


async def test_a_resume_through_nginx_lands_on_the_other_instance_and_completes_the_answer(
    start_pair: StartPair, start_nginx: StartNginx, client: httpx.AsyncClient
) -> None:
    # About 85 pieces 30 ms apart: the answer is still being written on its
    # instance when the resume arrives on the other.
    a, b = start_pair(ASKSTREAM_DEMO_DELAY="0.03")
    nginx = start_nginx([a, b])
    first = await receive(client, "POST", nginx.url + "/api/ask", limit=5, **ask("resume me"))
    assert not first.complete
    generating = first.served_by
    # Route everything else to the other instance, as an operator draining one would.
    nginx.reload(down=[generating])
    rest = await receive(client, "GET", nginx.url + first.location, after=first.events[-1].id)
    events = first.events + rest.events
    answer = check_whole(events)
    assert answer.startswith("You asked: “resume me”.")
    assert {rest.served_by, generating} == {address(a), address(b)}
    message = await stored(client, nginx, events[0])
    assert (message["status"], message["content"]) == ("complete", answer)


async def test_a_finished_answer_resumes_through_nginx_while_its_instance_is_down(
    start_pair: StartPair, start_nginx: StartNginx, client: httpx.AsyncClient
) -> None:
    a, b = start_pair(ASKSTREAM_DEMO_DELAY="0.01")
    instances = {address(a): a, address(b): b}
    nginx = start_nginx([a, b])
    first = await receive(client, "POST", nginx.url + "/api/ask", limit=3, **ask("stop A"))
    generating = first.served_by
    async with asyncio.timeout(10):  # the answer ends in the log without a reader
        while True:
            if (await stored(client, nginx, first.events[0]))["status"] == "complete":
                break
            await asyncio.sleep(0.05)
    instances.pop(generating).stop()
    [remaining] = instances
    # Round robin sends one of two requests to the stopped instance first: nginx
    # does not know yet, is refused, and moves on (proxy_next_upstream error).
    for _ in range(2):
        rest = await receive(client, "GET", nginx.url + first.location, after="3")
        assert rest.served_by == remaining
        check_whole(first.events + rest.events)
    tried = [line.upstreams for line in nginx.served()[-2:]]
    assert [generating, remaining] in tried, tried


# -- SIGTERM ----------------------------------------------------------------------------


@dataclass
class Followed:
    """One reader's whole answer, over as many connections as it took."""

    events: list[Event] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)  # each connection's, in order
    notices: list[Event] = field(default_factory=list)  # events without an id line
    cut: int = 0  # connections that broke off mid-body


async def follow_to_the_end(
    client: httpx.AsyncClient,
    nginx: Nginx,
    method: str,
    path: str,
    begun: asyncio.Future[Event] | None = None,
    **kwargs: Any,
) -> Followed:
    """Read an answer through nginx as a client does: when the connection ends
    before the answer does, resume after the last id it kept."""
    followed = Followed()
    while True:
        received = Received()
        after = followed.events[-1].id if followed.events else None
        try:
            await receive(
                client, method, nginx.url + path, after=after, into=received, begun=begun, **kwargs
            )
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # A body cut short is a reason to resume, as for any client; what
            # came before the cut counts.
            followed.cut += 1
        followed.instances.append(received.served_by)
        # Each event of the answer's log has an id of its own. One without an id
        # line (SSE gives it the last id again) is the connection's, not the
        # answer's: a stopping instance's notice to resume.
        for event in received.events:
            if event.id and (not followed.events or event.id != followed.events[-1].id):
                followed.events.append(event)
            else:
                followed.notices.append(event)
        if followed.events and followed.events[-1].event in TERMINAL:
            return followed
        assert received.location, "the first request failed before its answer began"
        assert len(followed.instances) < 6, followed
        method, path, kwargs = "GET", received.location, {}


async def sigterm_mid_answer(
    client: httpx.AsyncClient, nginx: Nginx, victim: ServerProcess
) -> list[list[Followed]]:
    """Four asks through nginx (round robin: two on each instance), three more
    readers of each; SIGTERM ``victim`` once every reader has an event; every
    reader followed to its answer's end. Per ask: the asker, then its readers."""
    # One browser session for every request: asks sent together before the client
    # had one would each make a new anonymous user, strangers to each other.
    assert (await client.get(nginx.url + "/api/chats")).status_code == 200
    loop = asyncio.get_running_loop()
    firsts = [loop.create_future() for _ in range(4)]
    asks = [
        asyncio.create_task(
            follow_to_the_end(client, nginx, "POST", "/api/ask", first, **ask(f"SIGTERM {n}"))
        )
        for n, first in enumerate(firsts)
    ]
    async with asyncio.timeout(10):
        ids = [json.loads((await first).data)["messageId"] for first in firsts]
    joined = [[loop.create_future() for _ in range(3)] for _ in ids]
    readers = [
        [
            asyncio.create_task(follow_to_the_end(client, nginx, "GET", f"/api/streams/{m}", first))
            for first in firsts
        ]
        for m, firsts in zip(ids, joined, strict=True)
    ]
    async with asyncio.timeout(10):
        await asyncio.gather(*(first for firsts in joined for first in firsts))
    victim.terminate()
    async with asyncio.timeout(30):
        return [
            [await asker, *await asyncio.gather(*tasks)]
            for asker, tasks in zip(asks, readers, strict=True)
        ]


def the_same_for_everyone(readers: list[Followed]) -> list[Event]:
    """What every reader of an answer got: the same events, each id once, in order."""
    events = readers[0].events
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1].event in TERMINAL
    for reader in readers[1:]:
        assert reader.events == events
    return events


async def test_a_sigterm_loses_nothing_for_readers_through_nginx_as_answers_finish(
    start_pair: StartPair, start_nginx: StartNginx, client: httpx.AsyncClient
) -> None:
    # About 2.5 s an answer: well within shutdown_timeout (10 s).
    a, b = start_pair(ASKSTREAM_DEMO_DELAY="0.03", ASKSTREAM_SHUTDOWN_TIMEOUT="10")
    nginx = start_nginx([a, b])
    answers = await sigterm_mid_answer(client, nginx, a)
    assert a.wait(11 + 5) in STOPPED
    on_a = [r for readers in answers for r in readers if r.instances[0] == address(a)]
    assert len(on_a) >= 4, "no reader of A: the SIGTERM concerned nobody"
    for readers in answers:
        events = the_same_for_everyone(readers)
        answer = check_whole(events)
        message = await stored(client, nginx, events[0])
        assert (message["status"], message["content"]) == ("complete", answer)


async def test_readers_cut_by_a_sigterm_resume_through_nginx_and_lose_nothing(
    start_pair: StartPair, start_nginx: StartNginx, client: httpx.AsyncClient
) -> None:
    # About 4 s an answer, and the stopping instance gives them 1 s: then it
    # ends its readers' streams, whatever answer they follow, and they resume
    # through nginx.
    a, b = start_pair(ASKSTREAM_DEMO_DELAY="0.05", ASKSTREAM_SHUTDOWN_TIMEOUT="1")
    nginx = start_nginx([a, b])
    answers = await sigterm_mid_answer(client, nginx, a)
    assert a.wait(2 + 5) in STOPPED
    generated_on = [readers[0].instances[0] for readers in answers]
    assert sorted(generated_on) == sorted([address(a), address(b)] * 2)
    resumed = 0
    for readers, instance in zip(answers, generated_on, strict=True):
        events = the_same_for_everyone(readers)
        message = await stored(client, nginx, events[0])
        assert message["content"] == deltas(events)
        if instance == address(b):  # B never stopped: its answers are whole for every reader
            assert (message["status"], message["content"]) == ("complete", check_whole(events))
            on_a = [r for r in readers if r.instances[0] == address(a)]
            for reader in on_a:  # told to resume, they did so on B
                assert len(reader.instances) > 1, reader
                assert reader.instances[-1] == address(b), reader
                assert "resume" in json.loads(reader.notices[-1].data)["message"]
            resumed += len(on_a)
        else:  # A's own: cancelled after 1 s, the same in the log and the history
            assert json.loads(events[-1].data)["code"] == 503
            assert message["status"] == "cancelled"
    assert resumed > 0, "no reader of B's answers was on A: the SIGTERM cut nobody"
    # Every connection ended with whole chunked bodies, through nginx too.
    assert [r.cut for readers in answers for r in readers] == [0] * 16


# -- nginx's own refusals -------------------------------------------------------------------


async def test_nginx_refuses_in_askstreams_error_shape(
    start_pair: StartPair, start_nginx: StartNginx, client: httpx.AsyncClient
) -> None:
    a, b = start_pair(ASKSTREAM_DEMO_DELAY="0.05")  # about 4 s an answer
    nginx = start_nginx([a, b], limit_conn="askstream_per_address 2")

    def refused(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["code"] == status
        return str(body["message"])

    too_large = {"chatId": None, "question": "x" * 70_000}  # over client_max_body_size 64k
    assert "body" in refused(await client.post(nginx.url + "/api/ask", json=too_large), 413)
    long_header = {"X-Padding": "x" * 9000}  # over one large_client_header_buffers buffer
    response = await client.get(nginx.url + "/api/health", headers=long_header)
    assert "head" in refused(response, 431)
    # Two streams open from this address: a third request is one too many.
    async with (
        client.stream("POST", nginx.url + "/api/ask", **ask("one")) as one,
        client.stream("POST", nginx.url + "/api/ask", **ask("two")) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        assert "connections" in refused(await client.get(nginx.url + "/api/health"), 429)
    assert (await client.get(nginx.url + "/api/health")).status_code == 200
    a.stop()
    b.stop()
    response = await client.get(nginx.url + "/api/health")
    assert "no askstream instance" in refused(response, 503)
    assert response.headers["retry-after"] == "1"
