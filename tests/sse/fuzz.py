"""A seeded mutation fuzzer for the decoder: vectors in, mutants out, each checked against the spec.

Hypothesis shrinks well but runs a few hundred examples a second; a million takes
an hour. This is the other tool of the trade (AFL's "havoc" stage, without its
coverage feedback): start from the seed corpus (every input of ``vectors.json``),
stack a few random mutations on a seed or on an earlier mutant (bit flips, SSE
tokens, deleted, repeated and spliced ranges, swapped line ends), cut the result
into random chunks, and check each run against ``spec_model``. It is
deterministic for a given seed, so a failure names the seed and case number that
reproduce it (``replay``).

What a run must show, per input:

- ``Decoder.feed`` raises nothing but :class:`~askstream.EventTooLarge`, and that
  only when the stream holds a line or an event's data longer than the limit
  (which one trips it depends on the chunking: a long field line that arrives
  whole is never an unfinished line);
- without that error, the events, ``last_event_id`` and ``retry`` are the spec
  model's, whatever the chunking;
- with it, the events handed out before it are the first of the model's.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askstream import EventTooLarge
from askstream.sse import Decoder, Event

from .spec_model import parse as spec_parse

__all__ = [
    "Case",
    "FuzzReport",
    "MakeDecoder",
    "Mutator",
    "check",
    "fuzz",
    "largest",
    "make_case",
    "replay",
    "seed_corpus",
]

VECTORS_PATH = Path(__file__).with_name("vectors.json")

#: The bytes a decoder cares about, for insertions; the rest of the byte range
#: comes from bit flips and random bytes.
TOKENS: tuple[bytes, ...] = (
    b"data: ",
    b"data:",
    b"data",
    b"id: ",
    b"id",
    b"event: ",
    b"event",
    b"retry: ",
    b"retry",
    b":",
    b": ",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"\r\r",
    b"\xef\xbb\xbf",
    b"\xef\xbb",
    b"\x00",
    b"0",
    b"42",
    b"-1",
    b"1e3",
    b"99999999999999999999",
    b"x",
    "你".encode(),
    "😀".encode(),
    "😀".encode()[:2],
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    b"\t",
    b"\x0b\x0c\x1c\x85",
    "\u2028".encode(),
)
_LINE_END = re.compile(rb"\r\n|\r|\n")


def seed_corpus(path: Path = VECTORS_PATH) -> list[bytes]:
    """Every vector's input as bytes: the fuzzer's starting points."""
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    return [
        bytes.fromhex(case["input_hex"]) if "input_hex" in case else case["input"].encode()
        for case in cases
    ]


class Mutator:
    """Makes inputs: seeds under a stack of random mutations, some random token soup.

    Mutants join a bounded pool that later mutations start from too, so changes
    compound over a run instead of always starting from a vector.
    """

    POOL = 512
    MAX_SIZE = 8192

    def __init__(self, seeds: Sequence[bytes], rng: random.Random) -> None:
        self._seeds = [seed for seed in seeds if seed] or [b"data: x\n\n"]
        self._pool: list[bytes] = []
        self._rng = rng
        self._mutations: tuple[Callable[[bytearray], None], ...] = (
            self._flip_bit,
            self._set_byte,
            self._insert_token,
            self._insert_token,
            self._insert_token,
            self._delete_range,
            self._repeat_range,
            self._splice,
            self._swap_line_ends,
            self._truncate,
            self._random_bytes,
        )

    def next_input(self) -> bytes:
        rng = self._rng
        roll = rng.random()
        if roll < 0.05:
            return self.soup()
        if roll < 0.10:
            return rng.choice(self._seeds)
        if roll < 0.25:
            start = self.shaped()
        elif roll < 0.55 and self._pool:
            start = rng.choice(self._pool)
        else:
            start = rng.choice(self._seeds)
        data = bytearray(start)
        for _ in range(1 << rng.randrange(4)):  # 1, 2, 4 or 8 stacked mutations
            rng.choice(self._mutations)(data)
        if len(data) > self.MAX_SIZE:
            del data[self.MAX_SIZE :]
        mutant = bytes(data)
        if len(self._pool) < self.POOL:
            self._pool.append(mutant)
        else:
            self._pool[rng.randrange(self.POOL)] = mutant
        return mutant

    def soup(self) -> bytes:
        """Random tokens and bytes, like the hypothesis strategy in test_decoder."""
        rng = self._rng
        parts = [
            rng.choice(TOKENS) if rng.random() < 0.8 else rng.randbytes(rng.randrange(1, 4))
            for _ in range(rng.randrange(60))
        ]
        return b"".join(parts)

    def shaped(self) -> bytes:
        """A run of events of one of the shapes the decoder's shortcuts take (see ``_batch``).

        Mutated once or more afterwards, it is a run with a flaw somewhere, which
        the shortcuts must notice and leave to the exact path.
        """
        rng = self._rng
        end = rng.choice(("\n", "\r\n"))
        head = rng.choice(("", "id: {n}", "event: e{n}"))
        words = ("Hi", "", " ", "你好", "😀", "a:b", "{}", "data: x")
        events = []
        for n in range(rng.randrange(1, 40)):
            lines = [head.format(n=n)] if head else []
            lines += [f"data: {rng.choice(words)}" for _ in range(rng.choice((1, 1, 1, 2, 3)))]
            events.append(end.join(lines) + end + end)
        return "".join(events).encode()

    def _position(self, data: bytearray) -> int:
        return self._rng.randrange(len(data) + 1)

    def _range(self, data: bytearray) -> tuple[int, int]:
        start = self._position(data)
        return start, min(len(data), start + 1 + int(self._rng.expovariate(1 / 8)))

    def _flip_bit(self, data: bytearray) -> None:
        if data:
            data[self._rng.randrange(len(data))] ^= 1 << self._rng.randrange(8)

    def _set_byte(self, data: bytearray) -> None:
        if data:
            data[self._rng.randrange(len(data))] = self._rng.choice(b"\r\n: \x00\xff\xef09x")

    def _insert_token(self, data: bytearray) -> None:
        at = self._position(data)
        data[at:at] = self._rng.choice(TOKENS)

    def _delete_range(self, data: bytearray) -> None:
        start, end = self._range(data)
        del data[start:end]

    def _repeat_range(self, data: bytearray) -> None:
        start, end = self._range(data)
        data[end:end] = data[start:end] * self._rng.randrange(1, 5)

    def _splice(self, data: bytearray) -> None:
        other = self._rng.choice(self._seeds)
        cut = self._position(data)
        data[cut:] = other[self._rng.randrange(len(other) + 1) :]

    def _swap_line_ends(self, data: bytearray) -> None:
        end = self._rng.choice((b"\n", b"\r", b"\r\n"))
        data[:] = _LINE_END.sub(end, bytes(data))

    def _truncate(self, data: bytearray) -> None:
        del data[self._position(data) :]

    def _random_bytes(self, data: bytearray) -> None:
        at = self._position(data)
        data[at:at] = self._rng.randbytes(self._rng.randrange(1, 9))


@dataclass(frozen=True, slots=True)
class Case:
    """One run: the stream, how it is cut, and the decoder's arguments."""

    stream: bytes
    chunks: tuple[bytes, ...]
    max_event_size: int | None
    last_event_id: str


def make_case(stream: bytes, rng: random.Random) -> Case:
    """``stream`` cut whole, byte by byte or at random points, with random decoder arguments."""
    roll = rng.random()
    if roll < 0.15 or not stream:
        chunks: tuple[bytes, ...] = (stream,)
    elif roll < 0.25 and len(stream) <= 256:
        chunks = tuple(stream[i : i + 1] for i in range(len(stream)))
    else:
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randrange(1, 9)))
        bounds = [0, *cuts, len(stream)]
        chunks = tuple(stream[a:b] for a, b in itertools.pairwise(bounds))
    roll = rng.random()
    if roll < 0.7:
        limit: int | None = 16 * 1024 * 1024  # the default
    elif roll < 0.8:
        limit = None
    else:
        limit = rng.randrange(1, 80)
    last_event_id = "" if rng.random() < 0.8 else rng.choice(("5", "x\x01", "你", " "))
    return Case(stream, chunks, limit, last_event_id)


def _as_dict(event: Event) -> dict[str, Any]:
    return {"data": event.data, "event": event.event, "id": event.id, "retry": event.retry}


def largest(stream: bytes) -> int:
    """The most bytes any line, or any event's data (one LF per data line), holds.

    ``EventTooLarge`` is only fair when this is over the limit.
    """
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines = _LINE_END.split(stream)
    most = max(len(line) for line in lines)
    data = 0
    for line in lines:
        if not line:
            data = 0
            continue
        name, colon, value = line.partition(b":")
        if name == b"data":
            if colon and value.startswith(b" "):
                value = value[1:]
            data += len(value.decode("utf-8", "replace").encode()) + 1
            most = max(most, data)
    return most


MakeDecoder = Callable[..., Decoder]


def check(case: Case, make_decoder: MakeDecoder = Decoder) -> bool:
    """Run ``case`` and assert everything the module docstring lists; True if it raised."""
    decoder = make_decoder(last_event_id=case.last_event_id, max_event_size=case.max_event_size)
    seen: list[dict[str, Any]] = []
    too_large: EventTooLarge | None = None
    try:
        for chunk in case.chunks:
            for event in decoder.feed(chunk):
                assert type(event) is Event, event
                seen.append(_as_dict(event))
    except EventTooLarge as exc:
        too_large = exc
    model = spec_parse(case.stream, last_event_id=case.last_event_id)
    if too_large is None:
        assert (seen, decoder.last_event_id, decoder.retry) == (
            model.events,
            model.last_event_id,
            model.retry,
        )
        return False
    assert case.max_event_size is not None
    assert too_large.limit == case.max_event_size
    assert largest(case.stream) > case.max_event_size, "EventTooLarge under the limit"
    assert seen == model.events[: len(seen)]
    return True


@dataclass
class FuzzReport:
    """What a run did: how many inputs ran, how many ended in EventTooLarge."""

    seed: int
    executed: int = 0
    too_large: int = 0


def _cases(seed: int) -> Callable[[], Case]:
    rng = random.Random(seed)
    mutator = Mutator(seed_corpus(), rng)
    return lambda: make_case(mutator.next_input(), rng)


def fuzz(count: int, *, seed: int, make_decoder: MakeDecoder = Decoder) -> FuzzReport:
    """Run ``count`` generated cases; a failure's note names the seed and case number."""
    report = FuzzReport(seed)
    next_case = _cases(seed)
    for number in range(count):
        case = next_case()
        try:
            report.too_large += check(case, make_decoder)
        except BaseException as exc:
            shown = repr(case)
            shown = shown if len(shown) <= 1000 else shown[:1000] + "..."
            exc.add_note(f"fuzz seed {seed}, case {number} (replay({seed}, {number})): {shown}")
            raise
        report.executed += 1
    return report


def replay(seed: int, number: int) -> Case:
    """The case ``number`` of the run with ``seed``, to debug a failure alone."""
    next_case = _cases(seed)
    for _ in range(number):
        next_case()
    return next_case()
