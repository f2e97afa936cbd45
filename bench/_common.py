"""What every benchmark script shares: the report file, its sections, percentiles, versions.

The scripts run as ``python bench/<script>.py``, so this folder is on
``sys.path`` and they import this module as ``_common``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def markers(name: str) -> tuple[str, str]:
    """The comments around script ``name``'s section of docs/benchmarks.md."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(name: str, body: str, *, intro: str = "# Benchmarks\n", path: Path = DOC) -> None:
    """Replace the text between script ``name``'s markers; leave the rest of the file alone."""
    start_marker, end_marker = markers(name)
    section = f"{start_marker}\n{body}\n{end_marker}"
    text = path.read_text(encoding="utf-8") if path.exists() else intro
    start = text.find(start_marker)
    end = text.find(end_marker, start)
    if start != -1 and end != -1:
        text = text[:start] + section + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (no interpolation: a value that was seen)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def versions(*names: str) -> str:
    """``"name 1.2.3, ..."`` for each installed distribution of ``names``."""
    parts = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(parts)


async def lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan scope for a bare benchmark app: nothing to start or stop."""
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})
