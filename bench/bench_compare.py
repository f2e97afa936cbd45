"""askstream against an earlier askstream, taking turns in one run: HTTP streaming's speed.

The four measures a change to the response must not make worse (issue 13):
events/s on one stream, CPU per delivered event at 1,000 streams x 20 events/s
(with the bare loop's floor in the same turns), RSS per idle stream at 10,000,
and the p99 of one answer's fan-out to 1,000 readers through the service.
``--before`` is the ``src/`` of the earlier checkout; every server of a turn
imports askstream from there (``PYTHONPATH``) or from this tree. The two take
turns, in alternating order, ``--rounds`` times; each measure reports the
best (events/s, CPU, RSS) or the median (p99) over the rounds::

    mkdir -p /tmp/before && git archive 244ef78 src | tar -x -C /tmp/before
    .venv/bin/python bench/bench_compare.py --before /tmp/before/src --write

The measuring ends (readers, clients) are this tree's in both turns. For the
one-stream and 1,000-stream rows the server runs on the first core and its
reader on the second (``apart``); the fan-out's three processes are left to
the scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

import bench_http
import bench_resume
from _common import write_section

HERE = Path(__file__).resolve().parent
AFTER_SRC = HERE.parent / "src"


@contextlib.contextmanager
def importing(src: Path) -> Iterator[None]:
    """Servers started meanwhile import askstream from ``src``."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


@contextlib.contextmanager
def apart(server_pid: int) -> Iterator[None]:
    """The server on the first core, the reader (started meanwhile) on the second.

    Left to the scheduler, one stream's events/s comes out at either of two
    levels (1.2 or 1.9 million here, the same tree run after run), by whether
    the two processes happened to share a core.
    """
    me = psutil.Process()
    mine = me.cpu_affinity()
    cores = psutil.cpu_count() or 1
    if cores < 2:
        yield
        return
    psutil.Process(server_pid).cpu_affinity([0])
    me.cpu_affinity([1])  # inherited by the reader's process
    try:
        yield
    finally:
        me.cpu_affinity(mine)


def one_turn(args: argparse.Namespace) -> dict[str, float]:
    """Each measure once, for whichever tree the servers import now."""
    with bench_http.serving("askstream") as server, apart(server.pid):
        single = bench_http.run_reader("single", port=server.port, events=args.events)
    turn = {"events/s": single["events"] / single["seconds"]}
    for library in ("askstream", "floor"):
        with bench_http.serving(library) as server, apart(server.pid):
            ticks = bench_http.run_reader(
                "ticks",
                port=server.port,
                streams=args.streams,
                seconds=args.seconds,
                server_pid=server.pid,
            )
        turn[f"cpu {library}"] = ticks["cpu_seconds"] / ticks["events"] * 1e6
    idle = bench_http.hold("askstream", args.idle)
    turn["KiB per idle stream"] = idle.get("kib_per_stream", float("nan"))
    turn["idle accepted"] = idle.get("accepted", 0)
    fanout = bench_resume.fanout("memory", args.readers, args.redis_url)
    turn["fan-out p99"] = fanout.p99
    turn["fan-out p50"] = fanout.p50
    turn["fan-out complete"] = float(fanout.complete)
    return turn


def measure(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    turns: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    trees = {"before": args.before, "after": AFTER_SRC}
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for name in order:
            with importing(trees[name]):
                turn = one_turn(args)
            turns[name].append(turn)
            print(f"round {round_ + 1} {name}: {turn}", file=sys.stderr)
    return turns


def _git(*argv: str) -> str:
    done = subprocess.run(
        ["git", *argv], check=False, capture_output=True, text=True, cwd=HERE.parent
    )
    return done.stdout.strip()


def report(turns: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    def best(name: str, key: str, *, high: bool) -> float:
        values = [turn[key] for turn in turns[name]]
        return max(values) if high else min(values)

    def median(name: str, key: str) -> float:
        return statistics.median(turn[key] for turn in turns[name])

    def each(name: str, key: str, fmt: str) -> str:
        return ", ".join(format(turn[key], fmt) for turn in turns[name])

    def best_of_each(key: str, *, high: bool) -> tuple[float, float, bool]:
        return best("before", key, high=high), best("after", key, high=high), high

    # (measure, before, after, higher is better, format)
    rows: list[tuple[str, float, float, bool, str]] = [
        (
            f"one stream, {args.events:,} events, events/s (best of {args.rounds})",
            *best_of_each("events/s", high=True),
            ",.0f",
        ),
        (
            f"CPU per delivered event, {args.streams:,} streams x 20 ev/s "
            f"({args.seconds:.0f} s windows; best of {args.rounds}), µs",
            *best_of_each("cpu askstream", high=False),
            ".1f",
        ),
        (
            f"RSS per idle stream at {args.idle:,} (best of {args.rounds}), KiB",
            *best_of_each("KiB per idle stream", high=False),
            ".1f",
        ),
        (
            f"fan-out: one answer to {args.readers:,} readers on one worker, "
            f"p99 (median of {args.rounds}), ms",
            median("before", "fan-out p99"),
            median("after", "fan-out p99"),
            False,
            ".1f",
        ),
    ]
    lines = [
        "### Before and after (`bench/bench_compare.py`)",
        "",
        f"{datetime.date.today().isoformat()}; CPython {platform.python_version()}; "
        f"{psutil.cpu_count()} cores, {platform.machine()}, {platform.system()}; load "
        f"average {os.getloadavg()[1]:.1f} over the last 5 minutes at the end. `before` is "
        f"`{args.before}`, `after` this tree (commit `{_git('rev-parse', '--short', 'HEAD')}`"
        f"{', with changes' if _git('status', '--porcelain', '--', 'src') else ''}); "
        f"the two took turns, {args.rounds} rounds in alternating order.",
        "",
        "```sh",
        ".venv/bin/python bench/bench_compare.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        "| measure | before | after | after / before | no more than 10% worse |",
        "|---|--:|--:|--:|:-:|",
    ]
    for measure_, before, after, high, fmt in rows:
        ratio = after / before
        worse = (before / after if high else ratio) - 1
        mark = "✓" if worse <= 0.10 else "✗"
        lines.append(f"| {measure_} | {before:{fmt}} | {after:{fmt}} | {ratio:.2f} | {mark} |")
    lines += [
        "",
        "Every turn's figures (before; after):",
        "",
        f"- events/s: {each('before', 'events/s', ',.0f')}; {each('after', 'events/s', ',.0f')}",
        f"- CPU per event, µs: {each('before', 'cpu askstream', '.1f')}; "
        f"{each('after', 'cpu askstream', '.1f')} (the bare loop's floor in the same turns: "
        f"{each('before', 'cpu floor', '.1f')}; {each('after', 'cpu floor', '.1f')})",
        f"- KiB per idle stream: {each('before', 'KiB per idle stream', '.2f')}; "
        f"{each('after', 'KiB per idle stream', '.2f')}",
        f"- fan-out p99, ms: {each('before', 'fan-out p99', '.1f')}; "
        f"{each('after', 'fan-out p99', '.1f')} (p50: {each('before', 'fan-out p50', '.1f')}; "
        f"{each('after', 'fan-out p50', '.1f')})",
    ]
    incomplete = sum(
        1 for name in turns for turn in turns[name] if not turn["fan-out complete"]
    ) + sum(1 for name in turns for turn in turns[name] if turn["idle accepted"] < args.idle)
    if incomplete:
        lines.append(f"- {incomplete} turns lost readers or streams: read the rows with care.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, metavar="SRC")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--readers", type=int, default=1_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    bench_http.raise_fd_limit()
    section = report(measure(args), args)
    print(section)
    if args.write:
        write_section("bench_compare", section)


if __name__ == "__main__":
    main()
