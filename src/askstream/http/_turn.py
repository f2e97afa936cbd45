"""Letting the rest of the worker run: what a producer that never waits does between batches.

One ``await asyncio.sleep(0)`` lets everything that is ready *now* run once,
and the loop look at its sockets once. But serving a new request takes the
worker several such passes in a row (accept the connection, read the request,
start its task, run it, write the answer), each step made ready by the one
before; a flood that came back after every pass with another batch of
``_BATCH_SECONDS`` would add a batch to every step, and starve the request in
all but name. So a turn lasts while the rest of the worker has work: it ends at
the first pass that comes back at once (nothing else ran), or after
``_MAX_PASSES`` passes, so the flood still gets its share.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["take_turn"]

_MAX_PASSES = 16
_IDLE_PASS = 0.000_05  # seconds: a pass that took less ran nothing but us


async def take_turn() -> None:
    """Wait while the rest of the event loop has work, within bounds (see above)."""
    # Not loop.time(): uvloop's is in milliseconds, read once per pass.
    clock = time.perf_counter
    for _ in range(_MAX_PASSES):
        before = clock()
        await asyncio.sleep(0)
        if clock() - before < _IDLE_PASS:
            return
