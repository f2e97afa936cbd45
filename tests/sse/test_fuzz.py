"""The decoder under a million mutated inputs (slow), and the fuzzer itself under test.

``fuzz.py`` says what each input must show. The fast tests here run a few
thousand inputs on fixed seeds and prove the harness can fail; the slow one runs
1,000,000 on a fresh seed each time (``ASKSTREAM_FUZZ_SEED`` replays one), so
every CI run explores new inputs, and a failure's note names the seed and the
case number that bring it back (``fuzz.replay``).
"""

from __future__ import annotations

import os
import random

import pytest

from askstream import EventTooLarge
from askstream.sse import Decoder, Event

from .fuzz import Case, Mutator, check, fuzz, largest, make_case, replay, seed_corpus
from .test_decoder import VECTORS

MILLION = 1_000_000


def test_seed_corpus_is_every_vector() -> None:
    corpus = seed_corpus()
    assert len(corpus) == len(VECTORS)
    assert all(isinstance(seed, bytes) for seed in corpus)


def test_same_seed_makes_the_same_cases() -> None:
    assert [replay(5, n) for n in (0, 7, 300)] == [replay(5, n) for n in (0, 7, 300)]
    assert replay(5, 300) != replay(6, 300)


def test_mutants_reach_every_byte_and_go_beyond_the_seeds() -> None:
    rng = random.Random(1)
    mutator = Mutator(seed_corpus(), rng)
    inputs = [mutator.next_input() for _ in range(5000)]
    assert set(b"".join(inputs)) == set(range(256))
    assert len(set(inputs) - set(seed_corpus())) > 4000
    assert max(map(len, inputs)) > 1000


@pytest.mark.parametrize(
    ("stream", "size"),
    [
        pytest.param(b"data: abc\n\n", 9, id="a_line"),
        pytest.param(b"data:abcd\ndata:efgh\n\n", 10, id="data_lines_add_up_with_their_lf"),
        pytest.param(b"data:abcd\rdata:efgh\r\r", 10, id="cr_line_ends"),
        pytest.param(b"\xef\xbb\xbfdata", 4, id="the_bom_is_no_part_of_a_line"),
        pytest.param(b"data:\xff\xff\xff\n", 10, id="an_invalid_byte_is_three_bytes_of_data"),
        pytest.param(b"id: 1234567890\n\n", 14, id="any_field_line"),
        pytest.param(b"data: a\n\ndata: b\n\n", 7, id="a_blank_line_ends_an_events_data"),
    ],
)
def test_largest_is_the_longest_line_or_events_data(stream: bytes, size: int) -> None:
    assert largest(stream) == size


class _Refusing(Decoder):
    """Raises EventTooLarge at once, whatever the size."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[Event]:
        raise EventTooLarge("too large", limit=100)


def test_event_too_large_under_the_limit_is_a_failure() -> None:
    case = Case(b"data: a\n\n", (b"data: a\n\n",), 100, "")
    with pytest.raises(AssertionError, match="under the limit"):
        check(case, _Refusing)


class _Lossy(Decoder):
    """Loses an event now and then: what the fuzzer is there to notice."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[Event]:
        return super().feed(chunk)[1:]


class _Crashing(Decoder):
    __slots__ = ()

    def feed(self, chunk: bytes) -> list[Event]:
        if b"\x00" in chunk:
            raise IndexError("a bug")
        return super().feed(chunk)


@pytest.mark.parametrize(
    ("decoder", "error"),
    [
        pytest.param(_Lossy, AssertionError, id="lost_events"),
        pytest.param(_Crashing, IndexError, id="crash"),
    ],
)
def test_fuzzer_catches_a_broken_decoder_and_names_the_case(
    decoder: type[Decoder], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        fuzz(5000, seed=3, make_decoder=decoder)
    note = caught.value.__notes__[-1]
    assert note.startswith("fuzz seed 3, case ")
    number = int(note.split()[4])
    with pytest.raises(error):
        check(replay(3, number), decoder)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.untraced
def test_decoder_survives_mutated_vectors(seed: int) -> None:
    report = fuzz(10_000, seed=seed)
    assert report.executed == 10_000
    assert 0 < report.too_large < report.executed


@pytest.mark.slow
@pytest.mark.untraced
def test_decoder_survives_a_million_mutated_inputs() -> None:
    seed = int(os.environ.get("ASKSTREAM_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    report = fuzz(MILLION, seed=seed)
    print(f"decoder fuzz: seed {seed}, {report.executed} inputs, {report.too_large} too large")
    assert report.executed >= MILLION
    # Both outcomes were exercised at scale: the limit fired, and most inputs decoded.
    assert MILLION // 100 < report.too_large < MILLION // 2


def test_make_case_cuts_the_stream_without_losing_bytes() -> None:
    rng = random.Random(0)
    for stream in seed_corpus():
        case = make_case(stream, rng)
        assert b"".join(case.chunks) == stream
