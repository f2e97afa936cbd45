"""The public surface is a test: what ``__all__`` says is exactly what is public."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import askstream

PACKAGES = [
    "askstream",
    "askstream.sse",
    "askstream.http",
    "askstream.streams",
    "askstream.service",
    "askstream.testing",
]


def _public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
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
