"""SSE codec throughput: askstream.sse side by side with httpx-sse and sse-starlette.

Decoding: every contender gets the same pre-built byte stream, cut into the same
4 KiB chunks, and builds one object per event:

* askstream: ``Decoder().feed(chunk)`` for each chunk.
* httpx-sse (internals): the exact path ``EventSource.iter_sse()`` takes in
  httpx-sse 0.4.3, minus the socket and the generators: httpx's own
  ``TextDecoder("utf-8")`` (what ``Response.iter_text()`` uses for a
  ``text/event-stream`` body without a charset; empty texts are dropped, as
  ``TextChunker`` does), then ``SSELineDecoder.decode(text)`` (``.flush()`` at the
  end, as ``_iter_sse_lines`` does), then ``SSEDecoder.decode(line.rstrip("\\n"))``,
  keeping the non-``None`` results.
* httpx-sse (EventSource): the public API itself, ``EventSource(response).iter_sse()``
  over an in-memory ``httpx.Response`` whose body iterates the same chunks.
* split ceiling: ``(rest + chunk).split(b"\\n\\n")``, keeping the remainder between
  chunks: one ``bytes`` per block and no parsing at all. It is not a decoder (it
  does not see CRLF blank lines), so its count is only checked on LF workloads.

Encoding: ``encode(Event(data))`` against sse-starlette's
``ServerSentEvent(data).encode()``, construct + encode per event for both.

Before anything is timed, each decoder's events are checked against the events
the workload was generated from; any difference aborts the run. httpx-sse's one
known deviation on these workloads is reported, not hidden: once a stream has
carried an ``id``, it dispatches an empty event at every blank line that ends a
block without data (a heartbeat comment such as ``: ping``), where the spec
dispatches nothing. Those extra events are counted and shown.

Timing: ``time.perf_counter``, best of ``--repeats`` runs, the contenders taking
turns within each round so that load from other processes hits them alike; the
garbage collector is off during a run. Throughput is always the workload's event
count divided by the time, so every column of a row divides the same number.

    .venv/bin/python bench/bench_sse.py            # print the tables
    .venv/bin/python bench/bench_sse.py --write    # and update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx._decoders import TextDecoder  # what httpx.Response.iter_text() decodes with
from httpx_sse import EventSource
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from sse_starlette.event import ServerSentEvent as StarletteEvent

try:
    from askstream.sse import Decoder, Event, encode
except ImportError as exc:  # the decoder may not have landed yet
    sys.exit(f"bench_sse: cannot import askstream.sse's Decoder/Event/encode yet: {exc}")

from _common import DOC, ROOT, write_section

CHUNK_SIZE = 4096
DEFAULT_EVENTS = 200_000
DEFAULT_REPEATS = 5
SEED = 20_240_601
DECODER_TARGET = 3.0
ENCODER_TARGET = 2.0

DOC_INTRO = """\
# Benchmarks

The scripts under `bench/` time askstream against the libraries people would
otherwise use, side by side in one process on identical input. Run one with
`./dev bench <script>` (for example `./dev bench bench_sse.py`, which runs
`.venv/bin/python bench/bench_sse.py`); each prints Markdown tables, and with
`--write` (`.venv/bin/python bench/<script> --write`) replaces its own section of
this file, the text between its `<!-- <name>:start -->` and `<!-- <name>:end -->`
markers. Nothing outside a script's markers is touched.

The numbers come from a shared 2-core machine that other jobs were using at the
same time, so absolute rates are noisy; compare the ratios taken within one run.
"""

# (data, event type, last event id, retry): what a spec-exact reader dispatches.
Expected = tuple[str, str, str | None, int | None]


@dataclass(slots=True)
class Workload:
    name: str
    description: str
    stream: bytes
    expected: list[Expected]
    payloads: list[str]  # the data of each event, for the encoder side

    @property
    def chunks(self) -> list[bytes]:
        stream = self.stream
        return [stream[i : i + CHUNK_SIZE] for i in range(0, len(stream), CHUNK_SIZE)]


# --- workloads -------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PUNCTUATION = [".", ",", "!", "?", ":", ";", "'s", "-", "..."]


def _ascii_vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """LLM-ish tokens of 1-8 characters: words, mostly with a leading space, and punctuation."""
    words = []
    for _ in range(size):
        if rng.random() < 0.08:
            words.append(rng.choice(_PUNCTUATION))
            continue
        lead = " " if rng.random() < 0.7 else ""
        length = rng.randint(1, 8 - len(lead))
        words.append(lead + "".join(rng.choice(_LETTERS) for _ in range(length)))
    return words


def _cjk_vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """1-6 CJK ideographs (3 UTF-8 bytes each), now and then full-width punctuation."""
    words = []
    for _ in range(size):
        text = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.1:  # full-width punctuation
            text = text[:-1] + rng.choice("\uff0c\u3002\uff01\uff1f\u3001")
        words.append(text)
    return words


def _token_workload(name: str, description: str, vocabulary: list[str], n: int) -> Workload:
    rng = random.Random(f"{SEED}:{name}")
    payloads = ['{"delta":"' + rng.choice(vocabulary) + '"}' for _ in range(n)]
    stream = "".join(f"data: {payload}\n\n" for payload in payloads).encode()
    expected: list[Expected] = [(payload, "message", None, None) for payload in payloads]
    return Workload(name, description, stream, expected, payloads)


def build_tokens(n: int) -> Workload:
    vocabulary = _ascii_vocabulary(random.Random(SEED))
    return _token_workload("tokens", 'data: {"delta":"<1-8 chars>"}, LF', vocabulary, n)


def build_chinese(n: int) -> Workload:
    vocabulary = _cjk_vocabulary(random.Random(SEED))
    return _token_workload(
        "chinese", 'data: {"delta":"<1-6 CJK chars>"}, LF, multibyte split by chunks', vocabulary, n
    )


def build_multiline(n: int) -> Workload:
    """The issue's "mix with multi-line data and CRLF": a token stream as a resumable
    server writes it with CRLF line ends (sse-starlette's default).

    Every event carries an ``id:``; 70% are one ``data:`` line of token text, 30%
    carry text with line breaks, written as 2-4 ``data:`` lines.
    """
    rng = random.Random(f"{SEED}:multiline")
    words = _ascii_vocabulary(rng, 2000)
    parts: list[str] = []
    expected: list[Expected] = []
    for i in range(n):
        count = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        data_lines = [
            "".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(count)
        ]
        event_id = str(i + 1)
        lines = ["id: " + event_id] + ["data: " + value for value in data_lines]
        parts.append("\r\n".join(lines) + "\r\n\r\n")
        expected.append(("\n".join(data_lines), "message", event_id, None))
    stream = "".join(parts).encode()
    description = "token text, id on every event, 30% multi-line data, CRLF line ends"
    return Workload("multiline", description, stream, expected, [e[0] for e in expected])


def build_fielded(n: int) -> Workload:
    """Typed events as OpenAI's and Anthropic's streaming APIs send them: an ``event:``
    line naming the type, then 1-4 data lines; CRLF line ends."""
    rng = random.Random(f"{SEED}:fielded")
    words = [w.strip() or "x" for w in _ascii_vocabulary(rng, 2000)]
    parts: list[str] = []
    expected: list[Expected] = []
    for _ in range(n):
        data_lines = [
            " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(1, 4))
        ]
        event_type = rng.choice(["response.output_text.delta", "content_block_delta", "ping"])
        lines = ["event: " + event_type] + ["data: " + value for value in data_lines]
        parts.append("\r\n".join(lines) + "\r\n\r\n")
        expected.append(("\n".join(data_lines), event_type, None, None))
    stream = "".join(parts).encode()
    description = "event type + 1-4 data lines per event, CRLF line ends"
    return Workload("fielded", description, stream, expected, [e[0] for e in expected])


def build_mixed(n: int) -> Workload:
    """A legal stream mixing the field kinds and line ends a real server produces.

    Each event has 2-4 data lines (a tenth written ``data:value``, without the
    optional space); a quarter carry ``event:``, 30% ``id:`` (ids then persist, as
    the spec says), 0.5% ``retry:``, a tenth an in-block comment. Every third event
    ends its lines with CRLF, the rest with LF. Every 25th event is followed by a
    standalone ``: ping`` heartbeat block, which must dispatch nothing.
    """
    rng = random.Random(f"{SEED}:mixed")
    words = [w.strip() or "x" for w in _ascii_vocabulary(rng, 2000)]
    words += ["café", "naïve", "Grüße", "ok", "{}", "[1, 2]", '{"a": 1}', "a:b", "x=y"]
    event_types = ["delta", "tool_call", "status", "message"]
    parts: list[str] = []
    expected: list[Expected] = []
    last_id: str | None = None
    for i in range(n):
        eol = "\r\n" if i % 3 == 2 else "\n"
        lines: list[str] = []
        if rng.random() < 0.1:
            lines.append(": note " + rng.choice(words))
        event_type = "message"
        if rng.random() < 0.25:
            event_type = rng.choice(event_types)
            lines.append("event: " + event_type)
        if rng.random() < 0.3:
            last_id = f"{i}-{rng.randrange(1 << 30):x}"
            lines.append("id: " + last_id)
        retry = None
        if rng.random() < 0.005:
            retry = rng.choice([1000, 3000, 15000])
            lines.append(f"retry: {retry}")
        data_lines = [
            " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(2, 4))
        ]
        for value in data_lines:
            lines.append(("data:" if rng.random() < 0.1 else "data: ") + value)
        parts.append(eol.join(lines) + eol + eol)
        expected.append(("\n".join(data_lines), event_type, last_id, retry))
        if i % 25 == 24:
            parts.append(": ping\n\n")
    stream = "".join(parts).encode()
    description = "2-4 data lines, event/id/retry, comments, heartbeats, 1/3 CRLF"
    return Workload("mixed", description, stream, expected, [e[0] for e in expected])


# --- the contenders --------------------------------------------------------------------------


def decode_askstream(chunks: Sequence[bytes]) -> list[Any]:
    feed = Decoder().feed
    events: list[Any] = []
    extend = events.extend
    for chunk in chunks:
        extend(feed(chunk))
    return events


def decode_httpx_sse(chunks: Sequence[bytes]) -> list[Any]:
    """httpx-sse 0.4.3's EventSource.iter_sse() pipeline, called directly (see module doc)."""
    text_decoder = TextDecoder("utf-8")
    line_decoder = SSELineDecoder()
    decode_line = SSEDecoder().decode
    events: list[Any] = []
    append = events.append
    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:
            for line in line_decoder.decode(text):
                event = decode_line(line.rstrip("\n"))
                if event is not None:
                    append(event)
    tail = text_decoder.flush()
    for line in (line_decoder.decode(tail) if tail else []) + line_decoder.flush():
        event = decode_line(line.rstrip("\n"))
        if event is not None:
            append(event)
    return events


def decode_httpx_sse_public(chunks: Sequence[bytes]) -> list[Any]:
    """The public API on an in-memory response: EventSource(response).iter_sse()."""
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(chunks)
    )
    return list(EventSource(response).iter_sse())


def split_ceiling(chunks: Sequence[bytes]) -> list[bytes]:
    # The blank line of a CRLF-only workload is CRLF CRLF; split there, not at LF LF.
    separator = b"\r\n\r\n" if b"\n\n" not in chunks[0] else b"\n\n"
    blocks: list[bytes] = []
    extend = blocks.extend
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(separator)
        rest = parts.pop()
        extend(parts)
    return blocks


def encode_askstream(payloads: Sequence[str]) -> list[bytes]:
    return [encode(Event(data)) for data in payloads]


def encode_starlette(payloads: Sequence[str]) -> list[bytes]:
    return [StarletteEvent(data).encode() for data in payloads]


DECODERS: dict[str, Callable[[Sequence[bytes]], list[Any]]] = {
    "askstream": decode_askstream,
    "httpx-sse": decode_httpx_sse,
    "httpx-sse public": decode_httpx_sse_public,
    "split": split_ceiling,
}
ENCODERS: dict[str, Callable[[Sequence[str]], list[bytes]]] = {
    "askstream": encode_askstream,
    "sse-starlette": encode_starlette,
}


# --- sanity checks ---------------------------------------------------------------------------


def _first_difference(got: Sequence[Expected], want: Sequence[Expected]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"event #{index}: got {a!r}, expected {b!r}"
    return f"{len(got)} events, expected {len(want)}"


def check_decoders(workload: Workload, chunks: list[bytes]) -> tuple[list[str], dict[str, int]]:
    """Return (failures, httpx-sse phantom-event counts by contender name)."""
    failures: list[str] = []
    phantoms: dict[str, int] = {}
    want = workload.expected
    ours = [(e.data, e.event, e.id, e.retry) for e in decode_askstream(chunks)]
    if ours != want:
        failures.append(f"askstream on {workload.name}: {_first_difference(ours, want)}")
    # Data-less events are never legitimate on these workloads (every event has data),
    # so an empty-data httpx-sse event is its empty-block dispatch deviation.
    for name in ("httpx-sse", "httpx-sse public"):
        events = DECODERS[name](chunks)
        theirs = [(e.data, e.event, e.id or None, e.retry) for e in events if e.data]
        phantoms[name] = len(events) - len(theirs)
        if theirs != want:
            failures.append(f"{name} on {workload.name}: {_first_difference(theirs, want)}")
    if phantoms["httpx-sse"] != phantoms["httpx-sse public"]:
        failures.append(f"httpx-sse internals and public API disagree on {workload.name}")
    blocks = split_ceiling(chunks)
    uniform = b"\n\n\n" not in workload.stream and (
        b"\r" not in workload.stream or b"\n\n" not in workload.stream
    )
    if uniform and len(blocks) != len(want):
        failures.append(f"split on {workload.name}: {len(blocks)} blocks, {len(want)} events")
    return failures, phantoms


def check_encoders(workload: Workload) -> list[str]:
    failures = []
    ours = encode_askstream(workload.payloads)
    if b"".join(ours) != workload.stream:
        failures.append(f"askstream encode on {workload.name}: output differs from the stream")
    theirs = encode_starlette(workload.payloads)
    # sse-starlette ends lines with CRLF by default; otherwise the bytes must be the same.
    if [block.replace(b"\r\n", b"\n") for block in theirs] != ours:
        failures.append(f"sse-starlette encode on {workload.name}: output differs from ours")
    return failures


# --- timing ----------------------------------------------------------------------------------


def best_times(
    contenders: dict[str, Callable[[Any], object]], argument: object, repeats: int
) -> dict[str, float]:
    """Best wall time per contender; contenders alternate within each round."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, function in contenders.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                result = function(argument)
                elapsed = time.perf_counter() - start
            finally:
                gc.enable()
            del result  # freed outside the timed region
            best[name] = min(best[name], elapsed)
    return best


# --- report ----------------------------------------------------------------------------------


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds / 1e6:.2f} M/s"


def _ratio(value: float, target: float | None = None) -> str:
    text = f"{value:.2f}x"
    if target is not None:
        text += " ✓" if value >= target else " ✗"
    return text


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_line(repeats: int) -> str:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("askstream", "httpx-sse", "sse-starlette", "httpx")
    )
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    machine = f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}"
    return (
        f"{today}; {python}; {versions}; {machine}; "
        f"best of {repeats}, {CHUNK_SIZE // 1024} KiB chunks, gc off while timing."
    )


def render(
    workloads: list[Workload],
    decode_times: dict[str, dict[str, float]],
    encode_times: dict[str, dict[str, float]],
    phantoms: dict[str, int],
    repeats: int,
) -> str:
    out = [
        "## SSE codec (`bench/bench_sse.py`)",
        "",
        environment_line(repeats),
        "",
        "Decoding: events/s from 4 KiB chunks of one byte string (higher is better).",
        "",
        "| workload | events | MB | askstream `Decoder.feed` | httpx-sse internals "
        '| httpx-sse `EventSource.iter_sse` | `split(b"\\n\\n")` ceiling '
        f"| askstream / httpx-sse (target {DECODER_TARGET:g}x) | askstream / ceiling |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for workload in workloads:
        times = decode_times[workload.name]
        n = len(workload.expected)
        out.append(
            f"| {workload.name} | {n:,} | {len(workload.stream) / 1e6:.1f} "
            f"| {_rate(n, times['askstream'])} | {_rate(n, times['httpx-sse'])} "
            f"| {_rate(n, times['httpx-sse public'])} | {_rate(n, times['split'])} "
            f"| {_ratio(times['httpx-sse'] / times['askstream'], DECODER_TARGET)} "
            f"| {times['split'] / times['askstream']:.0%} |"
        )
    out += ["", "Workloads:", ""]
    out += [f"- {w.name}: {w.description}." for w in workloads]
    out += [
        "",
        "Encoding: `encode(Event(data))` against sse-starlette's "
        "`ServerSentEvent(data).encode()`, construct + encode per event.",
        "",
        f"| payloads | events | askstream | sse-starlette "
        f"| askstream / sse-starlette (target {ENCODER_TARGET:g}x) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, times in encode_times.items():
        n = next(len(w.payloads) for w in workloads if w.name == name)
        out.append(
            f"| {name} | {n:,} | {_rate(n, times['askstream'])} "
            f"| {_rate(n, times['sse-starlette'])} "
            f"| {_ratio(times['sse-starlette'] / times['askstream'], ENCODER_TARGET)} |"
        )
    out += [
        "",
        "Notes:",
        "",
        '- httpx-sse internals: httpx\'s `TextDecoder("utf-8")` → `SSELineDecoder.decode` → '
        "`SSEDecoder.decode(line)`, the functions `EventSource.iter_sse()` chains, called "
        "directly; `EventSource.iter_sse` is the public API over an in-memory "
        "`httpx.Response`. Ratios are against the internals, httpx-sse's faster path.",
        "- Every decoder's events (data, type, last event id, retry) were checked against the "
        "events each workload was generated from before timing. The split ceiling is not a "
        "parser: it does not see CRLF blank lines, so on mixed it only sets the pace.",
    ]
    for workload in workloads:
        extra = phantoms.get(workload.name, 0)
        if extra:
            out.append(
                f"- httpx-sse on {workload.name}: {extra:,} extra empty events beyond the "
                f"{len(workload.expected):,} real ones. Once a stream has carried an `id`, "
                "httpx-sse dispatches an event at every blank line that ends a block without "
                "data (here, each `: ping` heartbeat); the spec dispatches nothing. Its time "
                "includes building them."
            )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per workload")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="best of N")
    args = parser.parse_args(argv)

    workloads = [
        build_tokens(args.events),
        build_multiline(args.events),
        build_chinese(args.events),
        build_fielded(args.events),
        build_mixed(args.events),
    ]
    chunked = {w.name: w.chunks for w in workloads}
    encoder_workloads = [w for w in workloads if w.name in ("tokens", "chinese")]

    failures: list[str] = []
    phantoms: dict[str, int] = {}
    for workload in workloads:
        found, extra = check_decoders(workload, chunked[workload.name])
        failures += found
        phantoms[workload.name] = extra["httpx-sse"]
    for workload in encoder_workloads:
        failures += check_encoders(workload)
    if failures:
        print("bench_sse: SANITY CHECK FAILED, nothing timed:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1

    decode_times = {}
    for workload in workloads:
        print(f"timing decoders on {workload.name}...", file=sys.stderr)
        decode_times[workload.name] = best_times(DECODERS, chunked[workload.name], args.repeats)
    encode_times = {}
    for workload in encoder_workloads:
        print(f"timing encoders on {workload.name}...", file=sys.stderr)
        encode_times[workload.name] = best_times(ENCODERS, workload.payloads, args.repeats)

    report = render(workloads, decode_times, encode_times, phantoms, args.repeats)
    print(report)
    if args.write:
        write_section("bench_sse", report, intro=DOC_INTRO)
        print(f"bench_sse: updated {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
