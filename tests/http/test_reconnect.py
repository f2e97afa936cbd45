"""The backoff schedule, with the jitter's randomness passed in."""

from __future__ import annotations

import pytest

from askstream import Reconnect


@pytest.mark.parametrize(
    ("policy", "retry_ms", "rand", "delays"),
    [
        (Reconnect(jitter=0), None, 0.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (Reconnect(jitter=0), 250, 0.0, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
        (Reconnect(jitter=0, max_delay=3), None, 0.0, [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]),
        (Reconnect(jitter=0.5), None, 1.0, [1.5, 3.0, 6.0, 12.0, 24.0, 45.0, 45.0]),
        (Reconnect(jitter=0.5), None, 0.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (Reconnect(jitter=0, multiplier=1), 100, 0.0, [0.1] * 7),
        # A server retry above max_delay is still honoured: never sooner than asked.
        (Reconnect(jitter=0), 60_000, 0.0, [60.0] * 7),
    ],
    ids=["default", "server-retry", "capped", "jitter-max", "jitter-min", "flat", "long-retry"],
)
def test_backoff_schedule(
    policy: Reconnect, retry_ms: int | None, rand: float, delays: list[float]
) -> None:
    schedule = [policy.backoff(n, retry_ms=retry_ms, rand=rand) for n in range(1, 8)]
    assert schedule == pytest.approx(delays)


def test_jitter_only_ever_lengthens_the_delay() -> None:
    policy = Reconnect(jitter=0.2)
    for attempt in range(1, 10):
        low = policy.backoff(attempt, retry_ms=None, rand=0.0)
        high = policy.backoff(attempt, retry_ms=None, rand=0.999)
        assert low <= high <= low * 1.2


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert Reconnect(jitter=0).backoff(10_000, retry_ms=None, rand=0.0) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"delay": -1}, {"multiplier": 0.5}, {"jitter": -0.1}],
    ids=["no-attempts", "negative-delay", "shrinking", "negative-jitter"],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Reconnect(**kwargs)  # type: ignore[arg-type]
