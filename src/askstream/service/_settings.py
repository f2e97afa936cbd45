"""The service's one settings object, read once from flags and ``ASKSTREAM_*`` variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._identity import parse_tokens, read_tokens_file

__all__ = ["Settings"]

_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 (compared with, never bound)

_DATA_DIR = Path("data")
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_LOG_FORMATS = ("text", "json")


def _positive(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        value = parse(text)
        if value <= 0:
            raise ValueError(f"must be above 0, not {text!r}")
        return value

    return check


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must not be negative, not {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must not be negative, not {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"is not a TCP port: {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _origins(text: str) -> tuple[str, ...]:
    origins = _names(text)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
            raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
    return origins


def _flag(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, not {text!r}")


def _log_level(text: str) -> str:
    if text.lower() not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, not {text!r}")
    return text.lower()


def _log_format(text: str) -> str:
    if text.lower() not in _LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(_LOG_FORMATS)}, not {text!r}")
    return text.lower()


def _setting(default: Any, meaning: str, *, flag: bool = True, secret: bool = False) -> Any:
    # The help text is the one description of a setting: --help and
    # docs/configuration.md (checked by a test) both show it.
    return dataclasses.field(
        default=default, repr=not secret, metadata={"help": meaning, "flag": flag}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service can be told, with the embedded defaults.

    Build it with :meth:`from_env` (what ``askstream serve`` and
    ``create_app()`` do): flags passed as ``overrides`` win over ``ASKSTREAM_*``
    variables, which win over the defaults. ``docs/configuration.md`` has the
    table of flags, variables and defaults.

    >>> settings = Settings.from_env({"ASKSTREAM_PORT": "9000"}, demo_delay=0.0)
    >>> settings.port, settings.demo_delay, settings.backend
    (9000, 0.0, 'demo')
    >>> settings.database
    'sqlite+aiosqlite:///data/askstream.db'
    """

    host: str = _setting("127.0.0.1", "interface to listen on (0.0.0.0: every one)")
    port: int = _setting(8000, "TCP port to listen on")
    data_dir: Path = dataclasses.field(  # spelled out: ruff's RUF009 cannot see a Path is final
        default=_DATA_DIR,
        metadata={"help": "folder for the SQLite file (made if missing)", "flag": True},
    )
    database_url: str | None = _setting(
        None,
        "SQLAlchemy URL of the chat history: sqlite+aiosqlite:///... or "
        "postgresql+asyncpg://...; unset: data_dir/askstream.db",
    )
    db_upgrade: bool = _setting(
        True,
        "upgrade the database's schema at start (as `askstream db upgrade`); "
        "false: refuse to start unless it is at the newest",
    )
    llm_url: str | None = _setting(
        None,
        "OpenAI-compatible API, base URL (https://api.openai.com/v1) or full "
        "/chat/completions URL; unset: the offline demo model",
    )
    llm_model: str | None = _setting(None, "model name sent to the API; required with llm_url")
    llm_api_key: str | None = _setting(
        None,
        "sent as Authorization: Bearer; no flag, so it stays out of `ps`",
        flag=False,
        secret=True,
    )
    llm_connect_timeout: float = _setting(10.0, "seconds to connect to the API")
    llm_read_timeout: float = _setting(
        60.0, "seconds the API may stay silent, before its first byte and between chunks"
    )
    demo_delay: float = _setting(0.03, "seconds between the demo model's words")
    max_body_size: int = _setting(64 * 1024, "largest request body in bytes; larger is 413")
    context_messages: int = _setting(
        50, "earlier messages of a chat sent to the model with a question"
    )
    save_interval: float = _setting(1.0, "seconds between saves of answers still streaming")
    heartbeat: float = _setting(15.0, "seconds between keep-alive comments on a quiet stream")
    stream_retention: float = _setting(3600.0, "seconds a finished answer's stream stays resumable")
    redis_url: str | None = _setting(
        None,
        "Redis for the stream log, shared by several instances: redis://host:6379/0; "
        "unset: in this process's memory",
    )
    redis_prefix: str = _setting("askstream:", "prefix of every Redis key askstream writes")
    stream_max_events: int = _setting(
        10_000, "events kept per stream in Redis (XADD MAXLEN ~); older ones cannot be resumed"
    )
    lease_ttl: float = _setting(
        5.0, "seconds after an instance dies before readers of its answers get error 503 (Redis)"
    )
    lease_renew: float = _setting(
        2.0, "seconds between an instance's lease renewals; at most half of lease_ttl (Redis)"
    )
    shutdown_timeout: float = _setting(
        10.0,
        "on SIGTERM or Ctrl+C, seconds answers in flight get to finish; then they are "
        "stored `cancelled` and open streams end with error 503 (resume elsewhere)",
    )
    log_level: str = _setting("info", "critical, error, warning, info or debug")
    # -- the log's form (docs/deploy.md, "Logs") --
    log_format: str = _setting(
        "text", "text (readable lines) or json (one JSON object a line, for log collectors)"
    )
    # -- who may ask (docs/security.md) --
    tokens: str | None = _setting(
        None,
        "comma-separated user:token pairs; with tokens every API call needs one",
        flag=False,
        secret=True,
    )
    tokens_file: Path | None = dataclasses.field(  # spelled out, as data_dir (RUF009)
        default=None,
        metadata={"help": "file of 'user token' lines (the form to prefer)", "flag": True},
    )
    secret_key: str | None = _setting(
        None,
        "signs the page's session cookies; unset: made once and kept in data_dir/secret_key",
        flag=False,
        secret=True,
    )
    allowed_hosts: tuple[str, ...] = _setting(
        (), "Host names the service answers to (* for any); unset: loopback names and --host"
    )
    cors_origins: tuple[str, ...] = _setting(
        (), "origins whose pages may call the API from the browser (CORS); unset: none"
    )
    api_docs: bool = _setting(False, "serve the API's Swagger UI page at /docs")
    insecure: bool = _setting(
        False, "serve a non-loopback address with no tokens (anyone who reaches it can ask)"
    )
    # Limits: what one client, one user and everyone together may hold (docs/deploy.md).
    max_head_size: int = _setting(
        16 * 1024, "largest request head (request line and headers) in bytes; larger is 431"
    )
    header_timeout: float = _setting(
        10.0, "seconds a client may take to send a request head; then 408 and the end"
    )
    body_timeout: float = _setting(
        10.0, "seconds a client may take to send a request body; then 408 and the end"
    )
    max_connections: int = _setting(
        2048, "open connections per process (streams included); more are answered 503"
    )
    max_generations: int = _setting(
        256, "answers generating at once in this process; more asks are answered 503"
    )
    max_user_generations: int = _setting(
        32, "answers one user may have generating at once in this process; more are 429"
    )
    memory_store_max_bytes: int = _setting(
        256 * 1024 * 1024,
        "bytes the memory store may hold; oldest finished streams go first, "
        "a new ask is 503 while live ones fill it",
    )

    def __post_init__(self) -> None:
        if self.llm_url is not None and not self.llm_model:
            raise ValueError(
                "ASKSTREAM_LLM_URL is set but ASKSTREAM_LLM_MODEL is not: "
                "an OpenAI-compatible back end needs a model name"
            )
        if self.llm_url is not None and not self.llm_url.startswith(("http://", "https://")):
            raise ValueError(f"ASKSTREAM_LLM_URL must be an http(s) URL, not {self.llm_url!r}")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                f"ASKSTREAM_REDIS_URL must be a redis://, rediss:// or unix:// URL, "
                f"not {self.redis_url!r}"
            )
        self.user_tokens()  # a malformed token list or file stops the start, with its reason
        if self.lease_renew > self.lease_ttl / 2:
            raise ValueError(
                "ASKSTREAM_LEASE_RENEW must be at most half of ASKSTREAM_LEASE_TTL, so that "
                "one slow renewal does not lose a live instance's answers"
            )

    def user_tokens(self) -> dict[str, str]:
        """User name to token, from ``tokens`` and ``tokens_file`` together."""
        tokens = parse_tokens(self.tokens) if self.tokens else {}
        if self.tokens_file is not None:
            for user, token in read_tokens_file(self.tokens_file).items():
                if user in tokens:
                    raise ValueError(
                        f"user {user!r} has a token in both ASKSTREAM_TOKENS and "
                        "ASKSTREAM_TOKENS_FILE: keep one"
                    )
                if token in tokens.values():
                    raise ValueError("ASKSTREAM_TOKENS and ASKSTREAM_TOKENS_FILE share a token")
                tokens[user] = token
        return tokens

    @property
    def hosts(self) -> tuple[str, ...]:
        """The ``Host`` names served: ``allowed_hosts``, else the loopback names and
        ``host`` (for a wildcard bind, also this machine's own names)."""
        if self.allowed_hosts:
            return self.allowed_hosts
        names = ["localhost", "127.0.0.1", "[::1]"]
        if self.host in _WILDCARDS:
            names += [socket.gethostname().lower(), socket.getfqdn().lower()]
        elif ":" in self.host:
            names.append(f"[{self.host.strip('[]').lower()}]")
        else:
            names.append(self.host.lower())
        return tuple(dict.fromkeys(names))

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is reachable from this machine only."""
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return self.host.lower() == "localhost"

    @property
    def backend(self) -> str:
        """``"openai"`` when an LLM URL is configured, else ``"demo"``."""
        return "demo" if self.llm_url is None else "openai"

    @property
    def store(self) -> str:
        """``"redis"`` when a Redis URL is configured, else ``"memory"``."""
        return "memory" if self.redis_url is None else "redis"

    @property
    def database(self) -> str:
        """The SQLAlchemy URL in force: ``database_url`` or the SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'askstream.db'}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        """Defaults, then ``ASKSTREAM_*`` variables from ``environ`` (``os.environ``),
        then ``overrides`` (the command line's flags; ``None`` values are skipped).

        Raises ``ValueError`` naming the variable for a value that does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = "ASKSTREAM_" + field.name.upper()
            text = env.get(name)
            if text is None or text == "":
                continue
            try:
                values[field.name] = _PARSERS[field.name](text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": str,
    "port": _port,
    "data_dir": Path,
    "database_url": str,
    "db_upgrade": _flag,
    "llm_url": str,
    "llm_model": str,
    "llm_api_key": str,
    "llm_connect_timeout": _positive(float),
    "llm_read_timeout": _positive(float),
    "demo_delay": _not_negative,
    "max_body_size": _positive(int),
    "context_messages": _count,
    "save_interval": _positive(float),
    "heartbeat": _positive(float),
    "stream_retention": _not_negative,
    "redis_url": str,
    "redis_prefix": str,
    "stream_max_events": _positive(int),
    "lease_ttl": _positive(float),
    "lease_renew": _positive(float),
    "shutdown_timeout": _not_negative,
    "log_level": _log_level,
    "log_format": _log_format,
    "tokens": str,
    "tokens_file": Path,
    "secret_key": str,
    "allowed_hosts": _names,
    "cors_origins": _origins,
    "api_docs": _flag,
    "insecure": _flag,
    "max_head_size": _positive(int),
    "header_timeout": _positive(float),
    "body_timeout": _positive(float),
    "max_connections": _positive(int),
    "max_generations": _positive(int),
    "max_user_generations": _positive(int),
    "memory_store_max_bytes": _positive(int),
}
