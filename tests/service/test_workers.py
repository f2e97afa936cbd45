"""``askstream serve --workers N``: N processes on one port, any of them serving any answer.

Which worker served a request is read from outside, as an operator would: the
worker process (a child of ``serve``) whose socket is the other end of the
client's connection (psutil). No header or log line of ours is needed for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from askstream.service import Settings, create_app
from askstream.testing import ServerProcess

from .conftest import AUTH, SERVICE_APP, SERVICE_ENV, TOKEN_ENV, _delete_keys, llm_env, read_events
from .scrape import settled, value

pytestmark = pytest.mark.anyio

# About 60 pieces, 0.3 s apart (the upstream's slow mode): an answer that lasts
# well past what a test does with it on a loaded machine.
LONG = " and on" * 30


class Serve(ServerProcess):
    """``askstream serve`` with this server's arguments, as a server process."""

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "askstream.cli", "serve",
            "--host", self.host, "--port", str(self.port), *self._args,
        ]  # fmt: skip


def _ready(server: ServerProcess) -> None:
    # The parent binds the port before its workers start: wait for an answer.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/api/health", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("no worker answered within 60 s")


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ServerProcess,
    shared_parts: dict[str, str],
) -> Iterator[ServerProcess]:
    """``askstream serve --workers 2`` on Redis and PostgreSQL, in front of the fake upstream."""
    prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
    server = Serve(
        "askstream serve --workers 2",
        env={
            **shared_parts,
            **SERVICE_ENV,
            **TOKEN_ENV,
            **llm_env(upstream),
            "ASKSTREAM_REDIS_PREFIX": prefix,
            "ASKSTREAM_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "ASKSTREAM_SHUTDOWN_TIMEOUT": "1",
        },
        # A flag, so that the workers are seen to get the command line's settings too.
        args=["--workers", "2", "--lease-ttl", "2", "--lease-renew", "0.5"],
    )
    server.start()
    try:
        _ready(server)
        yield server
    finally:
        server.stop()
        _delete_keys(prefix)


def worker_pids(server: ServerProcess) -> set[int]:
    """The worker processes of ``serve``: its children that listen on the port."""
    pids = set()
    for child in psutil.Process(server.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                for c in child.net_connections(kind="tcp")
            ):
                pids.add(child.pid)
    return pids


def served_by(server: ServerProcess, response: httpx.Response) -> int:
    """The worker holding the other end of ``response``'s connection (still open)."""
    _, port = response.extensions["network_stream"].get_extra_info("client_addr")
    for child in psutil.Process(server.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            for connection in child.net_connections(kind="tcp"):
                if connection.raddr and connection.raddr.port == port:
                    return child.pid
    raise AssertionError(f"no worker holds the connection from port {port}")


@contextlib.asynccontextmanager
async def fresh() -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own: a new connection, so the kernel picks a worker anew."""
    async with httpx.AsyncClient(timeout=20, headers=AUTH) as client:
        yield client


@pytest.mark.slow
async def test_any_worker_serves_resumes_and_cancels_any_answer(workers: ServerProcess) -> None:
    url = workers.url
    both = worker_pids(workers)
    assert len(both) == 2
    asked_on: set[int] = set()
    resumed_elsewhere = cancelled_elsewhere = 0
    rounds = 0
    while rounds < 40 and not (asked_on == both and resumed_elsewhere and cancelled_elsewhere):
        rounds += 1
        async with (
            fresh() as client,
            client.stream(
                "POST", url + "/api/ask", json={"question": f"fake-slow: round {rounds}{LONG}"}
            ) as response,
        ):
            assert response.status_code == 200
            asker = served_by(workers, response)
            first = await anext(read_events(response))
        message_id = json.loads(first.data)["messageId"]
        async with (
            fresh() as client,
            client.stream(
                "GET", f"{url}/api/streams/{message_id}", headers={"Last-Event-ID": first.id}
            ) as response,
        ):
            assert response.status_code == 200
            resumer = served_by(workers, response)
            event = await anext(read_events(response))
            assert int(event.id or 0) == int(first.id or 0) + 1
        async with fresh() as client:
            response = await client.post(f"{url}/api/streams/{message_id}/cancel")
            assert response.status_code == 204, response.text
            canceller = served_by(workers, response)
        async with fresh() as client:
            response = await client.get(f"{url}/api/streams/{message_id}")
            assert response.status_code == 200
        last = response.text.rstrip().split("\n\n")[-1]
        assert "event: done" in last
        assert '"finishReason":"cancelled"' in last
        asked_on.add(asker)
        resumed_elsewhere += resumer != asker
        cancelled_elsewhere += canceller != asker
    assert asked_on == both, f"after {rounds} rounds, every ask went to {asked_on}"
    assert resumed_elsewhere, f"after {rounds} rounds, no resume reached another worker"
    assert cancelled_elsewhere, f"after {rounds} rounds, no cancel reached another worker"

    # Each worker counted its own; any scrape adds up both.
    samples = settled(
        url, lambda s: value(s, "askstream_asks_total", outcome="cancelled") >= rounds, AUTH
    )
    assert value(samples, "askstream_asks_total", outcome="cancelled") == rounds
    assert value(samples, "askstream_resumes_total") == rounds
    assert value(samples, "askstream_cancels_total", result="cancelled") == rounds


@pytest.mark.slow
async def test_a_killed_workers_live_gauges_leave_the_sum(workers: ServerProcess) -> None:
    url = workers.url
    readers: dict[int, int] = {}  # worker: readers open on it
    async with contextlib.AsyncExitStack() as stack:
        for n in range(40):
            client = await stack.enter_async_context(fresh())
            response = await stack.enter_async_context(
                client.stream("POST", url + "/api/ask", json={"question": f"fake-slow: {n}{LONG}"})
            )
            assert response.status_code == 200
            worker = served_by(workers, response)
            readers[worker] = readers.get(worker, 0) + 1
            if len(readers) == 2:
                break
        assert len(readers) == 2, "forty new connections all went to one worker"
        total = sum(readers.values())
        before = settled(url, lambda s: value(s, "askstream_readers") == total, AUTH)
        assert value(before, "askstream_readers") == total
        victim, survivor = sorted(readers)
        os.kill(victim, signal.SIGKILL)
        # The survivor's readers stay; the victim's leave the sum once a scrape
        # sees its process is dead (uvicorn starts a new worker meanwhile).
        left = readers[survivor]
        after = settled(url, lambda s: value(s, "askstream_readers") == left, AUTH)
        assert value(after, "askstream_readers") == left
        assert victim not in worker_pids(workers)


@pytest.mark.parametrize(
    ("command", "env"),
    [
        pytest.param(["-m", "askstream.cli", "serve", "--workers", "2"], {}, id="serve"),
        # uvicorn starts its workers (fresh interpreters) before one fails: seconds.
        pytest.param(
            ["-m", "uvicorn", "--factory", SERVICE_APP, "--workers", "2"],
            {},
            id="uvicorn",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["-m", "uvicorn", "--factory", SERVICE_APP],
            {"WEB_CONCURRENCY": "2"},
            id="env",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_workers_with_the_memory_store_are_refused(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    from askstream.testing import free_port

    environ = {key: value for key, value in os.environ.items() if not key.startswith("ASKSTREAM_")}
    environ.pop("WEB_CONCURRENCY", None)
    environ.update(env, ASKSTREAM_DATA_DIR=str(tmp_path), ASKSTREAM_LOG_LEVEL="warning")
    done = subprocess.run(
        [sys.executable, *command, "--port", str(free_port("127.0.0.1"))],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # It stopped by itself (within the timeout), saying why. `serve` exits 2 as
    # for any setting it refuses; uvicorn's supervisor exits 0 whatever its
    # workers did, once one failed its startup.
    if command[1] == "askstream.cli":
        assert done.returncode == 2
    assert "ASKSTREAM_REDIS_URL" in done.stderr, done.stderr[-2000:]


async def test_create_app_refuses_the_memory_store_for_several_workers(tmp_path: Path) -> None:
    from askstream.streams import MemoryStore

    settings = Settings(workers=2, data_dir=tmp_path, demo_delay=0.0)
    app = create_app(settings)
    with pytest.raises(ValueError, match="ASKSTREAM_REDIS_URL"):
        async with app.router.lifespan_context(app):
            pass
    # One worker, or a store of the caller's own, starts.
    for app in (
        create_app(Settings(workers=1, data_dir=tmp_path, demo_delay=0.0)),
        create_app(settings, store=MemoryStore()),
    ):
        async with app.router.lifespan_context(app):
            pass


def test_the_flags_reach_the_workers_as_the_same_settings(tmp_path: Path) -> None:
    # serve --workers writes the flags it was given as ASKSTREAM_* variables,
    # which each worker's create_app() reads back: every kind of value survives.
    from askstream.cli import _as_variable

    given = {
        "port": 9001,
        "data_dir": tmp_path / "data dir",
        "llm_url": "http://127.0.0.1:9/v1",
        "llm_model": "m",
        "llm_read_timeout": 0.1 + 0.2,  # a float with a long repr
        "allowed_hosts": ("a.example", ".b.example"),
        "cors_origins": ("https://c.example",),
        "api_docs": True,
        "db_upgrade": False,
        "workers": 3,
        "redis_url": "redis://127.0.0.1:6379/0",
    }
    environ = {"ASKSTREAM_" + name.upper(): _as_variable(v) for name, v in given.items()}
    settings = Settings.from_env(environ)
    for name, expected in given.items():
        assert getattr(settings, name) == expected, name
