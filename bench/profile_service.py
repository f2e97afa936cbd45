"""Where one token's CPU goes in the ask service, stage by stage (cProfile).

The load is ``bench_service.py``'s latency run at one level (N concurrent asks
of 200 tokens at 20 tokens/s, the upstream stamping each piece); the service
runs under cProfile (``_profiled.py``), and each function's own time
(``tottime``) is put in the stage of the token's path its module belongs to.
The profiler slows Python calls more than C work, so read the shares, and the
µs per token as "under the profiler"; ``bench_service.py`` gives the real CPU.

    .venv/bin/python bench/profile_service.py                     # this checkout
    .venv/bin/python bench/profile_service.py --src /other/src    # another one (before/after)
    .venv/bin/python bench/profile_service.py --top 40            # and the hottest functions
    .venv/bin/python bench/profile_service.py --before /old/src --write   # before/after table
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

from _common import write_section
from askstream.testing import ServerProcess
from bench_service import LATENCY_TOKENS, RATE, _run_client

HERE = Path(__file__).resolve().parent

# (stage, path fragments of its modules, names of C functions it calls); the
# first stage that matches a function wins, so the specific ones come first.
STAGES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "chunk JSON (json.loads)",
        ("json/decoder.py", "json/__init__.py:loads", "_upstream.py:_chunk", "_openai.py:_chunk"),
        ("scanstring", "make_scanner", "orjson.loads", "<built-in method orjson.loads>"),
    ),
    (
        "upstream read + SSE decode",
        (
            "httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "idna/",
            "askstream/http/_async_client.py", "askstream/http/_session.py",
            "askstream/http/_reconnect.py", "askstream/http/_headers.py",
            "askstream/sse/_decoder.py", "askstream/sse/_batch.py", "askstream/service/_openai.py",
            "askstream/service/_upstream.py", "askstream/sse/_event.py",
        ),
        ("httptools", "feed_data", "recv", "decode' of 'bytes"),
    ),
    (
        "generation: store append + hand-off",
        (
            "askstream/service/_generation.py", "askstream/service/_text.py",
            "askstream/streams/", "asyncio/locks.py", "askstream/service/_backend.py",
        ),
        (),
    ),
    ("hub (fan-out)", ("askstream/service/_fanout.py", "askstream/http/_broadcast.py"), ()),
    (
        "event JSON + SSE encoding",
        ("json/encoder.py", "askstream/http/_items.py", "askstream/sse/_encoder.py"),
        ("encode_basestring", "c_make_encoder", "orjson.dumps", "encode' of 'str"),
    ),
    (
        "response + write (uvicorn)",
        (
            "askstream/http/_stream.py", "askstream/http/_batch.py", "askstream/http/_pull.py",
            "askstream/http/_watchdog.py", "askstream/http/_turn.py", "uvicorn/",
            "starlette/middleware", "starlette/_exception_handler.py",
            "askstream/service/_middleware.py",
            "askstream/service/_guards.py", "askstream/service/_identity.py",
            "askstream/http/_shutdown.py", "askstream/service/_edge.py",
        ),
        ("'write' of", "writelines", "send' of", "get_write_buffer"),
    ),
    (
        "event loop (tasks, futures, timers)",
        ("asyncio/", "uvloop/", "contextvars", "selectors.py"),
        ("run_until_complete", "run_forever", "create_future", "call_soon", "call_at",
         "call_later", "set_result", "done", "cancel", "_asyncio", "Task", "Future", "poll"),
    ),
]  # fmt: skip
OTHER = "once per ask (routing, SQL, history, ...)"


def stage_of(path: str, name: str) -> str:
    where = f"{path}:{name}"
    for stage, fragments, builtins in STAGES:
        if path == "~":
            if any(fragment in name for fragment in builtins):
                return stage
        elif any(fragment in where for fragment in fragments):
            return stage
    return OTHER


class _Profiled(ServerProcess):
    def __init__(self, out: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.out = out

    def command(self) -> list[str]:
        plain = super().command()
        return [sys.executable, str(HERE / "_profiled.py"), self.out, *plain[3:]]


def profile(src: str | None, concurrency: int, out: str, data_dir: str) -> tuple[int, float]:
    upstream = ServerProcess(
        "askstream.testing:FakeUpstream.from_env",
        factory=True,
        env={
            "ASKSTREAM_FAKE_TOKENS": str(LATENCY_TOKENS),
            "ASKSTREAM_FAKE_DELAY": str(1 / RATE),
            "ASKSTREAM_FAKE_STAMP": "1",
        },
    )
    env = {
        "ASKSTREAM_DATA_DIR": data_dir,
        "ASKSTREAM_LLM_URL": upstream.url + "/v1",
        "ASKSTREAM_LLM_MODEL": "fake",
        "ASKSTREAM_LOG_LEVEL": "warning",
    }
    if src:
        env["PYTHONPATH"] = src
    service = _Profiled(
        out,
        "askstream.service:create_app",
        factory=True,
        env=env,
        args=["--timeout-graceful-shutdown", "2"],
    )
    upstream.start()
    try:
        service.start()
        try:
            _run_client(service.url, "askstream", 10, 1.0, 10)  # warm up, unprofiled
            os.kill(service.pid, signal.SIGUSR1)
            result = _run_client(service.url, "askstream", concurrency, 1.0, concurrency)
            os.kill(service.pid, signal.SIGUSR2)
            deadline = time.monotonic() + 60
            while not os.path.exists(out) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # let the dump finish
        finally:
            service.stop(timeout=60)
    finally:
        upstream.stop()
    if result["failed"]:
        raise RuntimeError(f"{result['failed']} asks failed")
    return int(result["tokens"]), float(result["p99"])


# Helpers every stage calls: their time goes to their callers' stages.
TRANSPARENT = (
    "~",
    "contextlib.py",
    "typing.py",
    "<string>",
    "weakref.py",
    "enum.py",
    "functools.py",
)


def _transparent(path: str) -> bool:
    return path == "~" or any(path.endswith(t) for t in TRANSPARENT)


def table(stats: pstats.Stats, tokens: int) -> list[tuple[str, float, float]]:
    raw = stats.stats  # type: ignore[attr-defined]
    memo: dict[tuple[str, int, str], dict[str, float]] = {}

    def shares(func: tuple[str, int, str], depth: int = 0) -> dict[str, float]:
        # The stages a function's time belongs to, as fractions: its own for
        # the token path's modules; its callers', weighted by the calls on each
        # edge, for C functions and generic helpers (len, contextlib, ...).
        path, _, name = func
        path = path.replace(os.sep, "/")
        if not _transparent(path) or depth > 6:
            return {stage_of(path, name): 1.0}
        if func in memo:
            return memo[func]
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        weights = {caller: edge[1] for caller, edge in callers.items()}
        total = sum(weights.values())
        result: dict[str, float] = {}
        if not total:
            result = {stage_of(path, name): 1.0}
        for caller, weight in weights.items():
            for stage, part in shares(caller, depth + 1).items():
                result[stage] = result.get(stage, 0.0) + part * weight / total
        memo[func] = result
        return result

    totals: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in raw.items():
        for stage, part in shares(func).items():
            totals[stage] = totals.get(stage, 0.0) + tottime * part
    whole = sum(totals.values())
    order = [stage for stage, _, _ in STAGES] + [OTHER]
    return [(s, totals.get(s, 0.0) / tokens * 1e6, totals.get(s, 0.0) / whole) for s in order] + [
        ("total", whole / tokens * 1e6, 1.0)
    ]


def section(rows: dict[str, list[tuple[str, float, float]]], concurrency: int, command: str) -> str:
    """The docs/benchmarks.md section: one column pair per profiled tree."""
    names = list(rows)
    lines = [
        "### Where a token's CPU goes (`bench/profile_service.py`)",
        "",
        f"{datetime.date.today().isoformat()}; CPython {platform.python_version()}. "
        f"The service under cProfile (main thread's CPU time) while {concurrency} asks "
        f"of {LATENCY_TOKENS} tokens stream at {RATE} tokens/s, after a warm-up; each "
        "function's own time is put in the stage of the token's path its module "
        "belongs to (C functions and generic helpers go to their callers' stages). "
        "The profiler slows Python calls more than C work: read the shares, and the "
        "µs as under the profiler (the real CPU per token is in the table above). "
        "Each tree's profile is one run, one after the other.",
        "",
        "```sh",
        command,
        "```",
        "",
        "| stage | " + " | ".join(f"{n}: µs per token | {n}: share" for n in names) + " |",
        "|:--|" + "--:|--:|" * len(names),
    ]
    for index, (stage, _, _) in enumerate(rows[names[0]]):
        cells = []
        for name in names:
            _, us, share = rows[name][index]
            cells.append(f"{us:.1f} | {share:.0%}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", help="the askstream source tree to profile (default: installed)")
    parser.add_argument(
        "--before", metavar="SRC", help="profile this tree first, and show both side by side"
    )
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--top", type=int, default=0, help="also print the N hottest functions")
    parser.add_argument("--keep", help="write the raw profile here")
    parser.add_argument("--load", help="only read a profile written with --keep")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.src} if args.before else {"this": args.src}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in trees.items():
            out = args.keep or os.path.join(tmp, f"{name}.prof")
            if args.load:
                out, tokens = args.load, args.concurrency * LATENCY_TOKENS
            else:
                os.makedirs(os.path.join(tmp, name))
                tokens, _ = profile(src, args.concurrency, out, os.path.join(tmp, name))
            stats = pstats.Stats(out)
            rows[name] = table(stats, tokens)
            print(f"{name}: {tokens} tokens, {args.concurrency} asks at {RATE} tokens/s")
            if args.top:
                stats.sort_stats("tottime").print_stats(args.top)
    command = ".venv/bin/python bench/profile_service.py " + " ".join(sys.argv[1:])
    text = section(rows, args.concurrency, command.strip())
    print(text)
    if args.write:
        write_section("profile_service", text)


if __name__ == "__main__":
    main()
