"""Ending the answers of an instance that died: every instance looks for leases
that ran out, and the one that takes a stream over ends it.

A producer's lease lives in the store (see ``askstream.streams``); when its
process is killed, the lease runs out ``lease_ttl`` seconds later.
:func:`reap_forever`, which every instance runs, then takes the stream over
(atomically in the store: exactly one instance gets it), writes the message
as ``failed`` with the text its readers got, and only then ends the stream
with an ``error`` event (code 503): as with every other end, a reader that got
the last event finds the history already saying so. If this instance dies
midway, the lease it took runs out too and another one finishes the job.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from ..streams import Store, StoreError
from ._health import unavailable
from ._history import ChatHistory

__all__ = [
    "LOST",
    "LOST_DATA",
    "VANISHED",
    "fail_lost",
    "reap_forever",
    "reap_once",
    "sweep_forever",
    "sweep_once",
]

logger = logging.getLogger("askstream.service")

#: What readers and the history are told about an answer whose instance died.
LOST = "the server generating this answer stopped; ask again"
#: What the history says of an answer whose stream vanished from the store.
VANISHED = "the answer's stream was lost by the stream store; ask again"
LOST_DATA = json.dumps({"code": 503, "message": LOST}, separators=(",", ":"))


def answer_text(data: list[str]) -> str:
    """The answer its readers saw: the ``delta`` of each message event's data."""
    parts = []
    for item in data:
        payload = json.loads(item)
        if isinstance(payload, dict) and isinstance(payload.get("delta"), str):
            parts.append(payload["delta"])
    return "".join(parts)


async def reap_once(store: Store, history: ChatHistory) -> list[str]:
    """End the streams whose producer's lease ran out, marking their messages
    failed first; the ids this instance ended."""
    taken = await store.take_over()
    for message_id in taken:
        logger.warning(
            "answer %s lost its server; it ends with error 503",
            message_id,
            extra={"message_id": message_id},
        )
        try:
            events = await store.read(message_id)
        except StoreError:
            content = None  # expired meanwhile: keep what was saved
        else:
            content = answer_text([e.data for e in events if e.event == "message"])
        try:
            await history.fail_answer(message_id, LOST, content)
        except Exception:
            # Its readers must still hear how it ended; the row stays "streaming".
            logger.exception(
                "saving answer %s as failed failed", message_id, extra={"message_id": message_id}
            )
        try:
            await store.append(message_id, LOST_DATA, event="error")
        except RuntimeError:
            continue  # its producer was alive after all, and ended it meanwhile
        await store.finish(message_id, "failed")
    return taken


async def reap_forever(
    store: Store,
    history: ChatHistory,
    *,
    interval: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Call :func:`reap_once` every ``interval`` seconds until cancelled."""
    failing = False
    while True:
        await sleep(interval)
        try:
            await reap_once(store, history)
        except Exception as exc:  # Redis or the database away for a moment: the next round retries
            if unavailable(exc) is None:
                logger.exception("looking for answers whose server died failed")
            elif not failing:  # an outage: said once, not every round
                logger.warning("looking for answers whose server died failed: %s", exc)
            failing = True
        else:
            failing = False


async def fail_lost(store: Store, history: ChatHistory, message_id: str) -> None:
    """A reader found the stream of ``message_id`` gone from the store (Redis
    restarted empty): no lease is left to reap, so the answer is marked
    ``failed`` here, keeping the text saved so far. A live producer, if there
    is one, fails too the next time it writes, and stores the same."""
    if await store.status(message_id) is None:
        await history.fail_answer(message_id, VANISHED)


async def sweep_once(store: Store, history: ChatHistory, idle: float) -> list[str]:
    """Mark ``failed`` the answers still ``streaming`` in the history whose row
    was not written for ``idle`` seconds and whose stream the store does not
    hold: their producer is gone and no lease is left to reap (the store lost
    it: Redis restarted empty; or this process crashed with a memory store).
    ``idle`` must outlast the wait for a model's first piece, when the row
    exists but the stream does not yet. The ids this call failed."""
    failed = []
    for message_id in await history.stale_answers(idle):
        if await store.status(message_id) is None and await history.fail_answer(
            message_id, VANISHED
        ):
            logger.warning(
                "answer %s had no stream left; it is stored as failed",
                message_id,
                extra={"message_id": message_id},
            )
            failed.append(message_id)
    return failed


async def sweep_forever(
    store: Store,
    history: ChatHistory,
    *,
    idle: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Call :func:`sweep_once` every ``idle`` seconds until cancelled."""
    while True:
        await sleep(idle)
        try:
            await sweep_once(store, history, idle)
        except Exception as exc:  # an outage: the next round retries (the tracker told)
            if unavailable(exc) is None:
                logger.exception("looking for answers that lost their stream failed")
