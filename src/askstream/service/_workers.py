"""Several worker processes on one port, and the one store that cannot serve them.

The memory store lives in one process: with two workers behind one port, a
resume or a cancel reaches the other worker half of the time, which does not
know the answer (404). ``askstream serve --workers N`` refuses that at once;
:func:`create_app` refuses it too when the process can tell it is one of
several workers (:func:`workers_seen`), which is a guess from what is visible
in the process, never certain: see ``docs/deploy.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

__all__ = ["memory_store_refusal", "workers_seen"]


def _count(text: str | None) -> int:
    return int(text) if text is not None and text.strip().isdigit() else 1


def _flag_value(argv: Sequence[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def workers_seen(
    workers: int = 1,
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """How many worker processes this process appears to be one of.

    The largest of: ``workers`` (the settings' ``workers``, which ``askstream
    serve --workers`` hands its workers), ``WEB_CONCURRENCY`` (uvicorn's and
    gunicorn's default worker count), and the ``--workers`` (or gunicorn's
    ``-w``) of a uvicorn or gunicorn command line: a worker that uvicorn spawns
    is given its parent's ``sys.argv``, a worker gunicorn forks keeps it.

    >>> workers_seen(1, {}, ["/venv/bin/uvicorn", "--factory", "app:make", "--workers", "4"])
    4
    >>> workers_seen(1, {"WEB_CONCURRENCY": "2"}, ["python"])
    2
    >>> workers_seen(1, {}, ["/venv/bin/python", "app.py", "--workers", "4"])
    1
    """
    env = os.environ if environ is None else environ
    args = list(sys.argv if argv is None else argv)
    seen = max(workers, _count(env.get("WEB_CONCURRENCY")))
    path = args[0] if args else ""
    program = os.path.basename(path)
    # `python -m uvicorn` runs .../uvicorn/__main__.py.
    if not program.startswith(("uvicorn", "gunicorn")) and "/uvicorn/" not in path:
        return seen  # not their command line: a --workers here is somebody else's flag
    names = ("--workers", "-w") if program.startswith("gunicorn") else ("--workers",)
    return max(seen, _count(_flag_value(args[1:], names)))


def memory_store_refusal(workers: int) -> str:
    """What to say when ``workers`` processes would each have a memory store."""
    return (
        f"refusing to run {workers} workers with the memory store: each worker would keep "
        "its own streams, and resumes and cancels would miss half of them.\n"
        "  Set ASKSTREAM_REDIS_URL (e.g. redis://127.0.0.1:6379/0) so that every worker "
        "shares one stream log, or run one worker."
    )
