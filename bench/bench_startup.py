"""What starting askstream costs: `askstream --help` and `import askstream.sse`, whole processes.

Issue 15 asked for ``askstream --help`` "well under a second" and ``import askstream.sse``
under 30 ms. Each command is a fresh interpreter, timed from outside (start to exit,
as hyperfine does; and its CPU time, user + system, from the kernel's accounting of the
finished child), the rivals taken in turn with it in the same run so the ratios hold on
a busy machine:

* ``--help`` of this tree against the same command of ``OLD_COMMIT`` (main before the
  lazy command line, extracted from git), both on this venv with the service extra
  installed, so the old one pays for importing FastAPI, pydantic and SQLAlchemy;
* ``python -c pass``: the interpreter's own start, the floor under every command, and
  the standard library modules ``askstream.sse`` imports (dataclasses and typing above all);
* ``import askstream.sse``: the whole process, and the import's own cumulative time as
  ``-X importtime`` reports it.

    .venv/bin/python bench/bench_startup.py            # print the table
    .venv/bin/python bench/bench_startup.py --write    # and update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, write_section

OLD_COMMIT = "c2b936b"  # main before issue 15's packaging: the parser imported the service
#: What askstream.sse (and the package root above it) import from the standard library.
_STDLIB = ("dataclasses", "typing", "importlib", "io", "itertools", "warnings")


def _extract(commit: str, into: Path) -> Path:
    """The ``src`` folder of ``commit``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _env(src: Path | None, cache: Path) -> dict[str, str]:
    """The environment of a timed command: its ``src`` on the path, and compiled modules
    kept (in ``cache``, out of the tree), as an installed package has them; a shell with
    PYTHONDONTWRITEBYTECODE would otherwise time the compiler at every start."""
    skip = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    env = {name: value for name, value in os.environ.items() if name not in skip}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run: its wall time and its CPU time (user + system, the finished child's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _importtime_ms(module: str, env: dict[str, str]) -> float:
    """``-X importtime``'s cumulative time of ``module``'s root package, in ms."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # The root package's line: it includes askstream.sse, imported under it.
    top = module.partition(".")[0]
    for line in result.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == top:
            return int(parts[1]) / 1000
    raise RuntimeError(f"no importtime line for {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        old = _extract(OLD_COMMIT, Path(tmp))
        new = ROOT / "src"
        cache = Path(tmp) / "pycache"
        commands = {
            "help_new": ([python, "-m", "askstream.cli", "--help"], _env(new, cache)),
            "help_old": ([python, "-m", "askstream.cli", "--help"], _env(old, cache)),
            "sse": ([python, "-c", "import askstream.sse"], _env(new, cache)),
            "stdlib": ([python, "-c", f"import {', '.join(_STDLIB)}"], _env(None, cache)),
            "floor": ([python, "-c", "pass"], _env(None, cache)),
        }
        for command, env in commands.values():  # compile once, warm the page cache
            _run(command, env)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):  # in turn: a slow spell of the machine hits all alike
            for name, (command, env) in commands.items():
                runs[name].append(_run(command, env))
        imports = [_importtime_ms("askstream.sse", _env(new, cache)) for _ in range(args.runs)]

    wall = {name: statistics.median(r[0] for r in values) * 1000 for name, values in runs.items()}
    cpu = {name: statistics.median(r[1] for r in values) * 1000 for name, values in runs.items()}

    def ratio(a: str, b: str, which: int) -> float:
        """The median of run-by-run ratios (runs taken in turn: pairs share the machine)."""
        return statistics.median(x[which] / y[which] for x, y in zip(runs[a], runs[b], strict=True))

    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    stdlib = ", ".join(_STDLIB)
    old_help = f"`askstream --help` of {OLD_COMMIT} (flags built from the service's Settings)"
    lines = [
        "## Start-up (`bench/bench_startup.py`)",
        "",
        f"{today}; CPython {platform.python_version()}; {os.cpu_count()} cores, "
        f"{platform.machine()}, {platform.system()}; whole processes timed from outside, "
        f"medians of {args.runs} runs taken in turn; CPU is the process's user + system time, "
        "which other jobs on a shared machine disturb far less than the wall time.",
        "",
        "| command | wall | CPU | rival | wall / rival | CPU / rival |",
        "|---|--:|--:|---|--:|--:|",
        _row(wall, cpu, "`askstream --help` (this tree)", "help_new", old_help, ratio, "help_old"),
        _row(wall, cpu, old_help, "help_old"),
        _row(
            wall,
            cpu,
            '`python -c "import askstream.sse"`',
            "sse",
            f"`import {stdlib}`",
            ratio,
            "stdlib",
        ),
        _row(
            wall,
            cpu,
            f'`python -c "import {stdlib}"`',
            "stdlib",
            "`python -c pass`",
            ratio,
            "floor",
        ),
        _row(wall, cpu, "`python -c pass` (the interpreter's start)", "floor"),
    ]
    body = (
        "\n".join(lines)
        + f"""

`import askstream.sse` costs what the standard library modules it imports cost
(dataclasses, through inspect, and typing above all; `-X importtime` puts the whole
`askstream` package, core included, at a median {statistics.median(imports):.0f} ms here):
{cpu["sse"] - cpu["floor"]:.0f} ms of CPU over the interpreter's bare start, against
{cpu["stdlib"] - cpu["floor"]:.0f} ms for those modules alone. It loads nothing outside the
standard library (`tests/test_imports.py`)."""
    )
    print(body)
    if args.write:
        write_section("bench_startup", body)


def _row(
    wall: dict[str, float],
    cpu: dict[str, float],
    label: str,
    name: str,
    rival_label: str = "",
    ratio: Callable[[str, str, int], float] | None = None,
    rival: str = "",
) -> str:
    cells = [label, f"{wall[name]:.0f} ms", f"{cpu[name]:.0f} ms", rival_label or "-"]
    if ratio is not None:
        cells += [f"{ratio(name, rival, 0):.2f}x", f"{ratio(name, rival, 1):.2f}x"]
    else:
        cells += ["", ""]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
