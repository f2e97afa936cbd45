"""The HTTP layer's modules: no import circle, and the stream's module stays small."""

from __future__ import annotations

import ast
from pathlib import Path

HTTP = Path(__file__).resolve().parents[2] / "src" / "askstream" / "http"


def _imports(path: Path) -> set[str]:
    """The sibling modules ``path`` imports, at run time or for type checking alike."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module)
            else:
                names.update(alias.name for alias in node.names)
    return names


def test_no_import_circle_in_the_http_layer() -> None:
    graph = {path.stem: _imports(path) for path in HTTP.glob("*.py")}
    assert "_stream" in graph
    assert "_broadcast" in graph["_stream"]  # the scan sees imports

    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, nxt]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for c in map(circle_from, graph) if c is not None]
    assert circles == []


def test_the_stream_module_stays_under_400_lines() -> None:
    assert len((HTTP / "_stream.py").read_text().splitlines()) < 400
