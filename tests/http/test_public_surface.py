"""askstream.http's public surface: what __all__ says, documented with an example."""

from __future__ import annotations

import types

import pytest

import askstream
import askstream.http


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(askstream.http).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert set(askstream.http.__all__) == public


@pytest.mark.parametrize("name", askstream.http.__all__)
def test_every_public_name_is_documented_with_an_example(name: str) -> None:
    doc = getattr(askstream.http, name).__doc__ or ""
    assert ">>>" in doc or "::" in doc, f"askstream.http.{name} has no example"


@pytest.mark.parametrize("name", askstream.http.__all__)
def test_every_public_name_is_also_at_the_top_level(name: str) -> None:
    assert getattr(askstream, name) is getattr(askstream.http, name)
    assert name in askstream.__all__
