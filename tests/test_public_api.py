"""The public surface is a test: what ``__all__`` says is exactly what is public."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import askstream
from askstream import _exceptions

PACKAGES = [
    "askstream",
    "askstream.sse",
    "askstream.http",
    "askstream.streams",
    "askstream.service",
    "askstream.testing",
]


def _public_names(module: types.ModuleType) -> set[str]:
    # dir(), not vars(): the root loads its HTTP names on first use (PEP 562).
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), types.ModuleType)
        and name not in ("annotations", "TYPE_CHECKING")
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__) - {"__version__"}
    assert exported == _public_names(module)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_has_a_docstring_with_an_example(name: str) -> None:
    module = importlib.import_module(name)
    for public in module.__all__:
        obj = getattr(module, public)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # type aliases and constants are documented where they are defined
        doc = obj.__doc__ or ""
        assert doc.strip(), f"{name}.{public} has no docstring"


def test_every_runtime_error_derives_from_the_one_root() -> None:
    errors = [
        getattr(askstream, name)
        for name in askstream.__all__
        if isinstance(getattr(askstream, name), type)
        and issubclass(getattr(askstream, name), Exception)
    ]
    assert errors
    assert all(issubclass(error, askstream.AskstreamError) for error in errors)


def test_the_protocol_core_imports_no_io() -> None:
    """askstream.sse is sans-I/O: no asyncio, sockets, httpx or starlette."""
    forbidden = ("asyncio", "socket", "httpx", "starlette", "anyio", "trio")
    package = importlib.import_module("askstream.sse")
    for info in pkgutil.iter_modules(package.__path__, "askstream.sse."):
        source = importlib.import_module(info.name).__loader__.get_source(info.name)  # type: ignore[union-attr]
        assert source is not None
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not any(word in stripped.split()[1] for word in forbidden), (
                    f"{info.name}: {stripped}"
                )


ERROR_CLASSES = sorted(
    (
        value
        for value in vars(_exceptions).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ),
    key=lambda error: error.__name__,
)


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda error: error.__name__)
def test_every_error_class_is_public_at_the_root(error: type[Exception]) -> None:
    assert error.__name__ in askstream.__all__
    assert getattr(askstream, error.__name__) is error


def _drawn_tree(text: str, indent: str) -> dict[str, str]:
    """Each class of a drawing of the tree, and the class drawn as its parent."""
    drawn: dict[str, str] = {}
    parents = ["AskstreamError"]
    for line in text.splitlines():
        match = re.match(rf"^{indent}((?:[│ ] {{3}})*)[├└]── (\w+)", line)
        if match is None:
            continue
        depth = len(match[1]) // 4 + 1
        del parents[depth:]
        drawn[match[2]] = parents[-1]
        parents.append(match[2])
    return drawn


def test_the_tree_drawn_in_the_docstring_is_the_tree() -> None:
    """Each class in the drawing derives (first) from the class drawn above it."""
    assert _exceptions.__doc__ is not None
    drawn = _drawn_tree(_exceptions.__doc__, " {4}")
    assert set(drawn) | {"AskstreamError"} == {error.__name__ for error in ERROR_CLASSES}
    for name, parent in drawn.items():
        assert getattr(_exceptions, name).__bases__[0].__name__ == parent, name


def test_the_tree_in_the_docs_is_the_tree() -> None:
    assert _exceptions.__doc__ is not None
    docs = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    assert _drawn_tree(docs, "") == _drawn_tree(_exceptions.__doc__, " {4}")


def test_the_subpackages_re_export_the_same_classes() -> None:
    import askstream.service
    import askstream.streams

    for package in (askstream.streams, askstream.service):
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type) and issubclass(value, Exception):
                assert value is getattr(askstream, name), f"{package.__name__}.{name}"


def test_catching_any_error_imports_no_web_stack_and_no_database() -> None:
    """``except UpstreamError`` must not cost FastAPI, SQLAlchemy or httpx."""
    names = ", ".join(error.__name__ for error in ERROR_CLASSES)
    heavy = ("fastapi", "starlette", "sqlalchemy", "httpx", "alembic", "pydantic", "redis")
    code = (
        f"import sys\nfrom askstream import {names}\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_the_old_name_stream_error_still_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="EventSourceError"):
        old = askstream.StreamError  # type: ignore[attr-defined]
    assert old is askstream.EventSourceError


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = askstream.no_such_name  # type: ignore[attr-defined]


def test_the_http_names_load_on_first_use_and_still_work_every_way() -> None:
    code = (
        "import sys, askstream\n"
        "assert 'httpx' not in sys.modules\n"
        "from askstream import EventStreamResponse, connect\n"
        "assert askstream.http.connect is connect is askstream.connect\n"
        "assert 'httpx' in sys.modules and 'connect' in dir(askstream)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
