"""nginx in front of askstream, as deploy/nginx.conf has it: a real nginx and real instances.

``render`` turns the shipped file into one for this test: its upstream servers,
its ``listen`` line and any directive the test wants changed, each replacement
checked, so that the file under test is deploy/nginx.conf and nothing else.
``Nginx`` runs Debian's nginx (``.ci/setup-tools`` installs it) from a
temporary prefix, in the foreground, on 127.0.0.1 only; its access log records
which instance served each request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from askstream.testing import ServerProcess, free_port, require

from ..conftest import REDIS_URL, redis_available
from ..service.conftest import SERVICE_APP, SERVICE_ENV, pg_database  # noqa: F401

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
NGINX = "/usr/sbin/nginx"

# nginx's main file, as Debian's /etc/nginx/nginx.conf includes conf.d/*.conf
# into `http`: every path inside the prefix, nothing but this test's server.
# The test's own instruments: X-Served-By tells a client which instance
# answered it (inherited by deploy/nginx.conf's `location /`, which adds no
# header of its own), and the access log records every instance tried.
MAIN = """\
worker_processes 1;
pid nginx.pid;
error_log error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format served '$request_method $uri $status $upstream_addr';
    access_log access.log served;
    add_header X-Served-By $upstream_addr always;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    include {site};
}}
"""

_UPSTREAM = re.compile(r"^(upstream askstream \{\n)(.*?)(^\})", re.MULTILINE | re.DOTALL)
_SERVER = re.compile(r"^(\s*server\s+)(\S+)(.*;)$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*listen\s+)[^;]+(;)$", re.MULTILINE)


def render(
    text: str,
    *,
    port: int,
    instances: Sequence[str],
    down: Sequence[str] = (),
    **directives: str,
) -> str:
    """The shipped config with these instances (``host:port``, those in ``down``
    marked down), listening on 127.0.0.1:``port``, and ``directive=value`` for each
    directive named (once in the file). A replacement that does not match exactly
    is an error, so the file under test stays deploy/nginx.conf."""
    block = _UPSTREAM.search(text)
    assert block is not None, "deploy/nginx.conf has no `upstream askstream { }` block"
    servers = _SERVER.findall(block.group(2))
    assert len(servers) == len(instances), (servers, instances)
    addresses = iter(instances)

    def server(match: re.Match[str]) -> str:
        address = next(addresses)
        return match.group(1) + address + (" down" if address in down else "") + match.group(3)

    text = text[: block.start(2)] + _SERVER.sub(server, block.group(2)) + text[block.end(2) :]
    text, count = _LISTEN.subn(rf"\g<1>127.0.0.1:{port}\g<2>", text)
    assert count == 1, f"expected one listen line, found {count}"
    for name, value in directives.items():
        pattern = re.compile(rf"^(\s*{name}\s+)[^;]+(;)", re.MULTILINE)
        text, count = pattern.subn(rf"\g<1>{value}\g<2>", text)
        assert count == 1, f"expected {name} once in deploy/nginx.conf, found it {count} times"
    return text


@dataclass
class Served:
    """One access log line: which instance answered a request, and how."""

    method: str
    path: str
    status: int
    upstreams: list[str]  # every instance nginx tried, in order


@dataclass
class Nginx:
    """Debian's nginx in the foreground from its own prefix directory, in front
    of ``instances`` (``host:port``) with deploy/nginx.conf."""

    prefix: Path
    instances: list[str]
    directives: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conf(self, down: Sequence[str] = ()) -> str:
        text = SHIPPED.read_text()
        return render(text, port=self.port, instances=self.instances, down=down, **self.directives)

    def start(self, timeout: float = 10.0) -> None:
        (self.prefix / "temp").mkdir(exist_ok=True)
        (self.prefix / "askstream.conf").write_text(self.conf())
        (self.prefix / "nginx.conf").write_text(MAIN.format(site=self.prefix / "askstream.conf"))
        # -e: where nginx logs before it has read the config; -g: in the foreground,
        # our child, so that stop() reaches it.
        command = [
            NGINX, "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf"),
            "-e", str(self.prefix / "error.log"), "-g", "daemon off;",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen within {timeout} s:\n{self.errors()}")

    def workers(self) -> set[int]:
        assert self.process is not None
        pid = self.process.pid
        return {int(n) for n in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def reload(self, *, down: Sequence[str] = (), timeout: float = 10.0) -> None:
        """Mark ``down`` instances down and reload (SIGHUP); return once every worker
        left has read the new config (the old ones have ended)."""
        assert self.process is not None
        old = self.workers()
        (self.prefix / "askstream.conf").write_text(self.conf(down))
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while (workers := self.workers()) & old or not workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx's old workers {old} still run:\n{self.errors()}")
            time.sleep(0.02)

    def stop(self) -> None:
        # SIGTERM is nginx's fast shutdown: open streams are closed, not waited for.
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def errors(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def served(self) -> list[Served]:
        """The access log so far (a request is logged when it ends)."""
        path = self.prefix / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        result = []
        for line in lines:
            method, path_, status, upstreams = line.split(" ", 3)
            tried = [u.strip() for u in re.split(r"[,:] ", upstreams) if u.strip() != "-"]
            result.append(Served(method, path_, int(status), tried))
        return result


def address(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"


def nginx_available() -> bool:
    return os.access(NGINX, os.X_OK)


@pytest.fixture
def nginx_prefix() -> Iterator[Path]:
    """nginx's prefix directory. Not under pytest's tmp_path: nginx's workers run
    as another user when the tests run as root, and must reach their temp files."""
    require(nginx_available(), f"nginx at {NGINX} (Debian's package; .ci/setup-tools)")
    prefix = Path(tempfile.mkdtemp(prefix="askstream-nginx-"))
    prefix.chmod(0o755)
    try:
        yield prefix
    finally:
        shutil.rmtree(prefix)


StartNginx = Callable[..., Nginx]


@pytest.fixture
def start_nginx(nginx_prefix: Path) -> Iterator[StartNginx]:
    """``start_nginx(instances, **directives)``: deploy/nginx.conf in front of them."""
    started: list[Nginx] = []

    def start(instances: Sequence[ServerProcess], **directives: str) -> Nginx:
        server = Nginx(nginx_prefix, [address(i) for i in instances], directives)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def _delete_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


StartPair = Callable[..., tuple[ServerProcess, ServerProcess]]


@pytest.fixture
def start_pair(tmp_path: Path, pg_database: str) -> Iterator[StartPair]:  # noqa: F811
    """``start_pair(**env)``: instances A and B sharing Redis (a key prefix of this
    test's own, deleted after) and a PostgreSQL database of this test's own.

    Plain ``uvicorn --factory``, as an operator runs it behind nginx: on SIGTERM
    the app's own graceful stop decides when streams end (``shutdown_timeout``,
    1 s unless the test says otherwise), not uvicorn's ``--timeout-graceful-shutdown``.
    """
    require(redis_available(), f"Redis at {REDIS_URL}")
    prefix = f"askstream-test-{uuid.uuid4().hex[:12]}:"
    started: list[ServerProcess] = []

    def start(**env: str) -> tuple[ServerProcess, ServerProcess]:
        shared = {
            **SERVICE_ENV,
            "ASKSTREAM_SHUTDOWN_TIMEOUT": "1",
            "ASKSTREAM_REDIS_URL": REDIS_URL,
            "ASKSTREAM_REDIS_PREFIX": prefix,
            "ASKSTREAM_DATABASE_URL": pg_database,
            # One key signs the browser sessions on both (docs/security.md): the
            # tests' client is one anonymous user whichever instance it reaches.
            "ASKSTREAM_SECRET_KEY": "deploy-test-key-" + prefix,
            **env,
        }
        for _ in range(2):  # one after the other: the first creates the tables
            data_dir = tmp_path / f"data-{len(started)}"
            server = ServerProcess(
                SERVICE_APP, factory=True, env={"ASKSTREAM_DATA_DIR": str(data_dir), **shared}
            )
            started.append(server)
            server.start()
        return started[-2], started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()  # before the keys go: a stopping instance may still write
        _delete_keys(prefix)
