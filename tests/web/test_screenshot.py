"""tests/web/screenshot.py, the script that takes docs/screenshot.png, keeps working
and takes the same picture every time it runs (on one machine: fonts differ
between machines, so the picture is compared with itself, not with the docs')."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from askstream.testing import require

from .conftest import CHROMIUM

SCRIPT = Path(__file__).with_name("screenshot.py")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR, the first chunk
    return width, height


@pytest.mark.slow
def test_the_screenshot_script_takes_the_same_picture_twice(tmp_path: Path) -> None:
    require(os.path.exists(CHROMIUM), "Chromium (/usr/bin/chromium)")
    shots = []
    for n in range(2):
        out = tmp_path / f"shot-{n}.png"
        # A process of its own: the script runs Playwright's sync API itself.
        subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, timeout=240)
        shots.append(out.read_bytes())
    assert png_size(shots[0]) == (1280, 800)
    assert shots[0] == shots[1]
