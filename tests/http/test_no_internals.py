"""Nothing in src/ leans on asyncio's or CPython's private machinery.

A private attribute of asyncio, a look at a suspended frame or code object, or a
coroutine stepped by hand may change with any CPython release (and rules out
trio under anyio). The response is built on public asyncio/anyio API only;
this scan keeps it so.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

FORBIDDEN = {
    "a private attribute of asyncio": (
        r"_asyncio_future_blocking|asyncio\.(events|futures|tasks)\._"
    ),
    "a look into a suspended frame or code object": (
        r"\b(cr|ag|gi)_(await|frame|code|running|yieldfrom|suspended)\b"
        r"|\bf_(back|locals|lasti|code)\b|sys\._getframe|\.__code__\b|async_generator_asend"
    ),
    "a coroutine stepped by hand": r"\.send\(None\)|\.throw\(|\.__await__\(\)|types\.coroutine",
}


def scan(text: str) -> list[str]:
    """What ``text`` does that it must not, one line per finding."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN.items():
            if re.search(pattern, line):
                found.append(f"{number}: {what}: {line.strip()}")
    return found


def test_src_uses_no_private_asyncio_or_cpython_machinery() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20  # the scan looks where the code is
    findings = [
        f"{path.relative_to(SRC)}:{hit}" for path in files for hit in scan(path.read_text())
    ]
    assert findings == []


def test_the_scan_finds_each_thing_it_forbids() -> None:
    # Lines of the response as it was before (issue 13): each must be caught.
    before = [
        "waits_on._asyncio_future_blocking = False",
        'awaited = getattr(self._task.get_coro(), "cr_await", None)',
        'if type(awaited).__name__ == "async_generator_asend":',
        'getattr(awaited, "cr_code", None) in _ACCOUNTED',
        "method.__code__",
        "frame = generator.ag_frame",
        "waits_on = step.send(None)",
        "waits_on = coroutine.throw(exc)",
        "gen = anext(self.iterator).__await__()",
        "@types.coroutine",
    ]
    assert [len(scan(line)) for line in before] == [1] * len(before)
    assert scan("await self._send(message)\nitem = await anext(source, END)") == []
