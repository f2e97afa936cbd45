"""Helpers for testing code built on askstream: the ones askstream's own tests use.

- :class:`ServerProcess` runs an ASGI app under uvicorn in a subprocess on a free
  loopback port, for tests that speak real HTTP.
"""

from ._server import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]
