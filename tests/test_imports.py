"""What importing askstream, and starting its command, loads: each in a fresh interpreter.

The protocol core is pure (STYLE.md rule 2), so it must load nothing outside the
standard library; the command's ``--help`` and ``ask`` must run on a base install
(``pip install askstream``), so they must not touch the ``service`` extra. The
tests look at what ``sys.modules`` gains (or what ``-X importtime`` lists), never
at how long it took: the time is in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from askstream.testing import free_port

#: The ``service`` and ``redis`` extras' modules (and what they stand on).
SERVICE_EXTRA = frozenset(
    {
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "alembic",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "dotenv",
        "redis",
    }
)


def gained(statement: str) -> list[str]:
    """The modules ``statement`` adds to a fresh interpreter's ``sys.modules``."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    found: list[str] = json.loads(result.stdout)
    return found


def outside_stdlib(modules: list[str]) -> list[str]:
    return [name for name in modules if name.partition(".")[0] not in sys.stdlib_module_names]


def test_the_protocol_core_loads_nothing_outside_the_standard_library() -> None:
    modules = gained("import askstream.sse")
    assert "askstream.sse._decoder" in modules  # it did load the core
    # Importing a subpackage runs the root's __init__ too (and its exception tree).
    ours = {"askstream", "askstream._exceptions", "askstream.sse"}
    assert [
        name
        for name in outside_stdlib(modules)
        if name not in ours and not name.startswith("askstream.sse.")
    ] == []


def test_the_package_root_loads_nothing_outside_the_standard_library() -> None:
    outside = outside_stdlib(gained("import askstream"))
    assert outside, "the import loaded nothing: the test would prove nothing"
    assert all(name.partition(".")[0] == "askstream" for name in outside), outside
    assert not [name for name in outside if name.startswith(("askstream.http", "askstream.serv"))]
    # Spelled out, since these are what a base install's users would feel.
    assert not {"httpx", "starlette", "anyio", "fastapi"} & {n.split(".")[0] for n in outside}


def _importtime(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime ARGS``; its result and every top-level package it
    imported (importtime's last column, one line per module)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    packages = {
        line.rsplit("|", 1)[1].strip().partition(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    packages.discard("imported package")  # importtime's header line
    # importtime lists failed imports too: the standard library's copy module tries
    # Jython's org.python.core and goes on without it.
    packages.discard("org")
    return result, packages


def imported_by_command(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``askstream ARGS``; its result and the top-level packages it imported
    beyond what the interpreter's own start (site, sitecustomize) imports."""
    _, startup = _importtime("-c", "pass")
    result, packages = _importtime("-m", "askstream.cli", *args)
    return result, packages - startup


def test_the_commands_help_loads_only_the_standard_library() -> None:
    result, packages = imported_by_command("--help")
    assert result.returncode == 0, result.stderr
    assert "ask a running service a question" in result.stdout
    assert "askstream" in packages  # importtime did list the imports
    assert {name for name in packages if name not in sys.stdlib_module_names} == {"askstream"}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["ask", "--help"], id="ask-help"),
        pytest.param(["ask", "hi", "--url", "http://127.0.0.1:{port}"], id="ask-nobody-listens"),
    ],
)
def test_ask_loads_nothing_of_the_service_extra(args: list[str]) -> None:
    port = free_port()
    result, packages = imported_by_command(*(arg.format(port=port) for arg in args))
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    if "--help" not in args:
        assert "cannot reach" in result.stderr
        assert "httpx" in packages  # it did get as far as the client
    assert not packages & SERVICE_EXTRA


def test_serve_still_loads_the_service_and_its_help_lists_every_flag() -> None:
    """The lazy parser must not cost ``serve --help`` its flags when the extra is there."""
    from askstream.service import Settings
    from askstream.service._settings_sources import flag, meta

    result = subprocess.run(
        [sys.executable, "-m", "askstream.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    flags = [flag(name) for name, field in Settings.model_fields.items() if meta(field).flag]
    assert len(flags) > 20
    assert [name for name in flags if name not in result.stdout] == []
