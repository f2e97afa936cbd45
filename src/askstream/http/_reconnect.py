"""How a dropped stream reconnects: the policy and its backoff schedule (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_RECONNECT", "Reconnect"]


@dataclass(frozen=True, slots=True)
class Reconnect:
    """When and how often a dropped stream reconnects.

    Attempt ``n`` (1-based; the count restarts once an event arrives) waits
    ``base * multiplier ** (n - 1)`` seconds, at most ``max_delay`` but never
    less than ``base``, stretched by up to ``jitter`` (0.2: up to 20 % more)
    so that readers dropped together do not come back together. ``base`` is
    the server's ``retry`` once it sent one, else ``delay``. After
    ``max_attempts`` failed attempts in a row the reader gets
    :class:`~askstream.ReconnectError`.

    >>> policy = Reconnect(delay=1.0, jitter=0.0)
    >>> [policy.backoff(n, retry_ms=None, rand=0.0) for n in (1, 2, 3)]
    [1.0, 2.0, 4.0]
    >>> policy.backoff(1, retry_ms=250, rand=0.0)
    0.25
    """

    max_attempts: int = 5
    delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.delay < 0 or self.max_delay < 0 or self.multiplier < 1 or self.jitter < 0:
            raise ValueError("delays and jitter must be non-negative, multiplier at least 1")

    def backoff(self, attempt: int, *, retry_ms: int | None, rand: float) -> float:
        """Seconds to wait before attempt ``attempt``; ``rand`` is uniform in [0, 1)."""
        base = self.delay if retry_ms is None else retry_ms / 1000
        grown = min(self.max_delay, base * self.multiplier ** min(attempt - 1, 64))
        return max(base, grown) * (1 + self.jitter * rand)


DEFAULT_RECONNECT = Reconnect()
