"""When to ask the LLM back end again, and after how long: pure decisions, no sleeping.

Only a request that produced nothing is asked again: a refusal (429, 5xx) or a
connection that never opened. Once the model sent its first piece the answer
has begun, and posting the question again would make a second answer; so
:class:`~askstream.service.OpenAIBackend` consults :func:`retry_delay` only
before its first chunk. The delays grow exponentially with jitter (so that the
instances a 429 turned away do not all come back in the same instant) unless
the upstream says when to come back (``Retry-After``, RFC 9110 10.2.3), and
every delay is capped.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._exceptions import ConnectError, ResponseError, TransportTimeout

__all__ = ["RetryPolicy", "retry_after", "retry_delay"]

#: The statuses worth asking again: too many requests, and the server's own failures
#: (a 501 will not start working, but OpenAI-compatible servers do not send it).
_RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to ask again: at most ``attempts`` requests in
    all; before the n-th retry (from 0) a delay of ``base * 2**n`` seconds, cut to
    a random point in its upper half, and never more than ``cap`` seconds, a
    ``Retry-After`` included.

    >>> policy = RetryPolicy(attempts=3, base=0.5, cap=8.0)
    >>> policy.backoff(0, random=lambda: 1.0), policy.backoff(3, random=lambda: 0.0)
    (0.5, 2.0)
    >>> policy.backoff(10, random=lambda: 1.0)
    8.0
    """

    attempts: int = 3
    base: float = 0.5
    cap: float = 8.0

    def backoff(self, retry: int, *, random: Callable[[], float]) -> float:
        """The delay before retry number ``retry`` (0 for the first) with no
        ``Retry-After``: "equal jitter", half fixed and half random."""
        ceiling = min(self.cap, self.base * 2.0**retry)
        return ceiling / 2 + ceiling / 2 * random()


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait, from ``now``: delay-seconds
    or an HTTP date (RFC 9110 10.2.3); ``None`` when absent or unreadable.

    >>> now = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)
    >>> retry_after("7", now), retry_after("Sat, 05 Dec 2026 12:00:30 GMT", now)
    (7.0, 30.0)
    >>> retry_after("Sat, 05 Dec 2026 11:00:00 GMT", now), retry_after("soon", now)
    (0.0, None)
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition (RFC 9110 5.6.7)
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def retry_delay(
    error: BaseException | None,
    retry: int,
    policy: RetryPolicy,
    *,
    now: dt.datetime,
    random: Callable[[], float],
) -> float | None:
    """The seconds to wait before asking again after ``error`` (what the request
    failed with: the cause of the back end's ``UpstreamError``), this being retry
    number ``retry`` (0 for the first); ``None``: do not ask again.

    >>> policy = RetryPolicy(attempts=3, base=1.0, cap=5.0)
    >>> refused = ResponseError(status=429, code=429, message="slow down",
    ...                         headers={"retry-after": "60"})
    >>> now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    >>> retry_delay(refused, 0, policy, now=now, random=lambda: 0.5)  # capped
    5.0
    >>> retry_delay(refused, 2, policy, now=now, random=lambda: 0.5) is None  # 3 attempts made
    True
    >>> bad = ResponseError(status=400, code=400, message="no such model")
    >>> retry_delay(bad, 0, policy, now=now, random=lambda: 0.5) is None
    True
    """
    if retry + 1 >= policy.attempts:
        return None
    if isinstance(error, ResponseError):
        if error.status not in _RETRY_STATUSES:
            return None
        asked = retry_after(_header(error.headers, "retry-after"), now)
        if asked is not None:
            return min(asked, policy.cap)
    elif not (
        isinstance(error, ConnectError)
        or (isinstance(error, TransportTimeout) and error.phase == "connect")
    ):
        # A read timeout or a broken stream: the upstream had the question and
        # may be answering it; asking again could make it answer twice.
        return None
    return policy.backoff(retry, random=random)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
