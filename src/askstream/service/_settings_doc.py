"""Write the settings table of ``docs/configuration.md`` from the ``Settings`` class.

    python -m askstream.service._settings_doc [--check] [docs/configuration.md]

The table sits between two marker comments in the file and is rewritten in
place; ``--check`` changes nothing and exits 1 when the file's table differs
from the class (``tests/service/test_settings.py`` does the same check).

>>> "| `--port` | `ASKSTREAM_PORT` | `8000` | TCP port to listen on |" in table()
True
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic.fields import FieldInfo

from ._settings import Settings
from ._settings_sources import flag, meta, variable

__all__ = ["BEGIN", "END", "main", "rewrite", "table"]

BEGIN = (
    "<!-- settings table: written by `python -m askstream.service._settings_doc` from "
    "src/askstream/service/_settings.py; change it there -->"
)
END = "<!-- end of the settings table -->"


def table() -> str:
    """The Markdown table: flag, variable(s), default, meaning; one row a setting."""
    rows = [
        "| flag | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    rows += [_row(name, field) for name, field in Settings.model_fields.items()]
    return "\n".join(rows)


def _row(name: str, field: FieldInfo) -> str:
    declared = meta(field)
    names = [variable(name)]
    if declared.secret_file:
        names.append(variable(name) + "_FILE")
    cell = " or ".join(f"`{n}`" for n in names)
    if declared.fallback is not None:
        fallbacks = [declared.fallback]
        if declared.secret_file:
            fallbacks.append(declared.fallback + "_FILE")
        cell += "; else " + " or ".join(f"`{n}`" for n in fallbacks)
    return " | ".join(
        [
            f"| `{flag(name)}`" if declared.flag else "| —",
            cell,
            _default(field.default, declared.unset),
            declared.doc + " |",
        ]
    )


def _default(value: object, unset: str | None) -> str:
    if unset is not None:
        return unset
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def rewrite(document: str) -> str:
    """``document`` with the text between the markers replaced by :func:`table`."""
    start = document.index(BEGIN) + len(BEGIN)
    end = document.index(END, start)
    return document[:start] + "\n" + table() + "\n" + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or ``--check``) the table; the exit status says whether it was current."""
    parser = argparse.ArgumentParser(prog="python -m askstream.service._settings_doc")
    parser.add_argument("path", nargs="?", type=Path, default=Path("docs/configuration.md"))
    parser.add_argument("--check", action="store_true", help="change nothing; 1 if stale")
    args = parser.parse_args(argv)
    document = args.path.read_text(encoding="utf-8")
    written = rewrite(document)
    if written == document:
        return 0
    if args.check:
        sys.stderr.write(f"{args.path}: the settings table is stale; run {parser.prog}\n")
        return 1
    args.path.write_text(written, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
