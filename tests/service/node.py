"""The ai npm package's own tests (``tests/node``), run by Node.js against a service."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from askstream.testing import require

NODE_TESTS = Path(__file__).resolve().parent.parent / "node"


def require_ai_package() -> str:
    """The ``node`` binary, once Node.js and the installed ai package are there
    (skipped loudly without them, a failure under CI)."""
    node = shutil.which("node")
    require(node is not None, "node (Node.js), which runs the ai package's tests")
    require(
        (NODE_TESTS / "node_modules" / "ai").is_dir(),
        "the ai npm package (npm ci --prefix tests/node; ./dev test runs it)",
    )
    assert node is not None
    return node


def run_node_tests(
    node: str, script: str, env: dict[str, str], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``node --test`` of ``tests/node/<script>`` with ``env`` added, its TAP output kept."""
    return subprocess.run(
        [node, "--test", "--test-reporter=tap", str(NODE_TESTS / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
