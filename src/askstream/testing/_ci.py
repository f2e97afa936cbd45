"""Skip where a part is missing, but never on CI."""

from __future__ import annotations

import os

__all__ = ["in_ci", "require"]


def in_ci() -> bool:
    """True under ``CI=true`` (or ``1``/``yes``), as CI services set it."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip the calling test when ``what`` is not available, or fail it under CI.

    On a developer's machine without Redis, say, a test that needs it skips
    with a loud reason; under ``CI=true`` the same test fails, because a CI run
    that passes by skipping proves nothing::

        def test_resume_on_another_instance(redis_up: bool) -> None:
            require(redis_up, "Redis on 127.0.0.1:6379")
    """
    if available:
        return
    import pytest

    if in_ci():
        pytest.fail(f"{what} is not available, and CI=true forbids skipping", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {what} is not available")
