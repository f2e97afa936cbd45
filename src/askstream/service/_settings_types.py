"""The types of settings: each says how a setting's text is checked.

A check raises ``ValueError`` with the reason only ("must be above 0, not 0");
``Settings.from_env`` puts the name of the flag, variable or file it came from
in front. A new kind of setting gets its ``Annotated`` type here.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OVERRIDES",
    "ApiKey",
    "Count",
    "Delay",
    "HttpUrl",
    "LogFormat",
    "LogLevel",
    "Names",
    "Origins",
    "Overrides",
    "Port",
    "RedisUrl",
    "Seconds",
    "Size",
    "Temperature",
]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")  # the log's form (_logs.py)
#: What a request may be allowed to set for itself (``request_overrides``).
OVERRIDES = ("temperature", "max_tokens", "system")
_Number = TypeVar("_Number", int, float)


def _above_zero(value: _Number) -> _Number:
    if value <= 0:
        raise ValueError(f"must be above 0, not {value!r}")
    return value


def _not_negative(value: _Number) -> _Number:
    if value < 0:
        raise ValueError(f"must not be negative, not {value!r}")
    return value


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"is not a TCP port (0-65535): {value!r}")
    return value


def _names(value: object) -> object:
    # A variable or a flag says "a,b"; Python code may pass a tuple or a list.
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
            raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
    return origins


def _overrides(names: tuple[str, ...]) -> tuple[str, ...]:
    # "none", since an empty variable counts as unset (the default).
    if names == ("none",):
        return ()
    for name in names:
        if name not in OVERRIDES:
            raise ValueError(f"{name!r} is none of {', '.join(OVERRIDES)} (or none alone)")
    return tuple(dict.fromkeys(names))


def _temperature(value: float) -> float:
    # OpenAI's range; other servers' are narrower, never wider.
    if not 0 <= value <= 2:
        raise ValueError(f"must be from 0 to 2, not {value!r}")
    return value


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {text!r}")
    return text.lower()


def _log_format(text: str) -> str:
    if text.lower() not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, not {text!r}")
    return text.lower()


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, not {url!r}")
    return url


def _redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, not {url!r}")
    return url


def _api_key(key: str) -> str:
    # It goes into a header as it is (RFC 9110 5.5: visible ASCII); the value is never
    # part of a message.
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise ValueError("must be printable ASCII without spaces (the key is not shown)")
    return key


Seconds = Annotated[float, AfterValidator(_above_zero)]  # a timeout or an interval
Delay = Annotated[float, AfterValidator(_not_negative)]  # may be 0: at once
Size = Annotated[int, AfterValidator(_above_zero)]  # bytes or a count that is a limit
Count = Annotated[int, AfterValidator(_not_negative)]  # may be 0: none
Port = Annotated[int, AfterValidator(_port)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]  # "a,b" as ("a", "b")
Origins = Annotated[tuple[str, ...], BeforeValidator(_names), AfterValidator(_origins)]
Overrides = Annotated[tuple[str, ...], BeforeValidator(_names), AfterValidator(_overrides)]
Temperature = Annotated[float, AfterValidator(_temperature)]
LogLevel = Annotated[str, AfterValidator(_log_level)]
LogFormat = Annotated[str, AfterValidator(_log_format)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
ApiKey = Annotated[str, AfterValidator(_api_key)]
