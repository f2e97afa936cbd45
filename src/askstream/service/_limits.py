"""How many answers may be generating at once: per user and in total.

Each answer is an upstream model call that costs money and holds a task, a
connection to the model and a stream in the store, so one client asking
2,000 questions at once must not get 2,000 of them. The decision is a plain
counter, tested with plain calls; :class:`Generations` takes a slot before it
starts an answer and gives it back when the answer's task ends.

A user over their own share gets 429 (they can wait for one of their answers
to end); everyone together over the total gets 503 (the instance is full;
another one may have room). Both carry ``Retry-After``.
"""

from __future__ import annotations

from collections import Counter

from ._errors import ServiceError

__all__ = ["RETRY_AFTER", "GenerationLimits"]

#: Seconds a refused ask is told to wait (``Retry-After``): about one short answer.
RETRY_AFTER = 5


class GenerationLimits:
    """Counts the answers generating, by owner (``""``: anonymous, one user like any other).

    >>> limits = GenerationLimits(total=2, per_user=1)
    >>> limits.acquire("ann")
    >>> try:
    ...     limits.acquire("ann")
    ... except ServiceError as exc:
    ...     print(exc.status, exc.headers)
    429 {'Retry-After': '5'}
    >>> limits.release("ann")
    >>> limits.running("ann"), limits.running()
    (0, 0)
    """

    def __init__(self, *, total: int, per_user: int) -> None:
        if total < 1 or per_user < 1:
            raise ValueError("limits must be at least 1")
        self.total = total
        self.per_user = per_user
        self._by_owner: Counter[str] = Counter()
        self._running = 0

    def running(self, owner: str | None = None) -> int:
        """Answers generating now: ``owner``'s, or everyone's for ``None``."""
        return self._running if owner is None else self._by_owner[owner]

    def acquire(self, owner: str) -> None:
        """Take a slot for one of ``owner``'s answers, or raise :class:`ServiceError`:
        429 if ``owner`` has ``per_user`` answers generating, 503 if everyone has ``total``."""
        if self._by_owner[owner] >= self.per_user:
            answers = "answer" if self.per_user == 1 else "answers"
            raise ServiceError(
                429,
                f"you already have {self.per_user} {answers} generating; "
                "wait for one to end or cancel one",
                retry_after=RETRY_AFTER,
            )
        if self._running >= self.total:
            raise ServiceError(
                503,
                f"the server is generating its limit of {self.total} answers; try again soon",
                retry_after=RETRY_AFTER,
            )
        self._by_owner[owner] += 1
        self._running += 1

    def release(self, owner: str) -> None:
        """Give back a slot taken by :meth:`acquire` (once per acquire)."""
        if self._by_owner[owner] <= 0:
            raise RuntimeError(f"release({owner!r}) without an acquire")
        self._by_owner[owner] -= 1
        if not self._by_owner[owner]:
            del self._by_owner[owner]  # no key left behind per user that ever asked
        self._running -= 1
