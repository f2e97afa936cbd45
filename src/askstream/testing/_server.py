"""A uvicorn server in a subprocess, for tests that speak real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO

__all__ = ["ServerProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``uvicorn APP`` in a child process on a free loopback port.

    The child gets its own process group, so :meth:`stop` reaches everything it
    started. ``stderr`` (an open binary file) takes the server's log. Use it as
    a context manager, or call :meth:`start` and :meth:`stop`::

        with ServerProcess("myapp:app") as server:
            httpx.get(server.url + "/health")
    """

    def __init__(
        self,
        app: str,
        *,
        factory: bool = False,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._factory = factory
        self._env = dict(env or {})
        self._args = list(args)
        self._startup_timeout = startup_timeout
        self._stderr = stderr  # where the server's log goes; None: this process's stderr
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "server not started"
        return self._proc

    def command(self) -> list[str]:
        """The server's command line: uvicorn running ``app`` (a subclass may run another)."""
        command = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", self.host, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        if self._factory:
            command.append("--factory")
        return command + self._args

    def start(self) -> None:
        # The command is built from our own arguments, never from a shell string.
        self._proc = subprocess.Popen(  # noqa: S603
            self.command(),
            env={**os.environ, **self._env},
            start_new_session=True,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self._proc.returncode} on start")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.app} did not accept connections in {self._startup_timeout}s")

    def terminate(self) -> None:
        """Send SIGTERM (a graceful shutdown) and return at once."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server and everything it started: a crash, as the OS sees it."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def wait(self, timeout: float) -> int:
        """Wait for the process to end; ``subprocess.TimeoutExpired`` if it does not."""
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
