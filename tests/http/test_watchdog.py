"""Heartbeats and slow-reader drops, decided on a fake clock (plain numbers)."""

from __future__ import annotations

import pytest

from askstream.http._watchdog import Action, Watchdog

PING, DROP = Action.PING, Action.DROP


def dog(ping: float | None = 15.0, send_timeout: float | None = 30.0) -> Watchdog:
    return Watchdog(ping=ping, send_timeout=send_timeout, now=100.0)


@pytest.mark.parametrize(
    ("ping", "send_timeout", "now", "wake"),
    [
        (15.0, 30.0, 100.0, 115.0),  # the next heartbeat comes first
        (15.0, 5.0, 100.0, 105.0),  # a short send timeout looks more often
        (15.0, None, 100.0, 115.0),
        (None, 30.0, 100.0, 130.0),
        (None, None, 100.0, None),  # nothing but the reader to watch
        (15.0, 30.0, 110.0, 115.0),
    ],
    ids=["ping-first", "timeout-first", "no-timeout", "no-ping", "nothing", "later"],
)
def test_next_wake_while_idle(
    ping: float | None, send_timeout: float | None, now: float, wake: float | None
) -> None:
    assert dog(ping, send_timeout).next_wake(now) == wake


def test_heartbeat_is_due_ping_seconds_after_the_last_write() -> None:
    watchdog = dog()
    assert watchdog.due(114.9) is None
    assert watchdog.due(115.0) is PING
    watchdog.sending(115.0)
    watchdog.sent(115.1)
    assert watchdog.due(130.0) is None
    assert watchdog.next_wake(130.0) == pytest.approx(130.1)
    assert watchdog.due(130.1) is PING


def test_no_heartbeat_while_a_write_is_under_way() -> None:
    watchdog = dog(send_timeout=None)
    watchdog.sending(101.0)
    assert watchdog.due(200.0) is None
    # It keeps looking, so heartbeats resume when the write ends.
    assert watchdog.next_wake(200.0) == 215.0


def test_a_write_stalled_for_send_timeout_drops_the_reader() -> None:
    watchdog = dog(ping=15.0, send_timeout=30.0)
    watchdog.sending(101.0)
    assert watchdog.next_wake(102.0) == 131.0
    assert watchdog.due(130.9) is None
    assert watchdog.due(131.0) is DROP


def test_a_stall_that_began_between_checks_is_caught_on_time() -> None:
    # The watcher slept until 105 (send_timeout 5) not knowing a write began at
    # 101; at 105 it learns, and wakes again exactly at 106.
    watchdog = dog(ping=15.0, send_timeout=5.0)
    assert watchdog.next_wake(100.0) == 105.0
    watchdog.sending(101.0)
    assert watchdog.due(105.0) is None
    assert watchdog.next_wake(105.0) == 106.0
    assert watchdog.due(106.0) is DROP


def test_a_write_that_completes_clears_the_stall() -> None:
    watchdog = dog(send_timeout=5.0)
    watchdog.sending(101.0)
    watchdog.sent(104.0)
    assert watchdog.due(106.0) is None
