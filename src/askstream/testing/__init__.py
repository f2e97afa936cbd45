"""Helpers for testing code built on askstream: the ones askstream's own tests use.

- :class:`ServerProcess` runs an ASGI app under uvicorn in a subprocess on a free
  loopback port, for tests that speak real HTTP.
- :class:`FakeUpstream` is an OpenAI-compatible ``/v1/chat/completions`` server
  (an ASGI app) that streams, fails mid-answer, stalls or refuses on request.
- :func:`require` skips a test whose outside part (Redis, a browser) is missing,
  and fails it instead under ``CI=true``.
"""

from ._ci import in_ci, require
from ._server import ServerProcess, free_port
from ._upstream import FakeUpstream

__all__ = ["FakeUpstream", "ServerProcess", "free_port", "in_ci", "require"]
