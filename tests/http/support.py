"""Helpers the HTTP tests share (conftest.py holds the fixtures built on them)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from askstream.testing import ServerProcess

UVICORN_ARGS = ["--loop", "uvloop", "--http", "httptools"]

Report = Callable[[str], dict[str, Any]]
Poll = Callable[[Callable[[], Any], float, str], None]


def report_of(server: ServerProcess) -> Report:
    """``report(name)``: what the server's stream ``name`` told its board."""

    def report(name: str) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{server.url}/closed/{name}", timeout=5).json()
        return answer

    return report


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def open_raw(server: ServerProcess, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A raw socket that sent ``GET path``; the caller reads (or does not)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((server.host, server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, count: int = 1, timeout: float = 5.0) -> bytes:
    """Read from ``sock`` until ``marker`` arrived ``count`` times (the body is chunked:
    markers in different chunks have chunk framing between them)."""
    deadline = time.monotonic() + timeout
    data = b""
    while data.count(marker) < count:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}"
        data += chunk
        assert time.monotonic() < deadline, f"{marker!r} x{count} not within {timeout}s"
    return data
