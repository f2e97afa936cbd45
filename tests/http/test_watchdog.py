"""Heartbeats and slow-reader drops, decided look by look (no clock at all)."""

from __future__ import annotations

import pytest

from askstream.http._watchdog import LOOKS, Action, Watchdog

PING, DROP = Action.PING, Action.DROP


def looks(dog: Watchdog, busy: object, count: int, *, writing: bool = False) -> list[Action | None]:
    return [dog.look(busy, writing=writing) for _ in range(count)]


@pytest.mark.parametrize(
    ("ping", "send_timeout", "every"),
    [
        (15.0, 30.0, 15.0 / LOOKS),  # the shorter of the two sets the pace
        (15.0, 5.0, 5.0 / LOOKS),
        (15.0, None, 15.0 / LOOKS),
        (None, 30.0, 30.0 / LOOKS),
        (None, None, None),  # nothing to watch: no timer at all
    ],
    ids=["ping-first", "timeout-first", "no-timeout", "no-ping", "nothing"],
)
def test_the_stream_looks_every_quarter_of_the_shorter_limit(
    ping: float | None, send_timeout: float | None, every: float | None
) -> None:
    assert Watchdog(ping=ping, send_timeout=send_timeout).every == every


def test_a_heartbeat_is_due_once_nothing_changed_for_ping_seconds_of_looks() -> None:
    dog = Watchdog(ping=15.0, send_timeout=30.0)
    waiting = object()
    # The first look sees a new state (it began at most one look ago); four
    # more quiet looks make 15 s of quiet for sure.
    assert looks(dog, waiting, 5) == [None, None, None, None, PING]
    # Then one every 15 s while nothing else happens.
    assert looks(dog, waiting, 4) == [None, None, None, PING]


def test_progress_between_looks_puts_the_heartbeat_off() -> None:
    dog = Watchdog(ping=15.0, send_timeout=30.0)
    first, second = object(), object()
    assert looks(dog, first, 4) == [None] * 4
    # A new wait (or a write) since the last look: the count starts again.
    assert looks(dog, second, 4) == [None] * 4
    assert looks(dog, second, 1) == [PING]


def test_a_write_that_takes_nothing_for_send_timeout_drops_the_reader() -> None:
    dog = Watchdog(ping=15.0, send_timeout=30.0)
    stuck = {"type": "http.response.body"}
    # 30 s is 8 looks of 3.75 s after the look that first saw the write.
    assert looks(dog, stuck, 9, writing=True) == [None] * 8 + [DROP]


def test_no_heartbeat_while_a_write_is_under_way() -> None:
    dog = Watchdog(ping=15.0, send_timeout=None)
    assert looks(dog, {"type": "http.response.body"}, 20, writing=True) == [None] * 20


def test_writes_that_keep_completing_are_never_a_slow_reader() -> None:
    dog = Watchdog(ping=15.0, send_timeout=30.0)
    # Each look finds the producer in a different write: the reader takes them.
    actions = [dog.look({"n": n}, writing=True) for n in range(100)]
    assert actions == [None] * 100


@pytest.mark.parametrize(
    ("ping", "send_timeout", "ping_after", "drop_after"),
    [
        (15.0, 30.0, 4, 8),
        (0.05, 0.2, 4, 16),
        (7.0, 30.0, 4, 18),  # 30 / 1.75 = 17.1: rounded up, never early
    ],
)
def test_limits_that_are_not_a_whole_number_of_looks_round_up(
    ping: float, send_timeout: float, ping_after: int, drop_after: int
) -> None:
    waiting, writing = object(), {"type": "http.response.body"}
    dog = Watchdog(ping=ping, send_timeout=send_timeout)
    assert looks(dog, waiting, ping_after + 1) == [None] * ping_after + [PING]
    dog = Watchdog(ping=ping, send_timeout=send_timeout)
    actions = looks(dog, writing, drop_after + 1, writing=True)
    assert actions == [None] * drop_after + [DROP]
