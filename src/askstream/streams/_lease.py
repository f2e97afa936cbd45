"""When a producer renews its leases: the schedule alone, no I/O, no clock of its own.

A shared store gives each open stream a lease that runs out ``ttl`` seconds
after its last renewal; the producer's process renews every lease it holds
about every ``renew`` seconds, so a live producer never loses one while a dead
one's lapse within ``ttl``. :class:`LeaseSchedule` decides which leases are due
at a given time; the store's loop sleeps until :meth:`~LeaseSchedule.next_wake`,
renews what :meth:`~LeaseSchedule.due` returns in one round trip, and reports
back with :meth:`~LeaseSchedule.renewed`. Tests drive it with a fake clock.
"""

from __future__ import annotations

__all__ = ["LeaseSchedule", "check_lease"]


def check_lease(ttl: float, renew: float) -> None:
    """``ValueError`` unless renewals come well before a lease runs out.

    Two renewals must fit in one ``ttl``, so that one slow or failed round trip
    does not lose a live producer's lease.
    """
    if not 0 < renew <= ttl / 2:
        raise ValueError(
            f"lease renew ({renew} s) must be above 0 and at most half its ttl ({ttl} s)"
        )


class LeaseSchedule:
    """The leases one process holds and when each is next due for renewal.

    A lease is due ``renew`` seconds after it was taken or last renewed.
    :meth:`due` also returns leases that fall due within the next ``renew / 2``
    seconds, so that leases taken at scattered times are renewed together in
    a few batches instead of one round trip each; no lease waits longer than
    ``renew`` (plus the loop's own latency) between renewals.

    >>> schedule = LeaseSchedule(renew=2.0)
    >>> schedule.hold("a", now=0.0); schedule.hold("b", now=0.8)
    >>> schedule.next_wake()
    2.0
    >>> schedule.due(now=2.0)  # b falls due at 2.8, within the next second: batched
    ['a', 'b']
    >>> schedule.renewed(["a", "b"], now=2.0); schedule.next_wake()
    4.0
    """

    __slots__ = ("_due", "_renew")

    def __init__(self, renew: float) -> None:
        self._renew = renew
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._due

    def hold(self, stream_id: str, now: float) -> None:
        """A lease was just taken (its time to live starts now)."""
        self._due[stream_id] = now + self._renew

    def release(self, stream_id: str) -> None:
        """The lease was given up (the stream finished) or lost; forget it."""
        self._due.pop(stream_id, None)

    def next_wake(self) -> float | None:
        """When the next lease falls due; ``None`` when none is held."""
        return min(self._due.values(), default=None)

    def due(self, now: float) -> list[str]:
        """The leases to renew at ``now``: due ones and ones due within ``renew / 2``."""
        horizon = now + self._renew / 2
        return [stream_id for stream_id, when in self._due.items() if when <= horizon]

    def renewed(self, stream_ids: list[str], now: float) -> None:
        """These leases were renewed at ``now`` (those released meanwhile stay forgotten)."""
        for stream_id in stream_ids:
            if stream_id in self._due:
                self._due[stream_id] = now + self._renew
