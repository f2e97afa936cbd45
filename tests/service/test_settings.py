"""Settings: defaults, the .env file, ASKSTREAM_* variables, flags over both, secrets from
files, OpenAI's names as fallbacks, every wrong setting in one error, and the docs table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from askstream.service import Settings
from askstream.service._settings_doc import BEGIN, END, table
from askstream.service._settings_sources import flag, meta, variable

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where no developer's .env lies: from_env reads ./.env by default."""
    monkeypatch.chdir(tmp_path)


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
    table_text = DOCS.read_text(encoding="utf-8")
    rows = [line for line in table_text.splitlines() if line.startswith("| ")]
    for name, field in Settings.model_fields.items():
        row = next((r for r in rows if f"`{variable(name)}`" in r), None)
        assert row is not None, f"{variable(name)} is missing from docs/configuration.md"
        assert (f"`{flag(name)}`" in row) == meta(field).flag, row


def test_the_configuration_table_is_the_one_the_class_writes() -> None:
    document = DOCS.read_text(encoding="utf-8")
    written = document[document.index(BEGIN) + len(BEGIN) : document.index(END)].strip()
    assert written == table(), (
        "docs/configuration.md's settings table is stale: "
        "run python -m askstream.service._settings_doc"
    )


# -- the .env file ----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_env_file_is_read_under_the_variables_and_the_flags(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / "app.env",
        "# the service's settings\n"
        "ASKSTREAM_PORT=9001\n"
        "ASKSTREAM_HOST=0.0.0.0\n"
        "ASKSTREAM_LOG_LEVEL=debug\n"
        "export ASKSTREAM_DEMO_DELAY='0.5'\n",
    )
    environ = {"ASKSTREAM_ENV_FILE": str(env_file), "ASKSTREAM_PORT": "9002"}
    settings = Settings.from_env(environ, host="127.0.0.2")
    assert settings.port == 9002  # the environment over the file
    assert settings.host == "127.0.0.2"  # the flag over the file
    assert (settings.log_level, settings.demo_delay) == ("debug", 0.5)  # the file over defaults
    assert settings.env_file == env_file


def test_dot_env_in_the_working_directory_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).env_file is None  # none there: nothing read, nothing wrong
    write(tmp_path / ".env", "ASKSTREAM_PORT=9003\n")
    other = write(tmp_path / "other.env", "ASKSTREAM_PORT=9004\n")
    third = write(tmp_path / "third.env", "ASKSTREAM_PORT=9005\n")
    assert Settings.from_env({}).port == 9003
    assert Settings.from_env({}).env_file == Path(".env")
    chosen = {"ASKSTREAM_ENV_FILE": str(other)}
    assert Settings.from_env(chosen).port == 9004
    assert Settings.from_env(chosen, env_file=str(third)).port == 9005  # --env-file wins
    assert Settings.from_env({}, env_file="/dev/null").port == 8000  # reads none


def test_a_named_env_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing.env"
    with pytest.raises(ValueError, match="ASKSTREAM_ENV_FILE: cannot read") as caught:
        Settings.from_env({"ASKSTREAM_ENV_FILE": str(missing)})
    assert str(missing) in str(caught.value)
    with pytest.raises(ValueError, match="--env-file: cannot read"):
        Settings.from_env({}, env_file=str(missing))


def test_env_file_values_are_taken_as_written(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / ".env",
        'ASKSTREAM_REDIS_PREFIX="app:${HOME}:"  # a comment after the value\n'
        "ASKSTREAM_DATABASE_URL=postgresql+asyncpg://u:pa$$word@db/askstream\n"
        "ASKSTREAM_ENV_FILE=/elsewhere.env\n"  # the file cannot name another
        "ASKSTREAM_LLM_URL=\n",  # empty: unset
    )
    settings = Settings.from_env({}, env_file=str(env_file))
    assert settings.redis_prefix == "app:${HOME}:"
    assert settings.database == "postgresql+asyncpg://u:pa$$word@db/askstream"
    assert (settings.env_file, settings.backend) == (env_file, "demo")


def test_a_line_of_the_env_file_that_does_not_parse_is_named_not_shown(tmp_path: Path) -> None:
    env_file = write(tmp_path / ".env", "ASKSTREAM_PORT=9001\nsk-pasted-by-mistake here\n")
    with pytest.raises(
        ValueError, match=re.escape(f"{env_file}, line 2: not NAME=value")
    ) as caught:
        Settings.from_env({}, env_file=str(env_file))
    assert "sk-pasted" not in str(caught.value)


# -- secrets from files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable_name", "attribute"),
    [
        ("ASKSTREAM_LLM_API_KEY_FILE", "llm_api_key"),
        ("ASKSTREAM_SECRET_KEY_FILE", "secret_key"),
        ("OPENAI_API_KEY_FILE", "llm_api_key"),
    ],
)
def test_a_secret_is_read_from_its_file_stripped(
    tmp_path: Path, variable_name: str, attribute: str
) -> None:
    secret = write(tmp_path / "secret", "  sk-from-a-file-0123\n\n")
    settings = Settings.from_env({variable_name: str(secret)})
    assert getattr(settings, attribute) == "sk-from-a-file-0123"
    assert "sk-from-a-file-0123" not in repr(settings)


def test_a_secret_file_in_the_env_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "key", "sk-in-env-file-0123\n")
    env_file = write(tmp_path / ".env", f"ASKSTREAM_LLM_API_KEY_FILE={secret}\n")
    assert Settings.from_env({}, env_file=str(env_file)).llm_api_key == "sk-in-env-file-0123"
    # The environment's value is above the whole file, _FILE or not.
    environ = {"ASKSTREAM_LLM_API_KEY": "sk-from-environ"}
    assert Settings.from_env(environ, env_file=str(env_file)).llm_api_key == "sk-from-environ"


@pytest.mark.parametrize("where", ["environment", "env file"])
def test_a_secret_and_its_file_both_set_in_one_place_is_an_error(
    tmp_path: Path, where: str
) -> None:
    secret = write(tmp_path / "key", "sk-in-a-file-0123\n")
    pair = {
        "ASKSTREAM_LLM_API_KEY": "sk-in-the-variable",
        "ASKSTREAM_LLM_API_KEY_FILE": str(secret),
    }
    if where == "environment":
        environ, env_file = pair, "/dev/null"
    else:
        environ = {}
        env_file = str(write(tmp_path / ".env", "".join(f"{k}={v}\n" for k, v in pair.items())))
    with pytest.raises(
        ValueError, match="ASKSTREAM_LLM_API_KEY and ASKSTREAM_LLM_API_KEY_FILE"
    ) as caught:
        Settings.from_env(environ, env_file=env_file)
    assert "are both set" in str(caught.value)
    assert "sk-in" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("\n \n", "is empty"), (b"\xff\xfe", "is not UTF-8 text")],
    ids=["missing", "empty", "binary"],
)
def test_a_secret_file_that_cannot_be_used_is_named(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "key"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        write(path, content)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        Settings.from_env({"ASKSTREAM_SECRET_KEY_FILE": str(path)})
    assert str(caught.value).startswith("ASKSTREAM_SECRET_KEY_FILE: ")
    assert repr(str(path)) in str(caught.value)


# -- OpenAI's names as fallbacks --------------------------------------------------------


def test_openai_api_key_is_the_fallback_for_the_api_key(tmp_path: Path) -> None:
    assert Settings.from_env({"OPENAI_API_KEY": "sk-openai"}).llm_api_key == "sk-openai"
    both = {"OPENAI_API_KEY": "sk-openai", "ASKSTREAM_LLM_API_KEY": "sk-askstream"}
    assert Settings.from_env(both).llm_api_key == "sk-askstream"
    # Ours in the .env file still beats OpenAI's exported for every tool.
    env_file = write(tmp_path / ".env", "ASKSTREAM_LLM_API_KEY=sk-in-env-file\n")
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-openai"}, env_file=str(env_file))
    assert settings.llm_api_key == "sk-in-env-file"


def test_openai_base_url_is_the_fallback_once_a_model_is_named(tmp_path: Path) -> None:
    base = {"OPENAI_BASE_URL": "http://localhost:11434/v1"}
    # Exported for other tools, it alone does not turn the demo into an error.
    assert Settings.from_env(base).backend == "demo"
    settings = Settings.from_env(base, llm_model="llama3.2")
    assert (settings.backend, settings.llm_url) == ("openai", "http://localhost:11434/v1")
    ours = {**base, "ASKSTREAM_LLM_URL": "http://127.0.0.1:9/v1", "ASKSTREAM_LLM_MODEL": "m"}
    assert Settings.from_env(ours).llm_url == "http://127.0.0.1:9/v1"
    env_file = write(tmp_path / ".env", "OPENAI_BASE_URL=http://file/v1\nASKSTREAM_LLM_MODEL=m\n")
    assert Settings.from_env({}, env_file=str(env_file)).llm_url == "http://file/v1"


def test_a_wrong_fallback_is_named_as_it_was_given() -> None:
    with pytest.raises(ValueError, match=r"^OPENAI_BASE_URL: must be an http\(s\) URL"):
        Settings.from_env({"OPENAI_BASE_URL": "localhost:11434", "ASKSTREAM_LLM_MODEL": "m"})


# -- every wrong setting at once, secrets never shown ---------------------------------


def test_every_wrong_setting_is_one_line_of_one_error(tmp_path: Path) -> None:
    env_file = write(tmp_path / ".env", "ASKSTREAM_HEARTBEAT=-1\nASKSTREAM_API_DOCS=maybe\n")
    environ = {
        "ASKSTREAM_PORT": "eighty",
        "ASKSTREAM_CORS_ORIGINS": "app.example.com",
        "ASKSTREAM_SECRET_KEY_FILE": str(tmp_path / "no-such-key"),
        "ASKSTREAM_LLM_URL": "http://h/v1",  # and no model
    }
    with pytest.raises(ValueError, match="settings are wrong") as caught:
        Settings.from_env(environ, env_file=str(env_file), max_body_size="0", demo_delay="soon")
    first, *lines = str(caught.value).splitlines()
    assert first == f"{len(lines)} settings are wrong:"
    expected = [
        "  ASKSTREAM_PORT: must be a whole number, not 'eighty'",
        "  ASKSTREAM_LLM_URL is set but ASKSTREAM_LLM_MODEL is not",
        "  --demo-delay: must be a number, not 'soon'",
        "  --max-body-size: must be above 0, not 0",
        f"  ASKSTREAM_HEARTBEAT in {env_file}: must be above 0, not -1.0",
        "  ASKSTREAM_SECRET_KEY_FILE: cannot read",
        "  ASKSTREAM_CORS_ORIGINS: 'app.example.com' is not an origin",
        f"  ASKSTREAM_API_DOCS in {env_file}: must be true or false, not 'maybe'",
    ]
    # One line each, in the order of the configuration table.
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


SECRET = "s3cret-value-never-shown"


@pytest.mark.parametrize(
    "environ",
    [
        {"ASKSTREAM_TOKENS": f"alice:{SECRET},bob:{SECRET}"},
        {"ASKSTREAM_TOKENS": f"alice {SECRET}"},
        {"ASKSTREAM_LLM_API_KEY": f"{SECRET} "[::-1] + "x y"},
        {"ASKSTREAM_LLM_API_KEY": f"{SECRET}\tx", "ASKSTREAM_PORT": "eighty"},
        {"OPENAI_API_KEY": f"{SECRET}\n{SECRET}"},
        {"ASKSTREAM_SECRET_KEY": SECRET, "ASKSTREAM_SECRET_KEY_FILE": "/nonexistent"},
    ],
    ids=["shared-token", "no-colon", "space-in-key", "tab-in-key", "fallback", "both-set"],
)
def test_a_secret_never_appears_in_the_error(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 (any message; the point is what it lacks)
        Settings.from_env(environ)
    text = str(caught.value)
    assert SECRET not in text
    assert SECRET[::-1] not in text
    assert text  # and it still says what is wrong


def test_a_secret_file_with_a_bad_key_is_named_but_not_shown(tmp_path: Path) -> None:
    key = write(tmp_path / "key", f"{SECRET} with spaces\n")
    with pytest.raises(
        ValueError, match="ASKSTREAM_LLM_API_KEY_FILE: must be printable ASCII"
    ) as caught:
        Settings.from_env({"ASKSTREAM_LLM_API_KEY_FILE": str(key)})
    assert SECRET not in str(caught.value)


def test_a_secret_passed_to_the_class_is_not_shown_either() -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 (pydantic's ValidationError)
        Settings(llm_api_key=f"{SECRET} x", port=-1)
    assert SECRET not in str(caught.value)
