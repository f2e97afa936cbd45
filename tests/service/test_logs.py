"""Logs (issue 16, item 2), read from a real service's stderr.

What must hold: with ``--log-format json`` every line is one JSON object (time,
level, logger, message, the ids), uvicorn's lines included; every response has
an ``X-Request-ID`` (the client's when it is sane, else a new one), and every
line of a request carries it; every line about an answer carries its chat and
message ids, also those its generation task logs after the ask's response
ended; a dependency's outage is one line down and one line back, however many
requests meet it (the issue saw 670 lines in 5 s with Redis down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from askstream.service import Settings
from askstream.service._logs import JsonFormatter, TextFormatter, bind_answer, detached
from askstream.sse import Event
from askstream.testing import ServerProcess, free_port

from .conftest import (
    AUTH,
    SERVICE_APP,
    SERVICE_ARGS,
    SERVICE_ENV,
    TOKEN,
    TOKEN_ENV,
    UPSTREAM_APP,
    ask,
    read_events,
)
from .faults import RedisServer, redis_server
from .test_outages import LEASE, RECOVERY, ask_until_done

pytestmark = pytest.mark.anyio

JSON_LOGS = {"ASKSTREAM_LOG_FORMAT": "json", "ASKSTREAM_LOG_LEVEL": "info"}
# About 85 words 20 ms apart: an answer still generates a second after its ask.
STEADY = {"ASKSTREAM_DEMO_DELAY": "0.02"}
NEW_ID = re.compile(r"[0-9a-f]{32}")
WAIT = 15.0  # seconds a line may take to appear in the log (a loaded machine)


@dataclass
class Logged:
    """A service whose stderr (its log) the test reads."""

    server: ServerProcess
    path: Path

    @property
    def url(self) -> str:
        return self.server.url

    def entries(self) -> list[dict[str, Any]]:
        """Every line of the log, each parsed as JSON (a line that is not fails the test)."""
        entries = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"a log line is not JSON: {line!r}")
            assert isinstance(entry, dict), line
            entries.append(entry)
        return entries

    async def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first entry ``match`` takes, once it is logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            found = [entry for entry in self.entries() if match(entry)]
            if found:
                return found[0]
            assert loop.time() < deadline, f"no such line in {WAIT} s: {self.entries()[-10:]}"
            await asyncio.sleep(0.05)


def _spawn(path: Path, data_dir: Path, env: dict[str, str]) -> tuple[Logged, IO[bytes]]:
    handle = path.open("wb")
    server = ServerProcess(
        SERVICE_APP,
        factory=True,
        env={
            "ASKSTREAM_DATA_DIR": str(data_dir),
            **SERVICE_ENV,
            **TOKEN_ENV,  # one user by token, whatever client asks
            **JSON_LOGS,
            **env,
        },
        args=SERVICE_ARGS,
        stderr=handle,
    )
    try:
        server.start()
    except BaseException:
        handle.close()
        raise
    return Logged(server, path), handle


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """One service logging JSON at info, for the tests that only read its log."""
    folder = tmp_path_factory.mktemp("logs")
    logged, handle = _spawn(folder / "service.log", folder / "data", STEADY)
    try:
        yield logged
    finally:
        logged.server.stop()
        handle.close()


Spawn = Callable[..., Logged]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """``spawn(ASKSTREAM_X=...)``: a JSON-logging service of this test's own."""
    started: list[tuple[Logged, IO[bytes]]] = []

    def spawn(**env: str) -> Logged:
        number = len(started)
        pair = _spawn(tmp_path / f"service{number}.log", tmp_path / f"data{number}", env)
        started.append(pair)
        return pair[0]

    yield spawn
    for logged, handle in started:
        logged.server.stop()
        handle.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0), headers=AUTH) as client:
        yield client


# -- the lines themselves (no server) -------------------------------------------


def _record(message: str, *, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        error = ValueError("broken\non two lines")
        exc_info = (ValueError, error, None)
    record = logging.LogRecord(
        "askstream.service", logging.ERROR, __file__, 1, message, (), exc_info
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_is_one_object_with_the_traceback_as_one_string() -> None:
    line = JsonFormatter().format(_record("answer failed\nbadly", exc=True, dependency="x"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["logger"] == "askstream.service"
    assert entry["message"] == "answer failed\nbadly"
    assert entry["dependency"] == "x"  # extra= fields are fields
    assert entry["exc"] == "ValueError: broken\non two lines"
    when = datetime.fromisoformat(entry["time"])
    assert entry["time"].endswith("Z")
    assert when.utcoffset() == timedelta(0)


def test_the_ids_of_the_context_are_on_the_line_in_both_formats() -> None:
    def logged_in_an_answer() -> tuple[str, str]:
        bind_answer(chat_id="c1", message_id="m1")
        record = _record("hello")
        return JsonFormatter().format(record), TextFormatter().format(record)

    as_json, as_text = detached().run(logged_in_an_answer)
    assert json.loads(as_json) | {"time": None} == {
        "time": None,
        "level": "error",
        "logger": "askstream.service",
        "message": "hello",
        "chat_id": "c1",
        "message_id": "m1",
    }
    assert as_text == "ERROR     askstream.service: hello [chat=c1 message=m1]"
    # Outside that context nothing is left over: the ids were the context's only.
    assert TextFormatter().format(_record("bye")) == "ERROR     askstream.service: bye"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "text"), ({"ASKSTREAM_LOG_FORMAT": "JSON"}, "json")],
    ids=["default", "variable"],
)
def test_the_log_format_is_a_setting(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).log_format == expected
    assert Settings.from_env(env, log_format="text").log_format == "text"  # the flag wins


def test_a_log_format_of_another_name_is_refused_with_its_variable() -> None:
    with pytest.raises(ValueError, match="ASKSTREAM_LOG_FORMAT: must be one of text, json"):
        Settings.from_env({"ASKSTREAM_LOG_FORMAT": "xml"})


# -- request ids ------------------------------------------------------------------


def _access(entry: dict[str, Any], request_id: str) -> bool:
    return entry["logger"] == "askstream.access" and entry.get("request_id") == request_id


async def test_a_given_request_id_is_returned_and_on_every_line_of_the_request(
    service: Logged, client: httpx.AsyncClient
) -> None:
    rid = "trace-7f3a-given-by-the-proxy"
    answer = await ask(client, service.url, "Hi?", headers={"X-Request-ID": rid})
    assert answer.status == 200
    assert answer.headers["x-request-id"] == rid
    done = answer.done
    ended = await service.wait_for(
        lambda e: e["message"].startswith(f"answer {done['messageId']} ended")
    )
    access = await service.wait_for(lambda e: _access(e, rid))
    for entry in (ended, access):
        assert entry["request_id"] == rid
        assert entry["chat_id"] == done["chatId"]
        assert entry["message_id"] == done["messageId"]
    assert access["method"] == "POST"
    assert access["path"] == "/api/ask"
    assert access["status"] == 200
    assert ended["outcome"] == "complete"
    # Every line that names the answer is one of its request's.
    about = [e for e in service.entries() if done["messageId"] in e["message"]]
    assert about
    assert {e.get("request_id") for e in about} == {rid}


async def test_a_request_without_an_id_gets_a_new_one_each(
    service: Logged, client: httpx.AsyncClient
) -> None:
    first = await client.get(service.url + "/api/health")
    second = await client.get(service.url + "/api/health")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(NEW_ID.fullmatch(rid) for rid in ids), ids
    assert ids[0] != ids[1]
    for rid in ids:
        access = await service.wait_for(lambda e, rid=rid: _access(e, rid))
        assert (access["path"], access["status"]) == ("/api/health", 200)


@pytest.mark.parametrize(
    "given",
    [b"x" * 129, b"two words", b"caf\xe9", b"tab\there", b""],
    ids=["too-long", "space", "not-ascii", "tab", "empty"],
)
async def test_an_unfit_request_id_is_replaced_by_a_new_one(service: Logged, given: bytes) -> None:
    # Raw bytes on a socket: httpx would refuse to send some of these.
    rid = _raw_get(service, "/api/health", given)
    assert NEW_ID.fullmatch(rid), rid
    await service.wait_for(lambda e: _access(e, rid))
    shown = given.decode("latin-1")
    assert not [e for e in service.entries() if e.get("request_id") == shown]


def test_a_request_id_of_128_printable_characters_is_kept(service: Logged) -> None:
    given = b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8" + b"~" * 64
    assert len(given) == 128
    assert _raw_get(service, "/api/health", given) == given.decode()


def _raw_get(service: Logged, path: str, request_id: bytes) -> str:
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: %s\r\n"
            b"Connection: close\r\n\r\n" % (path.encode(), request_id)
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    found = re.search(r"(?im)^x-request-id: (.*)$", head)
    assert found is not None, head
    return found.group(1).strip()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/no-such-route", {}, 404),
        ("POST", "/api/ask", {"content": b"x" * (64 * 1024 + 1)}, 413),  # BodyLimit
        ("GET", "/api/chats", {"headers": {"Host": "evil.example"}}, 400),  # SiteGuard
        ("GET", "/api/chats", {"headers": {"Authorization": "Bearer wrong"}}, 401),  # Identify
        ("POST", "/api/ask", {"json": {"question": 7}}, 422),
        ("GET", "/api/streams/no-such-stream", {}, 404),
    ],
    ids=["404-route", "413-middleware", "400-host", "401-token", "422-body", "404-stream"],
)
async def test_an_error_answer_has_the_request_id_too(
    service: Logged,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    rid = f"error-{status}-{path.count('/')}-{len(kwargs)}"
    headers = {"X-Request-ID": rid, **kwargs.pop("headers", {})}
    response = await client.request(method, service.url + path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["code"] == status
    assert response.headers["x-request-id"] == rid
    access = await service.wait_for(lambda e: _access(e, rid))
    assert access["status"] == status


async def test_the_connection_caps_503_has_the_request_id_too(
    spawn: Spawn, client: httpx.AsyncClient
) -> None:
    # OpenLimit, the middleware just inside RequestId, refuses before any route.
    service = spawn(ASKSTREAM_MAX_CONNECTIONS="1", ASKSTREAM_DEMO_DELAY="0.05")
    async with client.stream("POST", service.url + "/api/ask", json={"question": "Hi?"}) as held:
        assert held.status_code == 200
        refused = await client.get(service.url + "/api/chats", headers={"X-Request-ID": "over"})
    assert refused.status_code == 503
    assert refused.json()["code"] == 503
    assert refused.headers["x-request-id"] == "over"
    access = await service.wait_for(lambda e: _access(e, "over"))
    assert access["status"] == 503


async def test_the_access_line_has_the_path_as_sent_so_a_line_break_cannot_forge_one(
    service: Logged, client: httpx.AsyncClient
) -> None:
    rid = "path-with-a-line-break"
    path = "/api/chats/x%0AWARNING%20forged"
    response = await client.get(service.url + path, headers={"X-Request-ID": rid})
    assert response.status_code == 404
    access = await service.wait_for(lambda e: _access(e, rid))
    assert access["path"] == path
    assert "\n" not in access["message"]
    assert "chat_id" not in access  # no such chat: its id is not named


async def test_a_stream_has_the_request_id_and_its_reader_logs_the_message_id(
    service: Logged, client: httpx.AsyncClient
) -> None:
    done = (await ask(client, service.url, "Hello?")).done
    rid = "reader-of-a-finished-answer"
    answer = await ask(
        client,
        service.url,
        method="GET",
        path=f"/api/streams/{done['messageId']}",
        headers={"X-Request-ID": rid, "Last-Event-ID": "1"},
    )
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-request-id"] == rid
    assert answer.last.event == "done"
    access = await service.wait_for(lambda e: _access(e, rid))
    assert access["message_id"] == done["messageId"]


async def test_a_generation_task_logs_with_its_asks_ids_after_the_response_ended(
    service: Logged, client: httpx.AsyncClient
) -> None:
    rid = "asker-who-leaves-early"
    async with client.stream(
        "POST",
        service.url + "/api/ask",
        json={"question": "a long question"},
        headers={"X-Request-ID": rid},
    ) as response:
        first = json.loads((await anext(read_events(response))).data)
    # The reader left after one piece: its response ends, the answer goes on.
    access = await service.wait_for(lambda e: _access(e, rid))
    ended = await service.wait_for(
        lambda e: e["message"].startswith(f"answer {first['messageId']} ended")
    )
    entries = service.entries()
    assert entries.index(access) < entries.index(ended)  # logged after the response ended
    assert ended["request_id"] == rid
    assert ended["chat_id"] == first["chatId"]
    assert ended["message_id"] == first["messageId"]
    assert ended["outcome"] == "complete"  # nobody cancelled it


async def test_uvicorns_own_lines_are_json_too(service: Logged) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    assert (await reader.read(12)).startswith(b"HTTP/1.1 400")
    writer.close()
    await writer.wait_closed()
    entry = await service.wait_for(lambda e: e["logger"] == "uvicorn.error")
    assert entry["level"] == "warning"
    assert "Invalid HTTP request" in entry["message"]
    for entry in service.entries():
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry


# -- askstream serve --------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_serve_logs_each_request_once_in_the_format_asked_for(
    tmp_path: Path, log_format: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "askstream.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path), "--log-format", log_format]
    env = {**os.environ, **SERVICE_ENV, "ASKSTREAM_LOG_LEVEL": "info"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            assert process.stdout.readline().startswith("askstream is running")
            response = httpx.get(url + "/api/health", headers={"X-Request-ID": "via-serve"})
            assert response.headers["x-request-id"] == "via-serve"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        lines = process.stderr.read().splitlines()
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line, or this fails
        access = [e for e in entries if e["logger"] == "askstream.access"]
        assert [(e["request_id"], e["path"], e["status"]) for e in access] == [
            ("via-serve", "/api/health", 200)
        ]
    else:
        access = [line for line in lines if "askstream.access" in line]
        assert len(access) == 1, lines
        assert access[0].startswith("INFO      askstream.access: GET /api/health 200 ")
        assert access[0].endswith(" [request=via-serve]")
    # uvicorn's access log is off in favour of ours; its start-up lines give
    # way to the one "askstream is running" on stdout.
    assert not [line for line in lines if "HTTP/1.1" in line or "Uvicorn running" in line]


# -- dependencies: one line down, one line back ------------------------------------

MANY = 30  # requests that meet the outage
IN_FLIGHT = 5  # answers streaming when it begins


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def _changes(entries: list[dict[str, Any]], dependency: str) -> list[str]:
    return [e["state"] for e in entries if e.get("dependency") == dependency]


async def test_a_redis_outage_met_by_many_requests_is_one_line_down_and_one_back(
    own_redis: RedisServer, spawn: Spawn, client: httpx.AsyncClient
) -> None:
    # Answers of a word every 50 ms: they are still generating when Redis dies.
    service = spawn(ASKSTREAM_REDIS_URL=own_redis.url, ASKSTREAM_DEMO_DELAY="0.05", **LEASE)
    url = service.url
    ids = [f"in-flight-{n}" for n in range(IN_FLIGHT)] + [f"during-outage-{n}" for n in range(MANY)]
    readers: list[tuple[str, AsyncIterator[Event]]] = []
    async with contextlib.AsyncExitStack() as streams:
        for rid in ids[:IN_FLIGHT]:
            response = await streams.enter_async_context(
                client.stream(
                    "POST",
                    url + "/api/ask",
                    json={"question": "A long one?"},
                    headers={"X-Request-ID": rid},
                )
            )
            events = read_events(response)
            first = json.loads((await anext(events)).data)
            readers.append((first["messageId"], events))
        own_redis.kill()  # while those answers generate, and these requests arrive:
        arriving = [
            client.post(url + "/api/ask", json={"question": "Now?"}, headers={"X-Request-ID": rid})
            for rid in ids[IN_FLIGHT : IN_FLIGHT + MANY // 2]
        ] + [
            client.get(f"{url}/api/streams/{readers[0][0]}", headers={"X-Request-ID": rid})
            for rid in ids[IN_FLIGHT + MANY // 2 :]
        ]
        responses = await asyncio.gather(*arriving)
        assert {response.status_code for response in responses} == {503}
        for _, events in readers:  # each reader in flight ends with error 503
            last = [event async for event in events][-1]
            assert (last.event, json.loads(last.data)["code"]) == ("error", 503)
    own_redis.start()  # on the same port, empty
    await ask_until_done(client, url, RECOVERY)

    entries = service.entries()
    assert _changes(entries, "the stream store") == ["down", "up"], entries
    # At most the request that noticed the outage logged more than its access line.
    noticed = [e for e in entries if e.get("request_id") in ids and e["level"] != "info"]
    assert len(noticed) <= 1, noticed
    assert not [e for e in entries if "exc" in e], "a traceback for an outage"
    # The answers in flight were lost with Redis's data: a line each may name
    # them. Every other line is about the outage, a few of them, not one per request.
    lost = {message_id for message_id, _ in readers}
    warnings = [e for e in entries if e["level"] != "info" and e.get("message_id") not in lost]
    assert len(warnings) < 10, warnings
    kinds = [e["message"].split("(")[0] for e in warnings]
    assert len(kinds) == len(set(kinds)), kinds  # each part of the service says it once


async def test_the_models_api_failing_for_many_asks_is_one_line_down_and_one_back(
    spawn: Spawn, client: httpx.AsyncClient
) -> None:
    port = free_port()  # nothing listens there yet
    service = spawn(
        ASKSTREAM_LLM_URL=f"http://127.0.0.1:{port}/v1",
        ASKSTREAM_LLM_MODEL="fake",
        ASKSTREAM_LLM_CONNECT_TIMEOUT="2",
    )
    ids = [f"model-away-{n}" for n in range(MANY)]
    responses = await asyncio.gather(
        *(
            client.post(
                service.url + "/api/ask", json={"question": "Hi?"}, headers={"X-Request-ID": rid}
            )
            for rid in ids
        )
    )
    assert {response.status_code for response in responses} == {502}
    with ServerProcess(UPSTREAM_APP, factory=True, port=port):
        answer = await ask(client, service.url, "Back?")
    assert answer.status == 200
    assert answer.done["finishReason"] == "stop"

    entries = service.entries()
    changes = [e for e in entries if e.get("dependency") == "the model's API"]
    assert [e["state"] for e in changes] == ["down", "up"], entries
    assert f"({MANY} asks failed meanwhile)" in changes[1]["message"]
    assert not [e for e in entries if e["level"] != "info" and e not in changes], entries
    assert TOKEN not in service.path.read_text()  # the token is never logged
