"""Settings: defaults, ASKSTREAM_* variables, flags over variables, and the docs table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from askstream.service import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_defaults_are_the_embedded_ones() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.backend == "demo"
    assert settings.database == "sqlite+aiosqlite:///data/askstream.db"
    assert settings.max_body_size == 64 * 1024
    assert settings.demo_delay == 0.03


def test_variables_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "ASKSTREAM_PORT": "9001",
            "ASKSTREAM_DATA_DIR": "/srv/askstream",
            "ASKSTREAM_LLM_URL": "http://localhost:11434/v1",
            "ASKSTREAM_LLM_MODEL": "llama3.2",
            "ASKSTREAM_LLM_API_KEY": "sk-secret",
            "ASKSTREAM_DEMO_DELAY": "0",
            "ASKSTREAM_LOG_LEVEL": "DEBUG",
            "UNRELATED": "ignored",
        }
    )
    assert settings.port == 9001
    assert settings.data_dir == Path("/srv/askstream")
    assert settings.database == "sqlite+aiosqlite:////srv/askstream/askstream.db"
    assert (settings.backend, settings.llm_model, settings.llm_api_key) == (
        "openai",
        "llama3.2",
        "sk-secret",
    )
    assert settings.demo_delay == 0.0
    assert settings.log_level == "debug"


def test_flags_win_over_variables_and_none_means_not_given() -> None:
    env = {"ASKSTREAM_PORT": "9001", "ASKSTREAM_HOST": "0.0.0.0"}
    settings = Settings.from_env(env, port=9002, host=None)
    assert (settings.port, settings.host) == (9002, "0.0.0.0")


def test_an_empty_variable_counts_as_unset() -> None:
    assert Settings.from_env({"ASKSTREAM_LLM_URL": ""}).backend == "demo"


def test_the_api_key_is_not_in_the_repr() -> None:
    settings = Settings.from_env({}, llm_url="http://h", llm_model="m", llm_api_key="sk-secret")
    assert "sk-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASKSTREAM_PORT": "eighty"}, "ASKSTREAM_PORT"),
        ({"ASKSTREAM_PORT": "70000"}, "not a TCP port"),
        ({"ASKSTREAM_DEMO_DELAY": "-1"}, "ASKSTREAM_DEMO_DELAY: must not be negative"),
        ({"ASKSTREAM_MAX_BODY_SIZE": "0"}, "ASKSTREAM_MAX_BODY_SIZE: must be above 0"),
        ({"ASKSTREAM_LOG_LEVEL": "loud"}, "ASKSTREAM_LOG_LEVEL"),
        ({"ASKSTREAM_LLM_URL": "http://h/v1"}, "ASKSTREAM_LLM_MODEL is not"),
        ({"ASKSTREAM_LLM_URL": "h/v1", "ASKSTREAM_LLM_MODEL": "m"}, "http(s) URL"),
    ],
    ids=["port-text", "port-range", "negative", "zero", "level", "no-model", "no-scheme"],
)
def test_bad_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env(env)


def test_every_setting_is_in_the_configuration_table() -> None:
    table = DOCS.read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for field in dataclasses.fields(Settings):
        variable = "ASKSTREAM_" + field.name.upper()
        row = next((r for r in rows if f"`{variable}`" in r), None)
        assert row is not None, f"{variable} is missing from docs/configuration.md"
        flag = "--" + field.name.replace("_", "-")
        assert (f"`{flag}`" in row) == bool(field.metadata["flag"]), row
