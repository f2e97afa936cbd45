"""askstream.streams and askstream.service: ``__all__`` is exactly the public names,
each documented with an example, and every error is in askstream's one tree."""

from __future__ import annotations

import importlib
import types
import typing

import pytest

from askstream import AskstreamError

PACKAGES = ["askstream.streams", "askstream.service"]


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == public_names(module)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_class_and_function_has_an_example(name: str) -> None:
    module = importlib.import_module(name)
    for public in module.__all__:
        obj = getattr(module, public)
        if typing.get_origin(obj) is typing.Literal:
            continue  # a Literal alias: documented in its module
        doc = obj.__doc__ or ""
        assert ">>>" in doc or "::" in doc, f"{name}.{public} has no example"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_error_derives_from_the_one_root(name: str) -> None:
    module = importlib.import_module(name)
    errors = [
        value
        for value in map(module.__dict__.get, module.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert errors
    assert all(issubclass(error, AskstreamError) for error in errors)


def test_the_stream_log_imports_no_higher_layer() -> None:
    """streams may use sse (and the error root); never http or service."""
    import pkgutil

    package = importlib.import_module("askstream.streams")
    for info in pkgutil.iter_modules(package.__path__, "askstream.streams."):
        source = importlib.import_module(info.name).__loader__.get_source(info.name)  # type: ignore[union-attr]
        assert source is not None
        for line in source.splitlines():
            if line.startswith(("import ", "from ")):
                assert "http" not in line
                assert "service" not in line
