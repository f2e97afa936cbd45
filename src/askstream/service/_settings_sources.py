"""Where each setting's text comes from, and how a wrong one is reported.

Highest first (``docs/configuration.md``):

1. the command line's flags (``overrides``);
2. the environment: ``ASKSTREAM_<NAME>``, and for a secret ``ASKSTREAM_<NAME>_FILE``
   (the file's content, stripped), so the secret itself need not sit in the environment;
3. the ``.env`` file, the same names: ``--env-file`` / ``ASKSTREAM_ENV_FILE``, else
   ``.env`` in the working directory when there is one;
4. a setting's fallback from 2, then 3: the names OpenAI's own clients read
   (``OPENAI_API_KEY``, ``OPENAI_API_KEY_FILE``, ``OPENAI_BASE_URL``);
5. the defaults declared on ``Settings``.

This module only reads text and says where it came from: ``--port``,
``ASKSTREAM_PORT``, ``ASKSTREAM_PORT in .env``... pydantic checks the values
afterwards, and :func:`describe` turns each of its errors into one line that
names that place, so that the operator knows what to fix. pydantic-settings'
own sources are not used for the reading: they read ``os.environ`` only (tests
and ``Settings.from_env`` pass a mapping), cannot say which name a value came
from, and would take a fallback from the environment over the real name in
``.env``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

__all__ = ["Gathered", "Meta", "describe", "flag", "gather", "meta", "setting", "variable"]

PREFIX = "ASKSTREAM_"
DEFAULT_ENV_FILE = Path(".env")
# A secret's file holds one short line; a bigger one is the wrong file.
_SECRET_FILE_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Meta:
    """What a field declares besides its type and default (see :func:`setting`)."""

    help: str
    doc: str
    unset: str | None
    flag: bool
    secret: bool
    secret_file: bool
    fallback: str | None
    fallback_with: str | None


def setting(
    default: Any,
    help: str,
    *,
    doc: str | None = None,
    unset: str | None = None,
    flag: bool = True,
    secret: bool = False,
    secret_file: bool | None = None,
    fallback: str | None = None,
    fallback_with: str | None = None,
) -> Any:
    """One setting's declaration: ``help`` is the line ``askstream serve --help``
    shows, ``doc`` the Markdown of its row in ``docs/configuration.md`` (default:
    ``help``), ``unset`` what the default column says when the default is empty.
    ``flag=False``: a variable only (secrets, so they stay out of ``ps``). A
    ``secret`` is kept out of ``repr`` and error messages, and is also read from
    the file named by ``<VARIABLE>_FILE`` unless ``secret_file=False``.
    ``fallback`` names a variable read when the setting is set nowhere, only once
    ``fallback_with`` (another setting) is set when that is given."""
    extra: dict[str, str | bool | None] = {
        "doc": doc or help,
        "unset": unset,
        "flag": flag,
        "secret": secret,
        "secret_file": secret if secret_file is None else secret_file,
        "fallback": fallback,
        "fallback_with": fallback_with,
    }
    return Field(default, description=help, repr=not secret, json_schema_extra=dict(extra))


def meta(info: FieldInfo) -> Meta:
    """The declaration :func:`setting` stored on a field."""
    extra = info.json_schema_extra
    assert isinstance(extra, dict), "every setting is declared with setting()"

    def text(key: str) -> str | None:
        value = extra.get(key)
        return value if isinstance(value, str) else None

    return Meta(
        help=info.description or "",
        doc=text("doc") or "",
        unset=text("unset"),
        flag=extra.get("flag") is True,
        secret=extra.get("secret") is True,
        secret_file=extra.get("secret_file") is True,
        fallback=text("fallback"),
        fallback_with=text("fallback_with"),
    )


def variable(name: str) -> str:
    """A setting's environment variable: ``llm_url`` is ``ASKSTREAM_LLM_URL``."""
    return PREFIX + name.upper()


def flag(name: str) -> str:
    """A setting's flag: ``llm_url`` is ``--llm-url``."""
    return "--" + name.replace("_", "-")


@dataclass(slots=True)
class Gathered:
    """The values found for ``Settings``, where each came from, and what could not
    be read (``(setting, message)``; those settings keep their defaults)."""

    values: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Layer:
    where: str  # "" for the environment, " in <file>" for the .env file
    variables: Mapping[str, str | None]


class _Refused:
    """A setting whose text was there but could not be used (the problem is recorded)."""


_REFUSED = _Refused()


def gather(
    fields: Mapping[str, FieldInfo], environ: Mapping[str, str], overrides: Mapping[str, Any]
) -> Gathered:
    """Read every field's text from ``overrides``, ``environ`` and the .env file."""
    found = Gathered()
    layers = [_Layer("", environ)]
    env_file = _env_file(environ, overrides, found)
    if env_file is not None:
        layers.append(env_file)
    refused: set[str] = set()
    for name, info in fields.items():
        if name == "env_file":
            continue  # read above: it says where the other ones are
        given = overrides.get(name)
        if given is not None:
            found.values[name] = given
            found.labels[name] = flag(name) if meta(info).flag else name
            continue
        value = _lookup(name, variable(name), meta(info).secret_file, layers, found)
        if isinstance(value, _Refused):
            refused.add(name)
        elif value is not None:
            found.values[name], found.labels[name] = value
    for name, info in fields.items():
        declared = meta(info)
        if declared.fallback is None or name in found.values or name in refused:
            continue
        if declared.fallback_with is not None and not found.values.get(declared.fallback_with):
            continue
        value = _lookup(name, declared.fallback, declared.secret_file, layers, found)
        if isinstance(value, tuple):
            found.values[name], found.labels[name] = value
    # Unknown names go on to pydantic, which refuses them as "not a setting".
    for name, given in overrides.items():
        if name not in fields and given is not None:
            found.values[name] = given
            found.labels[name] = name
    return found


def _env_file(
    environ: Mapping[str, str], overrides: Mapping[str, Any], found: Gathered
) -> _Layer | None:
    given = overrides.get("env_file")
    if given is not None:
        path, label = Path(given), flag("env_file")
    elif environ.get(variable("env_file")):
        path, label = Path(environ[variable("env_file")]), variable("env_file")
    elif DEFAULT_ENV_FILE.is_file():
        path, label = DEFAULT_ENV_FILE, str(DEFAULT_ENV_FILE)
    else:
        return None  # no .env here: nothing to read, and nothing wrong
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        found.problems.append(("env_file", f"{label}: cannot read {str(path)!r}: {_why(exc)}"))
        return None
    found.values["env_file"], found.labels["env_file"] = path, label
    # Values as written: no ${VAR} expansion, which would change a password holding "$".
    # parse_stream rather than dotenv_values, which only logs a line it cannot read.
    variables: dict[str, str | None] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # the line itself is not shown: it may hold a secret
            line = binding.original.line
            found.problems.append(("env_file", f"{path}, line {line}: not NAME=value"))
        elif binding.key is not None:
            variables[binding.key] = binding.value
    return _Layer(f" in {path}", variables)


def _lookup(
    setting: str, name: str, secret_file: bool, layers: list[_Layer], found: Gathered
) -> tuple[str, str] | _Refused | None:
    """``(text, label)`` of ``name`` (or ``name_FILE``) in the first layer that has it."""
    for layer in layers:
        text = layer.variables.get(name) or None  # an empty variable counts as unset
        path = (layer.variables.get(name + "_FILE") or None) if secret_file else None
        if text is not None and path is not None:
            found.problems.append(
                (setting, f"{name} and {name}_FILE are both set{layer.where}: keep one")
            )
            return _REFUSED
        if path is not None:
            label = f"{name}_FILE{layer.where}"
            try:
                return _read_secret(Path(path)), label
            except ValueError as exc:
                found.problems.append((setting, f"{label}: {exc}"))
                return _REFUSED
        if text is not None:
            return text, f"{name}{layer.where}"
    return None


def _read_secret(path: Path) -> str:
    # Errors name the file, never a byte of what is in it.
    try:
        with path.open("rb") as file:
            data = file.read(_SECRET_FILE_MAX + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {_why(exc)}") from None
    if len(data) > _SECRET_FILE_MAX:
        raise ValueError(f"{str(path)!r} is larger than {_SECRET_FILE_MAX // 1024} KiB")
    try:
        # Stripped: `echo key > file` and editors end the file with a newline.
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{str(path)!r} is empty")
    return text


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return exc.strerror or str(exc)


# pydantic's own wording, said as the rest of the messages say it.
_REASONS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "path_type": "must be a path",
    "extra_forbidden": "is not a setting",
}
#: The error type of a check that wrote its whole message, names included.
WHOLE = "askstream_setting"


def describe(
    error: ErrorDetails, fields: Mapping[str, FieldInfo], labels: Mapping[str, str]
) -> str:
    """One line for one pydantic error: where the value came from, what is wrong,
    and the value itself, unless the setting is a secret."""
    if error["type"] == WHOLE:
        return error["msg"]
    name = str(error["loc"][0]) if error["loc"] else ""
    info = fields.get(name)
    label = labels.get(name) or (variable(name) if info is not None else name)
    if error["type"] == "value_error":
        # Our own checks: the reason is theirs, and they show a value where it helps.
        return f"{label}: {error.get('ctx', {}).get('error', error['msg'])}"
    reason = _REASONS.get(error["type"], error["msg"][:1].lower() + error["msg"][1:])
    if info is not None and not meta(info).secret and name in labels:
        reason += f", not {error['input']!r}"
    return f"{label}: {reason}"
