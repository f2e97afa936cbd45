"""Readiness and the state of the service's dependencies (the database, the stream store).

``GET /api/health`` is liveness: the process runs. ``GET /api/ready`` asks
:class:`Dependencies` to probe each dependency now and answers 503 while one
is unreachable (or the server is stopping), as a load balancer's readiness
check expects.

An outage is noticed where it happens: a request or an answer that fails
with an error that means "unreachable" (:func:`unavailable`) reports it with
:meth:`Dependencies.down` and is answered 503 with ``Retry-After``. The
tracker logs the outage once, then probes the dependency every ``interval``
seconds until it answers again, and logs that once: one line down, one line
back, however many requests fail in between (a line and a traceback per
request flooded the log: 670 lines in 5 s). While a dependency is known to be
down, new asks are refused at once (:meth:`Dependencies.check_up`) instead of
calling the model for an answer that could not be stored.

The model's API (:data:`UPSTREAM`) is tracked by the answers alone
(:meth:`Dependencies.failed`, :meth:`Dependencies.answered`): one line when
asks start failing, one when an answer streams again. Nothing probes it and no
ask is refused for it: each ask is its own try, answered 502 if it fails.

Each of these lines carries the fields ``dependency`` and ``state`` (``down``
or ``up``) for a log collector (``--log-format json``, _logs.py); a change
noticed by a request carries its ids, the probe's "back" line none.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..streams import StoreUnavailable
from ._errors import Unavailable
from ._logs import detached

__all__ = [
    "DATABASE",
    "STORE",
    "UPSTREAM",
    "Dependencies",
    "database_probe",
    "outage_handlers",
    "store_probe",
    "unavailable",
    "unavailable_response",
]

logger = logging.getLogger("askstream.service")

DATABASE = "the database"
STORE = "the stream store"
UPSTREAM = "the model's API"

Probe = Callable[[], Awaitable[object]]


def _dependency(exc: BaseException) -> str | None:
    """Which dependency ``exc`` says is unreachable, if it says so."""
    if isinstance(exc, (StoreUnavailable, *_redis_outages())):
        return STORE
    # A database server's OperationalError is about the server (gone, starting,
    # refusing); SQLite has no server, and its OperationalError is a bad
    # statement or a missing table as often: a 500 like any other bug.
    database = (
        isinstance(exc, sa_exc.InterfaceError | sa_exc.TimeoutError)
        or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
        or (isinstance(exc, sa_exc.OperationalError) and not isinstance(exc.orig, sqlite3.Error))
        # asyncpg's connect raises refused and reset connections unwrapped;
        # redis-py wraps its own, so a bare one here is the database's.
        or isinstance(exc, ConnectionError)
    )
    return DATABASE if database else None


def _redis_outages() -> tuple[type[Exception], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # the redis extra is not installed: no Redis errors to meet
        return ()
    return (RedisConnectionError, RedisTimeoutError)


def unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 to answer ``exc`` with, if it means a dependency is unreachable.

    >>> unavailable(ConnectionRefusedError()).dependency
    'the database'
    >>> unavailable(ValueError()) is None
    True
    """
    if isinstance(exc, Unavailable):
        return exc
    dependency = _dependency(exc)
    if dependency is None:
        return None
    return Unavailable(f"{dependency} is unreachable; try again shortly", dependency=dependency)


class Dependencies:
    """Which dependencies are down, since when; logs each change once.

    ``probes`` maps a dependency's name to a call that raises unless it is
    reachable. Use it as ``async with``: it owns the task that probes a
    dependency that is down until it is back.

    >>> async def ok() -> None: ...
    >>> async def main() -> list[str]:
    ...     async with Dependencies({"the database": ok}, interval=0.01) as deps:
    ...         deps.down("the database", ConnectionRefusedError())
    ...         down = deps.unreachable
    ...         await deps.probe()
    ...         return down + deps.unreachable
    >>> asyncio.run(main())
    ['the database']
    """

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        interval: float = 1.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_store_error: Callable[[], object] | None = None,
    ) -> None:
        self._probes = dict(probes)
        # Told of every failure of the stream store reported here (the metrics
        # count them), not only of the first of an outage.
        self._on_store_error = on_store_error
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._down: dict[str, float] = {}
        # Dependencies known by their answers only (UPSTREAM): since when, how many failed.
        self._failing: dict[str, tuple[float, int]] = {}
        self._watcher: asyncio.Task[None] | None = None
        #: Set when the server begins to stop: readiness fails from then on.
        self.stopping = False

    async def __aenter__(self) -> Dependencies:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop probing."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])

    @property
    def unreachable(self) -> list[str]:
        """The dependencies known to be down now."""
        return list(self._down)

    def down(self, name: str, exc: BaseException | None = None) -> None:
        """``name`` failed with ``exc``: logged if it was up, then probed until it is back."""
        if name == STORE and self._on_store_error is not None:
            self._on_store_error()
        if name in self._down:
            return
        self._down[name] = self._clock()
        logger.warning(
            "%s is unreachable (%s); asks and stream reads get 503 until it is back",
            name,
            _describe(exc),
            extra={"dependency": name, "state": "down"},
        )
        if self._watcher is None or self._watcher.done():
            # Detached: the probe's lines (the "back" one) belong to no request,
            # not to the one that happened to notice the outage first.
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="askstream dependency probe", context=detached()
            )

    def up(self, name: str) -> None:
        """``name`` answered: logged if it was down."""
        since = self._down.pop(name, None)
        if since is not None:
            logger.warning(
                "%s is back after %.1f s",
                name,
                self._clock() - since,
                extra={"dependency": name, "state": "up"},
            )

    def failed(self, name: str, exc: BaseException | None = None) -> None:
        """A call to ``name`` (a dependency nobody probes: :data:`UPSTREAM`)
        failed: logged if the last one had worked. Refuses nothing."""
        since, count = self._failing.get(name, (None, 0))
        if since is None:
            since = self._clock()
            logger.warning(
                "%s is failing (%s); asks get 502 until an answer streams again",
                name,
                _describe(exc),
                extra={"dependency": name, "state": "down"},
            )
        self._failing[name] = (since, count + 1)

    def answered(self, name: str) -> None:
        """A call to ``name`` worked: logged if the calls before it had failed."""
        failing = self._failing.pop(name, None)
        if failing is not None:
            since, count = failing
            logger.warning(
                "%s answers again after %.1f s (%d asks failed meanwhile)",
                name,
                self._clock() - since,
                count,
                extra={"dependency": name, "state": "up"},
            )

    def check_up(self) -> None:
        """Raise :class:`Unavailable` (503) while a dependency is known to be down."""
        for name in self._down:
            raise Unavailable(f"{name} is unreachable; try again shortly", dependency=name)

    async def probe(self) -> dict[str, BaseException | None]:
        """Probe every dependency now (each within ``timeout``); what each raised."""
        results: dict[str, BaseException | None] = {}
        for name, probe in self._probes.items():
            try:
                async with asyncio.timeout(self._timeout):
                    await probe()
            except Exception as exc:  # every failure of a probe means: not ready
                results[name] = exc
                self.down(name, exc)
            else:
                results[name] = None
                self.up(name)
        return results

    async def ready(self) -> Response:
        """The answer to ``GET /api/ready``."""
        failed = [name for name, exc in (await self.probe()).items() if exc is not None]
        if self.stopping:
            failed.insert(0, "the server is stopping")
        if not failed:
            return JSONResponse({"status": "ready"})
        message = "not ready: " + "; ".join(
            name if name == "the server is stopping" else f"{name} is unreachable"
            for name in failed
        )
        return unavailable_response(Unavailable(message))

    async def _watch(self) -> None:
        while self._down:
            await self._sleep(self._interval)
            await self.probe()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def unavailable_response(error: Unavailable) -> JSONResponse:
    """The 503 response for ``error``: its JSON and ``Retry-After``."""
    return JSONResponse(
        {"code": error.code, "message": error.message},
        error.status,
        headers={"Retry-After": str(error.retry_after)},
    )


def database_probe(engine: Any) -> Probe:
    """A probe of the database behind an SQLAlchemy async ``engine``: ``SELECT 1``."""

    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    return probe


def store_probe(store: Any) -> Probe:
    """A probe of a stream store: the status of a stream nobody makes (one read)."""

    async def probe() -> None:
        await store.status("askstream-ready-probe")

    return probe


def outage_handlers(
    dependencies: Callable[[Request], Dependencies | None],
) -> dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]]:
    """Exception handlers for FastAPI: an error that means a dependency is
    unreachable is answered 503 with ``Retry-After`` (and reported to the
    tracker ``dependencies(request)`` gives); any other one goes on to the
    last-resort 500."""

    async def handle(request: Request, exc: Exception) -> Response:
        error = unavailable(exc)
        if error is None:
            raise exc
        tracker = dependencies(request)
        if tracker is not None and error.dependency is not None:
            tracker.down(error.dependency, exc)
        return unavailable_response(error)

    kinds: list[type[Exception]] = [StoreUnavailable, sa_exc.DBAPIError, sa_exc.TimeoutError]
    kinds.append(ConnectionError)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the redis extra is not installed: no Redis errors to meet
        pass
    else:
        kinds.append(RedisError)
    return dict.fromkeys(kinds, handle)
