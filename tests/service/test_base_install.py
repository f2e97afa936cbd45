"""``pip install askstream`` with no extras, for real: a fresh venv holding our wheel and
only the base dependencies (anyio, httpx, Starlette), whose ``askstream`` command asks a
running service and says which extra ``serve`` needs.

The venv is built once per module: the wheel from this checkout (with the build backend
of the running venv when it has one, else in pip's isolated build), the dependencies
pinned to the versions this venv runs (pip finds them in its cache or its indexes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

from askstream.testing import ServerProcess

from .conftest import CHINESE

ROOT = Path(__file__).parents[2]
EXTRA_HINT = "pip install 'askstream[service]'"
#: Top-level modules of the extras: none may be in a base install.
EXTRAS = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic", "pydantic_settings", "redis")


@dataclass(frozen=True)
class BaseInstall:
    bin: Path
    #: The environment the venv's programs run in: none of this checkout's
    #: PYTHONPATH (they must run the wheel) and no developer's ASKSTREAM_* variables.
    env: dict[str, str]

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            check=False,
        )


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stderr}"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseInstall:
    where = tmp_path_factory.mktemp("base-install")
    # The dev extra brings the build backend: building in place skips fetching it.
    build = ["--no-build-isolation"] if find_spec("hatchling") else []
    _pip("wheel", "--no-deps", *build, "--wheel-dir", str(where / "dist"), str(ROOT))
    (wheel,) = (where / "dist").glob("askstream-*.whl")
    # No pip inside (the running venv's pip installs into it with --python): faster,
    # and no system site-packages, so only what is installed below can be imported.
    venv.create(where / "venv", with_pip=False, symlinks=True)
    python = where / "venv" / "bin" / "python"
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # The versions this suite runs, so pip resolves to what was tested (and has cached);
    # never askstream itself, which the wheel is.
    pins = [line for line in frozen.splitlines() if not line.lower().startswith("askstream")]
    (where / "constraints.txt").write_text("\n".join(pins) + "\n")
    # The wheel's own metadata decides what comes with it: exactly a user's `pip install askstream`.
    _pip("--python", str(python), "install", "-c", str(where / "constraints.txt"), str(wheel))
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith("ASKSTREAM_")
    }
    env["ASKSTREAM_STATE_DIR"] = str(where / "state")
    return BaseInstall(where / "venv" / "bin", env)


def test_a_base_install_has_none_of_the_extras(base: BaseInstall) -> None:
    code = (
        "import importlib.util, askstream\n"
        f"print([m for m in {EXTRAS!r} if importlib.util.find_spec(m)])\n"
        "print(askstream.__file__)"
    )
    result = base.run("python", "-c", code)
    assert result.returncode == 0, result.stderr
    found, where = result.stdout.splitlines()
    assert found == "[]"
    assert "site-packages" in where  # the wheel, not this checkout


#: An EventStreamResponse read by aconnect, through httpx's in-process ASGI transport:
#: the server side and the client of the library with only the base dependencies.
HTTP_ROUND_TRIP = """
import asyncio, httpx
from askstream import Event, EventStreamResponse, aconnect

async def app(scope, receive, send):
    async def events():
        yield Event("hi", id="1")
        yield Event("bye", event="done", id="2")
    await EventStreamResponse(events())(scope, receive, send)

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        async with aconnect("GET", "http://t/", client=client, until={"done"}) as stream:
            print([(e.event, e.data, e.id) async for e in stream])

asyncio.run(main())
"""


def test_the_response_and_the_client_work_on_a_base_install(base: BaseInstall) -> None:
    result = base.run("python", "-c", HTTP_ROUND_TRIP)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('message', 'hi', '1'), ('done', 'bye', '2')]"


def test_the_commands_help_works_on_a_base_install(base: BaseInstall) -> None:
    result = base.run("askstream", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "db", "ask"):
        assert f"    {command} " in result.stdout
    ask = base.run("askstream", "ask", "--help")
    assert ask.returncode == 0, ask.stderr
    assert "--chat ID" in ask.stdout


@pytest.mark.parametrize(
    "args",
    [["serve"], ["serve", "--help"], ["serve", "--port", "0"], ["db", "upgrade"]],
    ids=" ".join,
)
def test_serve_and_db_name_the_extra_to_install(base: BaseInstall, args: list[str]) -> None:
    result = base.run("askstream", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"askstream: `askstream {args[0]}` needs the service extra")
    assert result.stderr.rstrip().endswith(EXTRA_HINT)


def test_ask_gets_the_answer_on_a_base_install(base: BaseInstall, demo: ServerProcess) -> None:
    result = base.run("askstream", "ask", CHINESE, "--url", demo.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"You asked: “{CHINESE}”.")
    assert result.stderr.startswith("chat: ")
    chat_id = result.stderr.split()[1]
    again = base.run("askstream", "ask", "And again?", "--chat", chat_id, "--url", demo.url)
    assert again.returncode == 0, again.stderr
    assert "This chat has 2 earlier messages." in again.stdout
