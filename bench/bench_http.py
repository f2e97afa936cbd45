"""HTTP streaming: askstream's EventStreamResponse side by side with sse-starlette's.

Both servers are the same Starlette app around the same sources, each run as
``uvicorn --loop uvloop --http httptools`` (one worker) in its own process, a
fresh one per measurement. The readers are this script too (``--reader ...``),
in their own process, reading raw sockets with asyncio (uvloop if installed)
and counting events by ``b"\\n\\n"``; sse-starlette is told ``sep="\\n"`` so
that both servers put the same bytes on the wire (checked before timing).

* single stream: one reader asks for 100,000 ``data: token`` events, sent as
  fast as the server can; events/s from request to last event (best of 3).
* fairness, short: while one stream sends 300,000 events as fast as it can,
  another connection asks ``GET /hello`` over and over; the slowest answer.
* fairness, long: a source that never awaits and never ends (``/flood``) is
  read as fast as one reader process can for ``--flood-seconds`` (5 s);
  meanwhile a probe in another process asks the same worker ``GET /hello``
  every 20 ms, each on a new connection: p50/p90/p99 and probes answered. In
  the same run: the same source with ``await asyncio.sleep(0)`` before each
  event (``/flood-fair``, the fair reference) on askstream, and the flood on
  sse-starlette. Then the reader leaves, and the server says when the
  source's ``finally`` ran: stop time after the reader's close.
* 1,000 streams x 20 events/s: each source sleeps 50 ms and yields
  ``time.monotonic()``; over a window after warm-up, the server's CPU time
  (psutil: user + system) divided by the events the reader received, and the
  p99 of (arrival - production) (one monotonic clock for all processes).
* idle streams: N connections to a source that never yields; every one must get
  its response headers; (server RSS holding them - RSS before) / N.

The machine is shared (2 cores, other jobs running), so absolute numbers are
noisy: compare the ratios taken in one run.

    .venv/bin/python bench/bench_http.py             # full run (about 3 minutes)
    .venv/bin/python bench/bench_http.py --quick     # shorter windows
    .venv/bin/python bench/bench_http.py --write     # and update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import psutil
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from _common import DOC, lifespan, write_section
from askstream.testing import ServerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UVICORN_ARGS = ["--loop", "uvloop", "--http", "httptools", "--backlog", "4096"]
LIBRARIES = ("askstream", "sse-starlette")


# The sources and apps, identical for both servers ---------------------------------


async def tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield "token"


async def ticks() -> AsyncIterator[str]:
    while True:
        await asyncio.sleep(0.05)
        yield repr(time.monotonic())


async def idle() -> AsyncIterator[str]:
    # A follower whose log has nothing new: it waits on one future.
    await asyncio.get_running_loop().create_future()
    yield "never"


Respond = Callable[[AsyncIterator[str]], Any]


FLOOD_ENDED: list[float] = []  # when each flood's finally ran (time.monotonic())


async def flood(fair: bool) -> AsyncIterator[str]:
    # Never ends; without `fair` never awaits either.
    try:
        while True:
            if fair:
                await asyncio.sleep(0)
            yield "token"
    finally:
        FLOOD_ENDED.append(time.monotonic())


def _source(path: str, query: str) -> AsyncIterator[str] | None:
    if path in ("/flood", "/flood-fair"):
        return flood(path == "/flood-fair")
    if path == "/tokens":
        return tokens(int(parse_qs(query)["n"][0]))
    if path == "/ticks":
        return ticks()
    if path == "/idle":
        return idle()
    return None


def _plain_app(respond: Respond) -> Any:
    """The response itself as the ASGI app, behind a path switch: no framework."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        source = _source(scope["path"], scope["query_string"].decode())
        if scope["path"] == "/flood-ended":
            response: Any = JSONResponse(FLOOD_ENDED)
        elif source is None:
            response = JSONResponse({"hello": "world"})
        else:
            response = respond(source)
        await response(scope, receive, send)

    return app


def _starlette_app(respond: Respond) -> Starlette:
    """The same behind Starlette's router, as most applications serve it."""

    async def stream(request: Request) -> Response:
        source = _source(request.url.path, request.url.query)
        assert source is not None
        response: Response = respond(source)
        return response

    async def hello(request: Request) -> Response:
        return JSONResponse({"hello": "world"})

    routes = [Route(path, stream) for path in ("/tokens", "/ticks", "/idle")]
    return Starlette(routes=[*routes, Route("/hello", hello)])


def _askstream(source: AsyncIterator[str]) -> Any:
    from askstream import EventStreamResponse

    return EventStreamResponse(source, ping=600)


def _sse_starlette(source: AsyncIterator[str]) -> Any:
    from sse_starlette import EventSourceResponse  # importing it patches uvicorn

    return EventSourceResponse(source, ping=600, sep="\n")


def floor_app() -> Any:
    """A reference, not a contender: the least any response does per event on uvicorn.

    One task per stream awaits ``receive()``, another runs ``async for`` over the
    source and sends each event as it comes: no batching, no heartbeats, no
    slow-reader timer, no shutdown, no error event.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        source = _source(scope["path"], scope["query_string"].decode())
        if source is None:
            await JSONResponse({"hello": "world"})(scope, receive, send)
            return
        start = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)

        async def pump() -> None:
            async for data in source:
                body = ("data: " + data + "\n\n").encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})

        task = asyncio.get_running_loop().create_task(pump())
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    return app


def askstream_app() -> Any:
    """``uvicorn --factory bench_http:askstream_app``."""
    return _plain_app(_askstream)


def sse_starlette_app() -> Any:
    return _plain_app(_sse_starlette)


def askstream_starlette_app() -> Any:
    return _starlette_app(_askstream)


def sse_starlette_starlette_app() -> Any:
    return _starlette_app(_sse_starlette)


FACTORIES = {
    ("floor", "plain"): "floor_app",
    ("askstream", "plain"): "askstream_app",
    ("sse-starlette", "plain"): "sse_starlette_app",
    ("askstream", "starlette"): "askstream_starlette_app",
    ("sse-starlette", "starlette"): "sse_starlette_starlette_app",
}


# The readers (run in their own process) -----------------------------------------


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


class _Counting(asyncio.Protocol):
    """Counts events (``\\n\\n``) on one connection; optionally reads their timestamps."""

    def __init__(self, target: int | None = None, *, timestamps: bool = False) -> None:
        self.target = target
        self.timestamps = timestamps
        self.count = 0
        self.delays: list[float] = []
        self.recording = False
        self.headers_seen = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.headers: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail = b""
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        if not self.headers_seen:
            self._pending += data
            cut = self._pending.find(b"\r\n\r\n")
            if cut < 0:
                return
            self.headers_seen = True
            self.headers.set_result(None)
            data, self._pending = self._pending[cut + 4 :], b""
        if self.timestamps:
            self._read_timestamps(data)
        else:
            # An event end cut between two reads is counted once: with the last byte.
            self.count += (self._tail + data).count(b"\n\n")
            self._tail = data[-1:]
        if self.target is not None and self.count >= self.target and not self.done.done():
            self.done.set_result(None)

    def _read_timestamps(self, data: bytes) -> None:
        now = time.monotonic()
        parts = (self._pending + data).split(b"\n\n")
        self._pending = parts.pop()
        if self.recording:
            for part in parts:
                at = part.rfind(b"data: ")
                if at >= 0:
                    self.delays.append(now - float(part[at + 6 :]))
                    self.count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if not self.headers.done():
            self.headers.set_exception(ConnectionError("closed before the headers"))


async def _open(port: int, path: str, protocol: _Counting) -> asyncio.Transport:
    transport, _ = await asyncio.get_running_loop().create_connection(
        lambda: protocol, "127.0.0.1", port
    )
    transport.write(_request(path))
    return transport


async def read_single(port: int, events: int) -> dict[str, Any]:
    counter = _Counting(events)
    started = time.perf_counter()
    transport = await _open(port, f"/tokens?n={events}", counter)
    await asyncio.wait_for(counter.done, timeout=300)
    elapsed = time.perf_counter() - started
    transport.close()
    return {"events": counter.count, "seconds": elapsed}


async def read_fairness(port: int, events: int) -> dict[str, Any]:
    flood = _Counting(events)
    transport = await _open(port, f"/tokens?n={events}", flood)
    await flood.headers
    latencies: list[float] = []
    while not flood.done.done():  # every probe that starts during the flood counts
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("/hello"))
        await reader.readuntil(b"}")
        writer.close()
        latencies.append(time.perf_counter() - started)
    transport.close()
    return {"events": flood.count, "probes": len(latencies), "worst": max(latencies, default=0)}


async def read_flood(port: int, path: str, seconds: float) -> dict[str, Any]:
    flood = _Counting()
    transport = await _open(port, path, flood)
    await flood.headers
    started = time.monotonic()
    await asyncio.sleep(seconds)
    count, elapsed = flood.count, time.monotonic() - started
    closed_at = time.monotonic()
    transport.close()
    return {"events": count, "seconds": elapsed, "closed_at": closed_at}


async def probe(port: int, seconds: float, every: float) -> dict[str, Any]:
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    next_at = loop.time()
    unanswered = 0
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(max(0.5, end - loop.time())):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_request("/hello"))
                await reader.readuntil(b"}")
                writer.close()
        except TimeoutError:  # not answered while the flood lasted
            unanswered += 1
            break
        latencies.append(time.perf_counter() - started)
        next_at += every
        while next_at < loop.time():  # a tick missed while waiting is not asked late
            next_at += every
    return {"latencies": latencies, "unanswered": unanswered}


async def _connect_many(
    port: int, path: str, streams: int, make: Callable[[], _Counting]
) -> list[tuple[asyncio.Transport, _Counting]]:
    opened: list[tuple[asyncio.Transport, _Counting]] = []
    for start in range(0, streams, 250):
        batch = [make() for _ in range(min(250, streams - start))]
        transports = await asyncio.gather(*(_open(port, path, p) for p in batch))
        await asyncio.wait_for(asyncio.gather(*(p.headers for p in batch)), timeout=60)
        opened += zip(transports, batch, strict=True)
    return opened


async def read_ticks(port: int, streams: int, seconds: float, server_pid: int) -> dict[str, Any]:
    server = psutil.Process(server_pid)
    opened = await _connect_many(port, "/ticks", streams, lambda: _Counting(timestamps=True))
    await asyncio.sleep(2.0)  # warm-up: every stream under way
    before = server.cpu_times()
    for _, protocol in opened:
        protocol.recording = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    for _, protocol in opened:
        protocol.recording = False
    elapsed = time.monotonic() - started
    after = server.cpu_times()
    for transport, _ in opened:
        transport.close()
    delays = sorted(d for _, protocol in opened for d in protocol.delays)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "events": len(delays),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "p50": delays[len(delays) // 2],
        "p99": delays[int(len(delays) * 0.99)],
    }


async def hold_idle(port: int, streams: int, server_pid: int) -> dict[str, Any]:
    server = psutil.Process(server_pid)
    try:
        opened = await _connect_many(port, "/idle", streams, _Counting)
    except (OSError, TimeoutError) as exc:
        return {"accepted": 0, "error": repr(exc)}
    await asyncio.sleep(1.0)
    accepted = sum(1 for transport, p in opened if p.headers_seen and not transport.is_closing())
    rss = server.memory_info().rss
    for transport, _ in opened:
        transport.close()
    return {"accepted": accepted, "rss": rss}


def reader_main(kind: str, options: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    readers = {
        "single": read_single,
        "fairness": read_fairness,
        "flood": read_flood,
        "probe": probe,
        "ticks": read_ticks,
        "idle": hold_idle,
    }
    result = asyncio.run(readers[kind](**options))
    print(json.dumps(result))


def _reader_command(kind: str, options: dict[str, Any]) -> list[str]:
    return [sys.executable, __file__, "--reader", kind, json.dumps(options)]


def run_reader(kind: str, **options: Any) -> dict[str, Any]:
    command = _reader_command(kind, options)
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# Orchestration --------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextlib.contextmanager
def serving(library: str, app: str = "plain") -> Iterator[ServerProcess]:
    server = ServerProcess(
        f"bench_http:{FACTORIES[library, app]}",
        factory=True,
        args=[*UVICORN_ARGS, "--app-dir", str(HERE)],
    )
    with server:
        httpx.get(f"{server.url}/hello")  # warm up: imports, first request paths
        if library != "floor":  # whose streams never end
            with httpx.stream("GET", f"{server.url}/tokens?n=10") as response:
                response.read()
        yield server


def check_same_bytes() -> None:
    bodies = []
    for library, app in FACTORIES:
        if library == "floor":
            continue
        with serving(library, app) as server:
            bodies.append(httpx.get(f"{server.url}/tokens?n=5").content)
    if any(body != b"data: token\n\n" * 5 for body in bodies):
        sys.exit(f"the servers send different bytes: {bodies!r}")


def long_fairness(library: str, path: str, seconds: float) -> dict[str, Any]:
    """The flood read for ``seconds`` by one process, probed every 20 ms by another."""
    with serving(library) as server:
        flood = subprocess.Popen(
            _reader_command("flood", {"port": server.port, "path": path, "seconds": seconds}),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # the flood under way
        probed = run_reader("probe", port=server.port, seconds=seconds - 0.6, every=0.02)
        out, _ = flood.communicate(timeout=120)
        read = json.loads(out.strip().splitlines()[-1])
        deadline = time.monotonic() + 5
        ended: list[float] = []
        while not ended and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                ended = httpx.get(f"{server.url}/flood-ended", timeout=1).json()
            if not ended:
                time.sleep(0.05)
        if not ended:
            server.kill()  # the flood never stopped: the worker is lost to it
    latencies = sorted(probed["latencies"])
    return {
        "events_per_s": read["events"] / read["seconds"],
        "seconds": read["seconds"],
        "probes": len(latencies),
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "max": latencies[-1] if latencies else float("nan"),
        "stopped_after": ended[0] - read["closed_at"] if ended else None,
    }


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


FLOODS = (  # (row name, library, path)
    ("askstream, never awaits", "askstream", "/flood"),
    ("askstream, fair reference (`sleep(0)` per event)", "askstream", "/flood-fair"),
    ("sse-starlette, never awaits", "sse-starlette", "/flood"),
)


@dataclass
class Results:
    single: dict[str, float]
    fairness: dict[str, dict[str, Any]]
    ticks: dict[str, dict[str, Any]]
    idle: dict[str, dict[str, Any]]
    idle_starlette: dict[str, dict[str, Any]]
    idle_many: dict[str, Any] | None
    floods: dict[str, dict[str, Any]]


def measure_floods(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    floods = {}
    for name, library, path in FLOODS:
        floods[name] = long_fairness(library, path, args.flood_seconds)
        print(f"long fairness {name}: {floods[name]}", file=sys.stderr)
    return floods


def measure(args: argparse.Namespace) -> Results:
    floods = measure_floods(args)
    single: dict[str, float] = {}
    for library in LIBRARIES:
        rates = []
        for _ in range(args.repeats):
            with serving(library) as server:
                result = run_reader("single", port=server.port, events=args.events)
            rates.append(result["events"] / result["seconds"])
        single[library] = max(rates)
        print(f"single stream {library}: {single[library]:,.0f} events/s", file=sys.stderr)

    fairness = {}
    for library in LIBRARIES:
        with serving(library) as server:
            fairness[library] = run_reader("fairness", port=server.port, events=300_000)
        print(f"fairness {library}: {fairness[library]}", file=sys.stderr)

    # Taking turns, best of --rounds: load from other jobs only ever adds CPU time.
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for library in (*LIBRARIES, "floor"):
            with serving(library) as server:
                result = run_reader(
                    "ticks",
                    port=server.port,
                    streams=args.streams,
                    seconds=args.seconds,
                    server_pid=server.pid,
                )
            runs.setdefault(library, []).append(result)
            print(f"ticks {library}: {result}", file=sys.stderr)
    ticks = {
        library: min(results, key=lambda r: r["cpu_seconds"] / r["events"])
        for library, results in runs.items()
    }

    idle_results, idle_starlette = {}, {}
    for library in LIBRARIES:
        idle_results[library] = hold(library, args.idle)
        print(f"idle {library}: {idle_results[library]}", file=sys.stderr)
    for library in LIBRARIES:
        idle_starlette[library] = hold(library, args.idle, app="starlette")
        print(f"idle {library} behind Starlette: {idle_starlette[library]}", file=sys.stderr)
    idle_many = hold("askstream", args.idle_many) if args.idle_many else None
    if idle_many:
        print(f"idle many askstream: {idle_many}", file=sys.stderr)
    return Results(single, fairness, ticks, idle_results, idle_starlette, idle_many, floods)


def hold(library: str, streams: int, app: str = "plain") -> dict[str, Any]:
    with serving(library, app) as server:
        time.sleep(0.5)
        before = psutil.Process(server.pid).memory_info().rss
        result = run_reader("idle", port=server.port, streams=streams, server_pid=server.pid)
    result["streams"] = streams
    result["rss_before"] = before
    if result.get("rss"):
        result["kib_per_stream"] = (result["rss"] - before) / streams / 1024
    return result


# The report ----------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def report(results: Results, args: argparse.Namespace, command: str) -> str:
    a, s = "askstream", "sse-starlette"
    single_ratio = results.single[a] / results.single[s]
    cpu = {
        lib: results.ticks[lib]["cpu_seconds"] / results.ticks[lib]["events"] * 1e6
        for lib in results.ticks
    }
    cpu_ratio = cpu[a] / cpu[s]
    idle = results.idle
    kib = {lib: idle[lib].get("kib_per_stream", float("nan")) for lib in LIBRARIES}
    routed = results.idle_starlette
    routed_kib = {lib: routed[lib].get("kib_per_stream", float("nan")) for lib in LIBRARIES}
    out = [
        "## HTTP streaming (`bench/bench_http.py`)",
        "",
        f"{datetime.date.today().isoformat()}; CPython {platform.python_version()}; "
        f"askstream {_version('askstream')}, sse-starlette {_version('sse-starlette')}, "
        f"uvicorn {_version('uvicorn')} (httptools {_version('httptools')}, "
        f"uvloop {_version('uvloop')}), starlette {_version('starlette')}; "
        f"{psutil.cpu_count()} cores, {platform.machine()}, {platform.system()}, shared with "
        "other jobs. One uvicorn worker per server, a fresh server process per measurement, "
        "readers in their own process.",
        "",
        f"Command: `{command}`",
        "",
        "| measure | askstream | sse-starlette | askstream / sse-starlette | target |",
        "|---|--:|--:|--:|---|",
        f"| one stream, {args.events:,} events as fast as possible (best of {args.repeats}) "
        f"| {results.single[a]:,.0f} events/s | {results.single[s]:,.0f} events/s "
        f"| {single_ratio:.2f}x | ≥ 1.5x {_mark(single_ratio >= 1.5)} |",
        f"| {args.streams:,} streams x 20 events/s for {args.seconds:g} s (best of "
        f"{args.rounds}): server CPU per delivered event | {cpu[a]:.1f} µs | {cpu[s]:.1f} µs "
        f"| {cpu_ratio:.2f}x "
        f"| ≤ 0.6x {_mark(cpu_ratio <= 0.6)} |",
        f"| same, for reference: a bare `async for` + `send` loop on uvicorn, no library "
        f"| {cpu['floor']:.1f} µs | | {cpu['floor'] / cpu[s]:.2f}x | |",
        f"| same: events delivered in the window | {results.ticks[a]['events']:,} "
        f"| {results.ticks[s]['events']:,} | | |",
        f"| same: delay production → arrival, p50 / p99 | "
        f"{results.ticks[a]['p50'] * 1e3:.1f} / {results.ticks[a]['p99'] * 1e3:.1f} ms | "
        f"{results.ticks[s]['p50'] * 1e3:.1f} / {results.ticks[s]['p99'] * 1e3:.1f} ms | | |",
        f"| {args.idle:,} idle streams: accepted | {idle[a]['accepted']:,} "
        f"| {idle[s]['accepted']:,} | | all |",
        f"| same: server RSS per stream | {kib[a]:.1f} KiB | {kib[s]:.1f} KiB "
        f"| {kib[a] / kib[s]:.2f}x | ≤ 13 KiB {_mark(kib[a] <= 13)} |",
        f"| same, behind Starlette's router: accepted, RSS per stream "
        f"| {routed[a]['accepted']:,}, {routed_kib[a]:.1f} KiB "
        f"| {routed[s]['accepted']:,}, {routed_kib[s]:.1f} KiB "
        f"| {routed_kib[a] / routed_kib[s]:.2f}x | |",
    ]
    if results.idle_many is not None:
        many = results.idle_many
        many_kib = many.get("kib_per_stream", float("nan"))
        out.append(
            f"| {many['streams']:,} idle streams (askstream only): accepted, RSS per stream "
            f"| {many['accepted']:,}, {many_kib:.1f} KiB | | | "
            f"all, ≤ 13 KiB {_mark(many['accepted'] == many['streams'] and many_kib <= 13)} |"
        )
    fa, fs = results.fairness[a], results.fairness[s]
    out += [
        f"| fairness: slowest `GET /hello` while one stream sends 300,000 events "
        f"| {fa['worst'] * 1e3:.1f} ms ({fa['probes']} asked) "
        f"| {fs['worst'] * 1e3:.1f} ms ({fs['probes']} asked) | | ≤ 50 ms "
        f"{_mark(fa['worst'] <= 0.05 and fa['probes'] > 0)} |",
    ]
    out += flood_table(results.floods, args)
    out += [
        "",
        "Notes:",
        "",
        "- Both servers send identical bytes (`data: token\\n\\n`; sse-starlette with "
        '`sep="\\n"`), checked before timing. Pings are off (600 s) for both.',
        "- CPU per event is the server process's user + system CPU time over the window "
        "divided by the events the reader received in it; it includes uvicorn, the "
        "sources' timers and the kernel's socket work, which both servers pay alike.",
        "- The reference row is the least any response pays per event on uvicorn (one "
        "`send` per event, nothing else: no batching, heartbeat, slow-reader timer, "
        f"shutdown or error handling). The 0.6x target leaves "
        f"{0.6 * cpu[s] - cpu['floor']:.1f} µs per event above it; askstream spends "
        f"{cpu[a] - cpu['floor']:.1f} µs.",
        "- RSS per stream is (RSS holding the streams - RSS of the warmed-up server) / "
        "streams; each stream's source is an async generator waiting on one future "
        "(a log follower with nothing new), the same in both servers. The router row "
        "adds Starlette's per-request cost (a request object, middleware frames), "
        "about 5.5 KiB, to both.",
        "- Fairness: one probe after another, each on a new connection, for as long as the "
        'flood lasts; "1 asked" means the first probe was answered only once the flood '
        "was over.",
        "- Absolute numbers move with the load other jobs put on the machine; the ratios "
        "come from one run in which the contenders took turns.",
    ]
    return "\n".join(out)


def flood_table(floods: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    reference = floods[FLOODS[1][0]]
    flood = floods[FLOODS[0][0]]
    fair = (
        flood["p90"] <= reference["p90"] + 0.020
        and flood["p99"] <= reference["p99"] + 0.050
        and flood["probes"] >= reference["probes"]
    )

    def ms(value: float | None) -> str:
        if value is None or value != value:  # never stopped; no probe answered (NaN)
            return "-"
        return f"{value * 1e3:.1f} ms"

    out = [
        "",
        f"Fairness under a long flood: a source that never awaits and never ends, read as "
        f"fast as one reader process can for {args.flood_seconds:g} s; a probe in another "
        "process asks the same worker `GET /hello` every 20 ms, each on a new connection. "
        f"Target: askstream's probe p90 within 20 ms of the fair reference's, p99 within "
        f"50 ms, at least as many answered: {_mark(fair)}. Stop: from the reader's close to "
        "the source's `finally` (target ≤ 100 ms); `-`: it never stopped, the worker was "
        "killed.",
        "",
        "| source | events/s | probes answered | p50 | p90 | p99 | max | stop |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, _, _ in FLOODS:
        row = floods[name]
        out.append(
            f"| {name} | {row['events_per_s']:,.0f} | {row['probes']} | {ms(row['p50'])} "
            f"| {ms(row['p90'])} | {ms(row['p99'])} | {ms(row['max'])} "
            f"| {ms(row['stopped_after'])} |"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer repeats")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="turns at the 1,000 streams")
    parser.add_argument("--idle", type=int, default=5_000)
    parser.add_argument("--idle-many", type=int, default=10_000, help="0 to skip")
    parser.add_argument("--flood-seconds", type=float, default=5.0, help="the long flood")
    parser.add_argument("--floods-only", action="store_true", help="only the long flood")
    parser.add_argument("--reader", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.reader:
        reader_main(args.reader[0], json.loads(args.reader[1]))
        return 0
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.seconds = args.seconds or (5.0 if args.quick else 30.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    command = (
        ".venv/bin/python bench/bench_http.py"
        + " ".join(["", *(argv if argv is not None else sys.argv[1:])]).rstrip()
    )
    if args.floods_only:
        print("\n".join(flood_table(measure_floods(args), args)))
        return 0
    check_same_bytes()
    results = measure(args)
    body = report(results, args, command)
    print(body)
    if args.write:
        write_section("bench_http", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
