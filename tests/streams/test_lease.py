"""The lease renewal schedule, driven by a fake clock: a held lease is renewed
before it can run out, renewals are batched, a released one is forgotten."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from askstream.streams._lease import LeaseSchedule, check_lease


@pytest.mark.parametrize(
    ("ttl", "renew"),
    [(5.0, 2.0), (5.0, 2.5), (1.0, 0.1)],
    ids=["default", "half", "fast"],
)
def test_sound_lease_settings_pass(ttl: float, renew: float) -> None:
    check_lease(ttl, renew)


@pytest.mark.parametrize(("ttl", "renew"), [(5.0, 3.0), (5.0, 0.0), (5.0, -1.0)])
def test_renewals_that_could_miss_the_ttl_are_refused(ttl: float, renew: float) -> None:
    with pytest.raises(ValueError, match="lease renew"):
        check_lease(ttl, renew)


def run(schedule: LeaseSchedule, until: float, start: float = 0.0) -> dict[str, list[float]]:
    """The store's loop with a fake clock: wake when due, renew what is due."""
    renewals: dict[str, list[float]] = {}
    now = start
    while (wake := schedule.next_wake()) is not None and wake <= until:
        now = max(now, wake)
        due = schedule.due(now)
        for stream_id in due:
            renewals.setdefault(stream_id, []).append(now)
        schedule.renewed(due, now)
    return renewals


def test_nothing_held_means_nothing_to_wake_for() -> None:
    schedule = LeaseSchedule(renew=2.0)
    assert schedule.next_wake() is None
    assert schedule.due(100.0) == []


def test_a_released_lease_is_not_renewed() -> None:
    schedule = LeaseSchedule(renew=2.0)
    schedule.hold("a", now=0.0)
    schedule.hold("b", now=0.0)
    schedule.release("b")
    schedule.renewed(["b"], now=1.0)  # a renewal that raced with the release
    assert "b" not in schedule
    assert set(run(schedule, until=10.0)) == {"a"}


def test_leases_taken_close_together_are_renewed_in_one_batch() -> None:
    schedule = LeaseSchedule(renew=2.0)
    for n in range(100):
        schedule.hold(f"s{n}", now=n * 0.005)  # 100 leases taken within half a second
    rounds = {tuple(times) for times in run(schedule, until=20.0).values()}
    assert len(rounds) == 1  # every lease renewed at the same moments: one round trip each


@given(
    holds=st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=40),
    renew=st.sampled_from([0.1, 1.0, 2.0]),
)
def test_a_held_lease_is_renewed_at_least_every_renew_seconds(
    holds: list[float], renew: float
) -> None:
    """With ttl >= 2 * renew (check_lease), no held lease gets near its ttl."""
    schedule = LeaseSchedule(renew=renew)
    taken: dict[str, float] = {}
    events = sorted((when, f"s{n}") for n, when in enumerate(holds))
    now = 0.0
    renewals: dict[str, list[float]] = {}
    for when, stream_id in events:
        renewals_until = run(schedule, until=when, start=now)
        for key, times in renewals_until.items():
            renewals.setdefault(key, []).extend(times)
        now = when
        schedule.hold(stream_id, now)
        taken[stream_id] = now
    for key, times in run(schedule, until=now + 10 * renew, start=now).items():
        renewals.setdefault(key, []).extend(times)
    horizon = now + 10 * renew
    for stream_id, start in taken.items():
        times = [start, *renewals.get(stream_id, [])]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap <= renew + 1e-9 for gap in gaps), (stream_id, times)
        assert horizon - times[-1] <= renew + 1e-9


def test_a_random_day_of_leases_never_lapses() -> None:
    rng = random.Random(1)
    schedule = LeaseSchedule(renew=2.0)
    held: dict[str, float] = {}  # id -> last renewal (or taking)
    now = 0.0
    for step in range(5000):
        now += rng.expovariate(10)
        while (wake := schedule.next_wake()) is not None and wake <= now:
            due = schedule.due(wake)
            for stream_id in due:
                assert wake - held[stream_id] <= 2.0 + 1e-9  # ttl 5 s: far from lapsing
                held[stream_id] = wake
            schedule.renewed(due, wake)
        if rng.random() < 0.5 or not held:
            schedule.hold(f"s{step}", now)
            held[f"s{step}"] = now
        else:
            gone = rng.choice(list(held))
            schedule.release(gone)
            del held[gone]
