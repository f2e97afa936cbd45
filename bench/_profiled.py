"""Run an ASGI app under uvicorn, profiled with cProfile between two signals.

    python bench/_profiled.py OUT.prof APP [uvicorn arguments...]

SIGUSR1 starts the profile (after the warm-up, so imports and first calls stay
out), SIGUSR2 stops it and writes it to OUT.prof. Time is the main thread's CPU
time (``time.thread_time``), not wall time: the machine is shared, and a
process waiting for a core must not look slow. cProfile sees the event loop's
thread only (aiosqlite's thread, which runs the per-ask SQL, is not in it).
Used by ``profile_service.py``.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from typing import Any

import uvicorn.main


def main() -> None:
    out, *args = sys.argv[1:]
    profile = cProfile.Profile(time.thread_time)

    def start(*_: Any) -> None:
        profile.enable()

    def stop(*_: Any) -> None:
        profile.disable()
        profile.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    uvicorn.main.main(args, standalone_mode=False)


if __name__ == "__main__":
    main()
