"""The ask service's own cost per token: throughput, and the delay a token spends inside askstream.

Three processes of their own, besides this one, which only starts them and reads
their reports:

* the upstream: askstream.testing.FakeUpstream under uvicorn, an OpenAI-compatible
  ``/v1/chat/completions``. With ``stamp`` on, every piece it streams is the
  moment it was sent, ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for
  every process on a Linux machine);
* the service: ``askstream.service:create_app`` under uvicorn, one worker, its
  embedded defaults (SQLite, in-process store, saves every second) in front of
  the upstream;
* the client: this script with ``--client``, asking over httpx with askstream's
  ``Decoder``, and noting for every piece ``arrival - sent``.

The rivals, in the same run, each read by the same client:

* ``direct``: the upstream itself. Its delay is the floor (two loopback hops
  less, no askstream); its CPU per token is the upstream's own cost of a token
  (one uvicorn write), the yardstick of the CPU ratios;
* ``relay``: a FastAPI relay written by hand (httpx ``client.stream`` +
  ``StreamingResponse`` writing ``data: ...`` per chunk, ``relay_app.py``);
* ``sse-starlette``: the same relay writing with sse-starlette's ``EventSourceResponse``;
* ``before`` (with ``--before SRC``): askstream from another source tree, e.g.
  the main branch's ``src``, to measure a change before/after in one run.

Measured:

1. Throughput: asks for 200 tokens that the upstream sends as fast as it can;
   delivered tokens/s at the client, on one service worker.
2. Latency: N concurrent asks, each streaming at 20 tokens/s with their starts
   spread over one period, for N up to 500; p50/p99 of ``arrival - sent``, the
   service's CPU time per token (psutil), and whether p99 holds 5 ms.

    .venv/bin/python bench/bench_service.py            # print the tables
    .venv/bin/python bench/bench_service.py --write    # and update docs/benchmarks.md
    .venv/bin/python bench/bench_service.py --levels 100,300 --before ../main/src
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.cookiejar
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from _common import versions, write_section
from askstream.sse import Decoder
from askstream.testing import ServerProcess

LIBRARIES = (
    "askstream", "fastapi", "starlette", "uvicorn", "httpx", "httptools", "sqlalchemy",
    "sse-starlette",
)  # fmt: skip
HERE = Path(__file__).resolve().parent
# Targets that speak OpenAI's chunks (the upstream and the relays) and askstream's API.
OPENAI_TARGETS = ("direct", "relay", "sse-starlette")
ASKSTREAM_TARGETS = ("askstream", "before")

TARGET_MS = 5.0
RATE = 20  # tokens/s per answer in the latency runs
LATENCY_TOKENS = 200  # 10 s per answer at 20 tokens/s
THROUGHPUT_TOKENS = 200

# -- the client (a process of its own) ------------------------------------------------


async def _one(
    client: httpx.AsyncClient,
    target: str,
    delay: float,
    samples: list[int],
    firsts: list[int],
    counts: list[int],
    question: str,
) -> None:
    await asyncio.sleep(delay)
    if target in OPENAI_TARGETS:
        url = "/v1/chat/completions"
        body: dict[str, Any] = {
            "model": "fake",
            "stream": True,
            "messages": [{"role": "user", "content": question}],
        }
    else:
        url = "/api/ask"
        body = {"chatId": None, "question": question}
    decoder = Decoder()
    first = True
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            counts[1] += 1
            return
        async for chunk in response.aiter_raw():
            events = decoder.feed(chunk)
            now = time.monotonic_ns()
            for event in events:
                if event.event != "message" or event.data == "[DONE]":
                    continue
                payload = json.loads(event.data)
                if target in OPENAI_TARGETS:
                    choices = payload["choices"]
                    text = choices[0]["delta"].get("content") if choices else None
                else:
                    text = payload["delta"]
                if text:
                    (firsts if first else samples).append(now - int(text))
                    first = False
                    counts[0] += 1


async def _client(
    url: str, target: str, concurrency: int, spread: float, asks: int
) -> dict[str, Any]:
    samples: list[int] = []  # every token but the first of each answer
    firsts: list[int] = []  # the first token of each answer
    counts = [0, 0]  # tokens, failed asks
    rng = random.Random(concurrency)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(120.0)
    queue = list(range(asks))

    async def worker() -> None:
        delay = rng.uniform(0, spread)  # the first ask of each worker starts at a random moment
        while queue:
            n = queue.pop()
            await _one(client, target, delay, samples, firsts, counts, f"q{n}")
            delay = 0.0

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        # Every ask is someone else, as on a real service: no session cookie is
        # kept (one session would meet the service's per-user limit on answers).
        client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    every = sorted(samples + firsts)
    samples.sort()
    firsts.sort()

    def pct(values: list[int], p: float) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(p / 100 * len(values)))] / 1e6

    return {
        "tokens": counts[0],
        "failed": counts[1],
        "wall": wall,
        "p50": pct(every, 50),
        "p99": pct(every, 99),
        "max": every[-1] / 1e6 if every else float("nan"),
        "p99_rest": pct(samples, 99),
        "p99_first": pct(firsts, 99),
    }


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("target", choices=[*OPENAI_TARGETS, *ASKSTREAM_TARGETS])
    parser.add_argument("concurrency", type=int)
    parser.add_argument("spread", type=float)
    parser.add_argument("asks", type=int)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the plain loop measures the same thing, a little slower
        pass
    result = asyncio.run(_client(args.url, args.target, args.concurrency, args.spread, args.asks))
    print(json.dumps(result))


# -- the orchestra --------------------------------------------------------------------


@dataclass
class Run:
    target: str
    concurrency: int
    tokens: int
    failed: int
    wall: float
    p50: float
    p99: float
    max: float
    p99_rest: float
    p99_first: float
    cpu_per_token_us: float | None

    @property
    def rate(self) -> float:
        return self.tokens / self.wall


def _run_client(
    url: str, target: str, concurrency: int, spread: float, asks: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--client", url, target),
            *(str(concurrency), str(spread), str(asks)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _cpu(pid: int) -> float:
    process = psutil.Process(pid)
    times = [process.cpu_times()]
    times += [child.cpu_times() for child in process.children(recursive=True)]
    return sum(t.user + t.system for t in times)


Servers = dict[str, ServerProcess]


def measure(
    servers: Servers, target: str, concurrency: int, spread: float, asks: int | None = None
) -> Run:
    server = servers[target]
    before = _cpu(server.pid)
    result = _run_client(server.url, target, concurrency, spread, asks or concurrency)
    cpu = _cpu(server.pid) - before
    return Run(
        target=target,
        concurrency=concurrency,
        cpu_per_token_us=cpu / result["tokens"] * 1e6 if result["tokens"] else None,
        **result,
    )


def _pair(upstream: ServerProcess, service: ServerProcess) -> Servers:
    """The targets ``measure`` takes: the upstream read directly, and one service."""
    return {"direct": upstream, "askstream": service}


def fake_upstream(tokens: int, delay: float) -> ServerProcess:
    """The fake upstream, stamping every piece it sends, not started yet."""
    return ServerProcess(
        "askstream.testing:FakeUpstream.from_env",
        factory=True,
        env={
            "ASKSTREAM_FAKE_TOKENS": str(tokens),
            "ASKSTREAM_FAKE_DELAY": str(delay),
            "ASKSTREAM_FAKE_STAMP": "1",
        },
    )


def start_upstream(tokens: int, delay: float) -> ServerProcess:
    """The fake upstream alone, started (for the workers' and the metrics' rows)."""
    upstream = fake_upstream(tokens, delay)
    upstream.start()
    return upstream


def start_service(
    upstream: ServerProcess, data_dir: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    service = ServerProcess(
        "askstream.service:create_app",
        factory=True,
        env={
            "ASKSTREAM_DATA_DIR": str(data_dir),
            "ASKSTREAM_LLM_URL": upstream.url + "/v1",
            "ASKSTREAM_LLM_MODEL": "fake",
            "ASKSTREAM_LOG_LEVEL": "warning",
            **(env or {}),
        },
        args=["--timeout-graceful-shutdown", "2"],
    )
    service.start()
    return service


def start(
    data_dir: Path, tokens: int, delay: float, *, rivals: bool = False, before: str | None = None
) -> Servers:
    """The upstream (``direct``) and the service (``askstream``); with ``rivals``,
    the two relays, and with ``before``, askstream from that source tree."""
    upstream = fake_upstream(tokens, delay)
    servers: Servers = {"direct": upstream}

    def service(name: str, src: str | None) -> ServerProcess:
        env = {
            "ASKSTREAM_DATA_DIR": str(data_dir / name),
            "ASKSTREAM_LLM_URL": upstream.url + "/v1",
            "ASKSTREAM_LLM_MODEL": "fake",
            "ASKSTREAM_LOG_LEVEL": "warning",
            # Every level's asks at once (the default, 256, refuses the rest with 503).
            "ASKSTREAM_MAX_GENERATIONS": "1000",
        }
        if src is not None:
            env["PYTHONPATH"] = src
        (data_dir / name).mkdir(parents=True, exist_ok=True)
        return ServerProcess(
            "askstream.service:create_app",
            factory=True,
            env=env,
            args=["--timeout-graceful-shutdown", "2"],
        )

    def relay(app: str) -> ServerProcess:
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = {"ASKSTREAM_RELAY_UPSTREAM": upstream.url, "PYTHONPATH": path}
        return ServerProcess(app, factory=True, env=env)

    try:
        upstream.start()
        servers["askstream"] = service("askstream", None)
        servers["askstream"].start()
        if rivals:
            servers["relay"] = relay("relay_app:httpx_relay")
            servers["relay"].start()
            servers["sse-starlette"] = relay("relay_app:sse_starlette_relay")
            servers["sse-starlette"].start()
        if before is not None:
            servers["before"] = service("before", before)
            servers["before"].start()
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers: Servers) -> None:
    for server in reversed(list(servers.values())):
        server.stop()


def throughput(levels: list[int]) -> list[tuple[Run, Run]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = start(Path(tmp), THROUGHPUT_TOKENS, 0.0)
        try:
            measure(servers, "askstream", 4, 0.0, 20)  # warm up
            for level in levels:
                asks = max(50, 5 * level)
                direct = measure(servers, "direct", level, 0.0, asks)
                served = measure(servers, "askstream", level, 0.0, asks)
                rows.append((served, direct))
                print(
                    f"throughput c={level}: {served.rate:,.0f} tokens/s"
                    f" cpu {served.cpu_per_token_us:.0f}us",
                    file=sys.stderr,
                )
        finally:
            stop(servers)
    return rows


def latency(levels: list[int], before: str | None, tokens: int) -> list[dict[str, Run]]:
    """Per level, a run of every target, one after the other (the order turns
    with the level, so that no target always follows the same one)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = start(Path(tmp), tokens, 1 / RATE, rivals=True, before=before)
        try:
            for target in servers:
                if target != "direct":
                    measure(servers, target, 10, 1.0)  # warm up
            targets = list(servers)
            for number, level in enumerate(levels):
                turn = number % len(targets)
                runs = {}
                for target in targets[turn:] + targets[:turn]:
                    runs[target] = run = measure(servers, target, level, 1.0)
                    print(
                        f"latency c={level} {target}: p50 {run.p50:.2f} p99 {run.p99:.2f} ms"
                        f" cpu {run.cpu_per_token_us or 0:.0f}us/token"
                        f" load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                    )
                rows.append({target: runs[target] for target in targets})
        finally:
            stop(servers)
    return rows


# -- what the metrics cost: the same service before and after, in one run -------------


def metrics_cost(levels: list[int], before_src: Path) -> list[tuple[Run, Run, Run]]:
    """Latency runs against two services side by side on one upstream: this tree's
    and ``before_src``'s (a checkout without the metrics), alternating per level."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        upstream = start_upstream(LATENCY_TOKENS, 1 / RATE)
        services: list[ServerProcess] = []
        try:
            after = start_service(upstream, Path(tmp) / "after")
            services.append(after)
            before = start_service(upstream, Path(tmp) / "before", {"PYTHONPATH": str(before_src)})
            services.append(before)
            for service in services:
                measure(_pair(upstream, service), "askstream", 10, 1.0)  # warm up
            for level in levels:
                direct = measure(_pair(upstream, after), "direct", level, 1.0)
                # before, after, after, before: a load that rises or falls during
                # the level weighs on both alike.
                old = measure(_pair(upstream, before), "askstream", level, 1.0)
                new = measure(_pair(upstream, after), "askstream", level, 1.0)
                new = _merge(new, measure(_pair(upstream, after), "askstream", level, 1.0))
                old = _merge(old, measure(_pair(upstream, before), "askstream", level, 1.0))
                rows.append((old, new, direct))
                print(
                    f"metrics c={level}: before {old.cpu_per_token_us:.0f}us"
                    f" after {new.cpu_per_token_us:.0f}us"
                    f" (upstream {direct.cpu_per_token_us:.0f}us)",
                    file=sys.stderr,
                )
        finally:
            for service in services:
                service.stop()
            upstream.stop()
    return rows


def _merge(one: Run, two: Run) -> Run:
    """Two runs of one level as one: CPU per token over both, the worse percentiles."""
    tokens = one.tokens + two.tokens
    cpu = sum((r.cpu_per_token_us or 0) * r.tokens for r in (one, two))
    return Run(
        target=one.target,
        concurrency=one.concurrency,
        tokens=tokens,
        failed=one.failed + two.failed,
        wall=one.wall + two.wall,
        p50=max(one.p50, two.p50),
        p99=max(one.p99, two.p99),
        max=max(one.max, two.max),
        p99_rest=max(one.p99_rest, two.p99_rest),
        p99_first=max(one.p99_first, two.p99_first),
        cpu_per_token_us=cpu / tokens if tokens else None,
    )


def _metrics_per_ask_us() -> float:
    """What the metrics cost one ask in this process: its counts, gauges, histograms."""
    import timeit

    from askstream.service._metrics import Metrics

    metrics = Metrics()

    def one_ask() -> None:
        metrics.open_streams.inc()
        metrics.readers.inc()
        metrics.readers.dec()
        metrics.open_streams.dec()
        metrics.ask_ended("complete", LATENCY_TOKENS, 0.05, 10.0)

    number = 20_000
    return min(timeit.repeat(one_ask, number=number, repeat=5)) / number * 1e6


def report_metrics_cost(rows: list[tuple[Run, Run, Run]], before_src: Path) -> str:
    lines = [
        "### What the metrics cost (`bench/bench_service.py --metrics-cost`)",
        "",
        f"{datetime.date.today().isoformat()}; the same latency runs ({LATENCY_TOKENS} "
        f"tokens at {RATE} tokens/s per ask) against two services side by side on one "
        "upstream, in one run: `before` is askstream without metrics (the commit this "
        "branch started from, its `src/` on `PYTHONPATH`), `after` counts every ask, "
        "reader and refusal (`GET /metrics`). CPU per delivered token of the service "
        "process; the ratio is after / before. Each level runs before, after, after, "
        "before (CPU per token over both runs of each; the worse p99 of the two).",
        "",
        "```sh",
        "mkdir /tmp/askstream-before && git archive 9f8fdb6 src | tar -x -C /tmp/askstream-before",
        ".venv/bin/python bench/bench_service.py --metrics-cost /tmp/askstream-before/src",
        "```",
        "",
        "| concurrent asks | before CPU per token | after CPU per token | after / before "
        "| before p99 | after p99 | upstream CPU per token |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for old, new, direct in rows:
        ratio = (
            f"{new.cpu_per_token_us / old.cpu_per_token_us:.2f}"
            if old.cpu_per_token_us and new.cpu_per_token_us
            else "n/a"
        )
        lines.append(
            f"| {new.concurrency} | {old.cpu_per_token_us or 0:.0f} µs "
            f"| {new.cpu_per_token_us or 0:.0f} µs | {ratio} | {old.p99:.2f} ms "
            f"| {new.p99:.2f} ms | {direct.cpu_per_token_us or 0:.0f} µs |"
        )
    per_ask = _metrics_per_ask_us()
    lines += [
        "",
        "Per token the metrics do nothing: an answer's tokens are added to "
        "`askstream_tokens_total` once, when it ends (the length of its list of "
        "deltas); each ask adds one count, one gauge step up and down and two "
        "histogram observations; each reader one gauge step up and down. Timed "
        f"alone in this process (`timeit`), that is {per_ask:.1f} µs per ask, "
        f"{per_ask / LATENCY_TOKENS * 1000:.0f} ns per token of a "
        f"{LATENCY_TOKENS}-token answer. What differs between the columns beyond "
        "that is the noise of the shared machine.",
    ]
    return "\n".join(lines)


# -- all the cores: askstream serve --workers N -----------------------------------------


class Serve(ServerProcess):
    """``askstream serve --workers N`` as a server process (its workers are its children)."""

    def __init__(self, workers: int, **kwargs: Any) -> None:
        super().__init__("askstream serve", **kwargs)
        self.workers = workers

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "askstream.cli", "serve", "--host", self.host,
            "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/api/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("askstream serve did not answer within 60 s")


def _client_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client runs are waited for
    return usage.ru_utime + usage.ru_stime


def _stores_cpu() -> float:
    """CPU seconds of every Redis and PostgreSQL server process on the machine."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        name, times = process.info["name"] or "", process.info["cpu_times"]
        if times is not None and (name.startswith("redis-server") or name == "postgres"):
            total += times.user + times.system
    return total


@dataclass
class WorkersRow:
    workers: int
    runs: list[tuple[Run, float, float, float]]  # the run; client, upstream, stores CPU s


def workers_rows(levels: list[int], counts: list[int]) -> list[WorkersRow]:
    """For 1 and 2 workers on Redis and PostgreSQL: latency runs at rising concurrency."""
    import asyncio as _asyncio
    import uuid

    import asyncpg
    import redis

    name = f"askstream_bench_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"

    async def sql(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    _asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    rows = []
    upstream = start_upstream(LATENCY_TOKENS, 1 / RATE)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for count in counts:
                prefix = f"askstream-bench-{uuid.uuid4().hex[:8]}:"
                service = Serve(
                    count,
                    env={
                        "ASKSTREAM_DATA_DIR": str(Path(tmp) / f"w{count}"),
                        "ASKSTREAM_LLM_URL": upstream.url + "/v1",
                        "ASKSTREAM_LLM_MODEL": "fake",
                        "ASKSTREAM_LOG_LEVEL": "warning",
                        "ASKSTREAM_REDIS_URL": "redis://127.0.0.1:6379/0",
                        "ASKSTREAM_REDIS_PREFIX": prefix,
                        "ASKSTREAM_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
                        "ASKSTREAM_MAX_USER_GENERATIONS": "10000",
                        "ASKSTREAM_MAX_GENERATIONS": "10000",
                        "ASKSTREAM_SHUTDOWN_TIMEOUT": "1",
                    },
                )
                service.start()
                runs = []
                try:
                    _wait_ready(service)
                    measure(_pair(upstream, service), "askstream", 10, 1.0)  # warm up
                    for level in levels:
                        client_before = _client_cpu()
                        upstream_before = _cpu(upstream.pid)
                        stores_before = _stores_cpu()
                        run = measure(_pair(upstream, service), "askstream", level, 1.0)
                        runs.append(
                            (
                                run,
                                _client_cpu() - client_before,
                                _cpu(upstream.pid) - upstream_before,
                                _stores_cpu() - stores_before,
                            )
                        )
                        print(
                            f"workers={count} c={level}: {run.rate:,.0f} tokens/s"
                            f" p99 {run.p99:.1f} ms cpu {run.cpu_per_token_us:.0f}us",
                            file=sys.stderr,
                        )
                finally:
                    service.stop()
                    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
                    keys = list(client.scan_iter(match=prefix + "*", count=1000))
                    if keys:
                        client.delete(*keys)
                    client.close()
                rows.append(WorkersRow(count, runs))
    finally:
        upstream.stop()
        _asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return rows


def report_workers(rows: list[WorkersRow], targets: list[float], command: str) -> str:
    lines = [
        "### All the cores: `askstream serve --workers N` (`bench/bench_service.py --workers`)",
        "",
        f"{datetime.date.today().isoformat()}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[1]:.1f} over the last 5 minutes at the end of the run (other "
        "jobs share the machine; a load above the cores means every process waits for "
        "one, whatever the number of workers). `askstream serve "
        "--workers N` on Redis (streams) and PostgreSQL (history), in front of the "
        f"same FakeUpstream; asks of {LATENCY_TOKENS} tokens at {RATE} tokens/s each, "
        "started over one second, at rising concurrency. The client (httpx + "
        "askstream's Decoder, one process with uvloop) and the upstream run on the "
        "same cores, as do Redis and PostgreSQL: their CPU is in the table, since "
        "what they take the workers cannot have.",
        "",
        "```sh",
        command,
        "```",
        "",
        "| workers | concurrent asks | tokens/s | p50 | p99 | service CPU per token "
        "| service CPU | client CPU | upstream CPU | Redis + PostgreSQL CPU | all |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        for run, client_cpu, upstream_cpu, stores_cpu in row.runs:
            service_cpu = (run.cpu_per_token_us or 0) * run.tokens / 1e6
            every = service_cpu + client_cpu + upstream_cpu + stores_cpu
            lines.append(
                f"| {row.workers} | {run.concurrency} | {run.rate:,.0f} | {run.p50:.2f} ms "
                f"| {run.p99:.2f} ms | {run.cpu_per_token_us or 0:.0f} µs "
                f"| {service_cpu / run.wall:.2f} cores | {client_cpu / run.wall:.2f} cores "
                f"| {upstream_cpu / run.wall:.2f} cores | {stores_cpu / run.wall:.2f} cores "
                f"| {every / run.wall:.2f} cores |"
            )
    names = [f"{row.workers} worker{'s' if row.workers > 1 else ''}" for row in rows]
    lines += [
        "",
        "The most tokens/s delivered at a level whose p99 stayed within a fixed bound:",
        "",
        f"| p99 at most | {' | '.join(names)} | ratio |",
        f"|--:|{'--:|' * len(rows)}--:|",
    ]
    for target in targets:
        best = [
            max(
                (run.rate for run, *_ in row.runs if run.p99 <= target and not run.failed),
                default=0.0,
            )
            for row in rows
        ]
        shown = [f"{rate:,.0f}" if rate else "no level held it" for rate in best]
        ratio = f"{best[-1] / best[0]:.2f}" if best[0] and best[-1] else "-"
        lines.append(f"| {target:g} ms | {' | '.join(shown)} | {ratio} |")
    lines += [
        "",
        "A core's worth of CPU is what one worker can use; two workers can gain only "
        "what the client, the upstream, Redis and PostgreSQL leave of the machine's "
        "cores (the `all` column: every process of the run together). Where `all` "
        "nears the number of cores, every process waits for one, and a second worker "
        "is one more process waiting: it spreads the same work over two event loops, "
        "each batching less (its CPU per token rises), and gains nothing.",
    ]
    return "\n".join(lines)


# -- the report -------------------------------------------------------------------------


def report(
    thr: list[tuple[Run, Run]],
    rows: list[dict[str, Run]],
    command: str,
    loads: list[float],
    tokens: int,
) -> str:
    lat = [(row["askstream"], row["direct"]) for row in rows]
    today = datetime.date.today().isoformat()
    lines = [
        "## The ask service (`bench/bench_service.py`)",
        "",
        f"{today}; CPython {platform.python_version()}; {versions(*LIBRARIES)}; "
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}. "
        "Upstream (FakeUpstream), service (one uvicorn worker, SQLite, in-process "
        "store) and client (httpx + askstream's Decoder) are three processes on "
        "these cores. `direct` is the same client reading the upstream itself, "
        "the floor askstream is measured against.",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Load average (1 min) over the latency runs: {min(loads):.1f} to {max(loads):.1f} "
        f"on {os.cpu_count()} cores (other jobs shared the machine).",
        "",
        f"Throughput: asks of {THROUGHPUT_TOKENS} tokens each (at least 50 per row), "
        "so many at a time, the upstream sending as fast as it can; tokens/s "
        "delivered at the client.",
        "",
        "| concurrent asks | askstream tokens/s | direct tokens/s | askstream CPU per token |",
        "|--:|--:|--:|--:|",
    ]
    for served, direct in thr:
        cpu = f"{served.cpu_per_token_us:.0f} µs" if served.cpu_per_token_us else "n/a"
        lines.append(f"| {served.concurrency} | {served.rate:,.0f} | {direct.rate:,.0f} | {cpu} |")
    lines += [
        "",
        f"Latency: concurrent asks of {tokens} tokens at {RATE} tokens/s each, "
        "started at random moments over one second; the delay of every token from "
        "the upstream's send to the client's arrival.",
        "",
        "| concurrent asks | tokens/s | p50 | p99 | p99, first tokens | max | direct p99 "
        f"| askstream CPU per token | upstream CPU per token | p99 < {TARGET_MS:g} ms |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]

    def us(value: float | None) -> str:
        return f"{value:.0f} µs" if value else "n/a"

    held = [s.concurrency for s, _ in lat if s.p99 < TARGET_MS and not s.failed]
    for served, direct in lat:
        ok = "✓" if served.p99 < TARGET_MS and not served.failed else "✗"
        lines.append(
            f"| {served.concurrency} | {served.rate:,.0f} | {served.p50:.2f} ms "
            f"| {served.p99:.2f} ms | {served.p99_first:.2f} ms | {served.max:.1f} ms "
            f"| {direct.p99:.2f} ms | {us(served.cpu_per_token_us)} "
            f"| {us(direct.cpu_per_token_us)} | {ok} |"
        )
    top = max(held) if held else None
    verdict = (
        f"p99 holds {TARGET_MS:g} ms up to {top} concurrent asks on this machine"
        if top is not None
        else f"p99 does not hold {TARGET_MS:g} ms at any level measured on this machine"
    )
    if top != lat[-1][0].concurrency:
        verdict += (
            f", not at {lat[-1][0].concurrency} (the target). Past it the worker's CPU "
            "is the limit: CPU per token times tokens/s approaches one core, which the "
            "upstream and the client share; where `direct p99` grows too, the machine "
            "cannot carry the load even without askstream"
        )

    def ratio(value: float | None, of: float | None) -> str:
        return f"{value / of:.2f}x" if value and of else "n/a"

    lines += [
        "",
        verdict + ".",
        "",
        "Rivals in the same run, at each level one after the other: `relay` is a FastAPI "
        "relay written by hand (httpx `client.stream` + `StreamingResponse`, "
        "`bench/relay_app.py`), `sse-starlette` the same relay writing with "
        "`EventSourceResponse`, `before` askstream from the source tree given as "
        "`--before`. CPU per token is each server process's own; `x upstream` divides "
        "it by the upstream's (`direct`) in the same row, `x relay` by the relay's.",
        "",
        "| concurrent asks | target | tokens/s | p50 | p99 | CPU per token "
        "| x upstream | x relay | tokens/s per core |",
        "|--:|:--|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        upstream_cpu = row["direct"].cpu_per_token_us
        relay_cpu = row["relay"].cpu_per_token_us if "relay" in row else None
        for target, run in row.items():
            per_core = f"{1e6 / run.cpu_per_token_us:,.0f}" if run.cpu_per_token_us else "n/a"
            failed = f" ({run.failed} asks failed)" if run.failed else ""
            lines.append(
                f"| {run.concurrency} | {target}{failed} | {run.rate:,.0f} | {run.p50:.2f} ms "
                f"| {run.p99:.2f} ms | {us(run.cpu_per_token_us)} "
                f"| {ratio(run.cpu_per_token_us, upstream_cpu)} "
                f"| {ratio(run.cpu_per_token_us, relay_cpu)} | {per_core} |"
            )
    lines += [
        "",
        "Notes:",
        "",
        "- The delay is measured end to end, upstream send to client arrival, so it "
        "includes the upstream's own send and the client's parse: `direct p99` is "
        "that floor without askstream in between. `p99, first tokens` is the first "
        "token of each answer alone (it also waits for the 200 and the headers).",
        "- askstream CPU per token is the service process's user + system time over "
        "the run divided by the tokens it delivered: reading the upstream (its own "
        "lean HTTP/1.1 client, `service/_upstream.py`), parsing, the store, encoding "
        "and writing the event, the once-a-second saves and each ask's own work "
        "(routing, a new anonymous session, two SQL transactions). Each ask is "
        "another user (the client keeps no cookie), as on a real service. "
        "Upstream CPU per token is FakeUpstream's own in the `direct` run "
        "(a bare ASGI app writing one chunk per token): the cost of one uvicorn "
        "write on this machine.",
        "- Throughput batches: when tokens come faster than they can be written, the "
        "response writes all the ready ones in one `send`, so a token costs a third "
        "of what it costs at 20 tokens/s, where each one is its own read, wake-up "
        "and write.",
        "- All processes share the machine's cores (and other jobs used it at the "
        "same time), so rows move between runs by a few ms; compare within a run.",
    ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--levels",
        default="50,100,200,300,400,500",
        help="concurrencies of the latency runs (comma-separated)",
    )
    parser.add_argument("--throughput-levels", default="1,10,50")
    parser.add_argument(
        "--metrics-cost",
        type=Path,
        metavar="BEFORE_SRC",
        help="only compare CPU per token with the src/ of a checkout before the metrics",
    )
    parser.add_argument(
        "--workers", action="store_true", help="only the rows of serve --workers 1 and 2"
    )
    parser.add_argument("--workers-levels", default="50,100,200,300,400")
    parser.add_argument(
        "--p99", default="25,50,100", help="ms, comma-separated bounds for --workers"
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=LATENCY_TOKENS,
        help=f"tokens per answer in the latency runs (default {LATENCY_TOKENS})",
    )
    parser.add_argument(
        "--before", metavar="SRC", help="also measure askstream from this source tree (`before`)"
    )
    args = parser.parse_args()
    if args.metrics_cost is not None:
        levels = [int(n) for n in args.levels.split(",")]
        section = report_metrics_cost(metrics_cost(levels, args.metrics_cost), args.metrics_cost)
        print(section)
        if args.write:
            write_section("bench_service_metrics", section)
        return
    if args.workers:
        levels = [int(n) for n in args.workers_levels.split(",")]
        command = ".venv/bin/python bench/bench_service.py " + " ".join(sys.argv[1:])
        bounds = [float(n) for n in args.p99.split(",")]
        section = report_workers(workers_rows(levels, [1, 2]), bounds, command.strip())
        print(section)
        if args.write:
            write_section("bench_service_workers", section)
        return
    thr = throughput([int(n) for n in args.throughput_levels.split(",") if n])
    loads: list[float] = []
    loads.append(os.getloadavg()[0])
    lat = latency([int(n) for n in args.levels.split(",")], args.before, args.tokens)
    loads.append(os.getloadavg()[0])
    command = ".venv/bin/python bench/bench_service.py " + " ".join(sys.argv[1:])
    section = report(thr, lat, command.strip(), loads, args.tokens)
    print(section)
    if args.write:
        write_section("bench_service", section)


if __name__ == "__main__":
    main()
