"""Helpers for testing code built on askstream: the ones askstream's own tests use.

- :class:`ServerProcess` runs an ASGI app under uvicorn in a subprocess on a free
  loopback port, for tests that speak real HTTP.
- :class:`FakeUpstream` is an OpenAI-compatible ``/v1/chat/completions`` server
  (an ASGI app) that streams, fails mid-answer, stalls or refuses on request.
- :class:`FakeClock` is a clock that moves only when the test advances it, for
  anything that takes a ``clock`` (heartbeats, send timeouts, periodic saves).
- :func:`require` skips a test whose outside part (Redis, a browser) is missing,
  and fails it instead under ``CI=true``.
"""

from ._ci import in_ci, require
from ._clock import FakeClock
from ._server import ServerProcess, free_port
from ._upstream import FakeUpstream

__all__ = ["FakeClock", "FakeUpstream", "ServerProcess", "free_port", "in_ci", "require"]
