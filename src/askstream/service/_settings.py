"""The service's one settings object, read once from flags, variables and a ``.env`` file.

``Settings`` is a pydantic-settings model: each field is one declaration, its
type says how its text is checked, :func:`setting` gives its help line and its
row in ``docs/configuration.md`` (written by ``python -m
askstream.service._settings_doc``; a test fails when the two drift apart).
Where the values come from, in order, is ``_settings_sources.py``'s docstring.

To add a setting: declare it below in its group, e.g.
``log_format: Literal["text", "json"] = setting("text", "text, or json: an object a line")``
(a type from ``_settings_types.py`` when it needs a check of its own), then run
``python -m askstream.service._settings_doc`` to update the docs' table. The
flag, the variable, the ``--help`` line and the error messages follow from the
declaration.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._identity import parse_tokens, read_tokens_file
from ._settings_sources import WHOLE, describe, gather, setting, variable
from ._settings_types import (
    ApiKey,
    Count,
    Delay,
    HttpUrl,
    LogFormat,
    LogLevel,
    Names,
    Origins,
    Overrides,
    Port,
    RedisUrl,
    Seconds,
    Size,
    Temperature,
)

__all__ = ["Settings"]

_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 (compared with, never bound)


def _whole(message: str) -> PydanticCustomError:
    """A check across settings, whose message names them itself."""
    return PydanticCustomError(WHOLE, "{message}", {"message": message})


def _label(info: ValidationInfo, name: str) -> str:
    labels = info.context if isinstance(info.context, Mapping) else {}
    return str(labels.get(name, variable(name)))


class Settings(BaseSettings):
    """Everything the service can be told, with the embedded defaults.

    Build it with :meth:`from_env` (what ``askstream serve`` and
    ``create_app()`` do): flags passed as ``overrides`` win over ``ASKSTREAM_*``
    variables, which win over the ``.env`` file, which wins over the defaults.
    ``Settings(...)`` itself takes only what it is given: code and tests that
    build one never pick up the environment or a ``.env`` lying around.
    ``docs/configuration.md`` has the table of flags, variables and defaults.

    >>> settings = Settings.from_env({"ASKSTREAM_PORT": "9000"}, demo_delay=0.0)
    >>> settings.port, settings.demo_delay, settings.backend
    (9000, 0.0, 'demo')
    >>> settings.database
    'sqlite+aiosqlite:///data/askstream.db'
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,  # "nan" seconds is a typo, not a timeout
        hide_input_in_errors=True,  # a ValidationError's text never shows a secret
    )

    env_file: Path | None = setting(
        None,
        "file of NAME=value lines read under the environment (unset: ./.env if there is one)",
        doc="a file of `NAME=value` lines (the names of this table; `#` comments, quotes as "
        "in a shell; no `${VAR}` expansion), read under the environment: a variable set in "
        "both wins, and a flag over both. `/dev/null` reads none. The file's own "
        "`ASKSTREAM_ENV_FILE` is ignored",
        unset="unset: `.env` in the working directory, when there is one",
    )
    host: str = setting(
        "127.0.0.1",
        "interface to listen on (0.0.0.0: every one)",
        doc="interface to listen on; `0.0.0.0` for every one",
    )
    port: Port = setting(8000, "TCP port to listen on")
    data_dir: Path = setting(
        Path("data"),
        "folder for the SQLite file (made if missing)",
        doc="folder for the SQLite file, made if missing (relative to the working directory)",
    )
    database_url: str | None = setting(
        None,
        "SQLAlchemy URL of the chat history: sqlite+aiosqlite:///... or "
        "postgresql+asyncpg://...; unset: data_dir/askstream.db",
        doc="SQLAlchemy URL of the chat history: `sqlite+aiosqlite:///path.db` or "
        "`postgresql+asyncpg://user:password@host:5432/db`; its schema is upgraded on start "
        "(see `--db-upgrade`)",
        unset="unset: `sqlite+aiosqlite:///<data-dir>/askstream.db`",
    )
    db_upgrade: bool = setting(
        True,
        "upgrade the database's schema at start (as `askstream db upgrade`); "
        "false: refuse to start unless it is at the newest",
        doc="bring the database's schema to the newest revision at start, as `askstream db "
        "upgrade` does (an empty database gets every table); `false`: refuse to start unless "
        "the schema is already the newest, for deployments that run `askstream db upgrade` as "
        "a step of their own. See [deploy.md](deploy.md#upgrading-the-database)",
    )
    llm_url: HttpUrl | None = setting(
        None,
        "OpenAI-compatible API, base URL (https://api.openai.com/v1) or full "
        "/chat/completions URL; unset: the offline demo model",
        doc="an OpenAI-compatible API: its base URL (`https://api.openai.com/v1`, "
        "`http://localhost:11434/v1` for Ollama, `http://localhost:8000/v1` for vLLM or "
        "llama.cpp's server, `http://localhost:1234/v1` for LM Studio) or the full "
        "`.../chat/completions` URL; a bare `http://host:port` gets `/v1/chat/completions`. "
        "`OPENAI_BASE_URL` is read only once a model is set, so that one exported for other "
        "tools does not stop the demo",
        unset="unset: the offline demo model",
        fallback="OPENAI_BASE_URL",
        fallback_with="llm_model",
    )
    llm_model: str | None = setting(
        None,
        "model name sent to the API; required with llm_url",
        doc="the model name sent to the API (`gpt-4o-mini`, `llama3.2`, ...); required with "
        "an LLM URL",
    )
    llm_api_key: ApiKey | None = setting(
        None,
        "sent as Authorization: Bearer; no flag, so it stays out of `ps`",
        doc="sent as `Authorization: Bearer <key>`; a variable only, so the key stays out of "
        "`ps` and shell history. Prefer `ASKSTREAM_LLM_API_KEY_FILE`, a file holding the key "
        "(a container's secret), so it is not in the environment either",
        flag=False,
        secret=True,
        fallback="OPENAI_API_KEY",
    )
    llm_connect_timeout: Seconds = setting(
        10.0,
        "seconds to connect to the API",
        doc="seconds to connect to the API; past it the ask is 502",
    )
    llm_read_timeout: Seconds = setting(
        60.0,
        "seconds the API may stay silent, before its first byte and between chunks",
        doc="seconds the API may stay silent, before its first byte and between chunks; past "
        "it the ask is 502 (before the first piece) or ends with `event: error` (after)",
    )
    llm_attempts: Size = setting(
        3,
        "requests made for one answer at most: a 429, 5xx or failed connection before the "
        "first piece is asked again",
        doc="requests made for one answer at most: an answer refused with `429` or a `5xx` "
        "(also `408`, `409`), or whose connection failed, is asked again while the model has "
        "sent nothing, never after its first piece (the question would be answered twice). "
        "`1`: never again",
    )
    llm_retry_delay: Seconds = setting(
        0.5,
        "seconds before the first retry; doubled for each next one, with jitter",
        doc="seconds before the first retry, doubled for each next one; each wait is drawn "
        "from its upper half (jitter), so that instances turned away together do not return "
        "together. A `Retry-After` from the API (seconds or an HTTP date) is waited instead",
    )
    llm_retry_max_delay: Delay = setting(
        8.0,
        "longest wait before a retry, a Retry-After included",
        doc="longest wait before a retry, a `Retry-After` included (a longer one is cut to "
        "this); the ask waits for its first piece meanwhile",
    )
    # -- what the model is asked (docs/api.md, "Model settings") --
    system_prompt: str | None = setting(
        None,
        "system message sent before every conversation; also ASKSTREAM_SYSTEM_PROMPT_FILE",
        doc="a system message sent first in every conversation, on every door. "
        "`ASKSTREAM_SYSTEM_PROMPT_FILE` names a file holding it (stripped), for a long one",
        unset="unset: none",
        secret_file=True,
    )
    temperature: Temperature | None = setting(
        None,
        "temperature sent to the model (0-2) unless the request sets its own",
        doc="the temperature (`0` to `2`) sent to the model, unless a request sets its own "
        "(see `--request-overrides`)",
        unset="unset: the model's own",
    )
    max_tokens: Size | None = setting(
        None,
        "most tokens an answer may have, unless the request sets its own",
        doc="the most tokens an answer may have (`max_tokens`), unless a request sets its "
        "own (see `--request-overrides`); an answer cut by it ends with finishReason `length`",
        unset="unset: the model's own",
    )
    request_overrides: Overrides = setting(
        ("temperature", "max_tokens"),
        "what a request may set for itself: temperature, max_tokens, system (comma-separated; "
        "none: nothing)",
        doc="what a request may set for itself, of `temperature`, `max_tokens` and `system` "
        "(comma-separated; `none`: nothing). `POST /api/ask` answers `400` to a field not "
        "allowed; `/v1/chat/completions` ignores it (OpenAI clients send a temperature of "
        "their own accord). With `system`, a request's own system prompt replaces "
        "`--system-prompt`; without, the server's comes first. See "
        "[api.md](api.md#model-settings)",
    )
    demo_delay: Delay = setting(
        0.03,
        "seconds between the demo model's words",
        doc="seconds between the demo model's words; `0` streams at once",
    )
    max_body_size: Size = setting(
        64 * 1024,
        "largest request body in bytes; larger is 413",
        doc="largest request body in bytes (64 KiB); a larger one is 413",
    )
    context_messages: Count = setting(
        50,
        "earlier messages of a chat sent to the model with a question",
        doc="how many earlier messages of a chat go to the model with a question (questions, "
        "and answers that completed)",
    )
    context_tokens: Size | None = setting(
        None,
        "token budget of what goes to the model (estimated as characters / 4); the oldest "
        "turns are dropped to fit",
        doc="the most tokens of conversation sent to the model, estimated without a "
        "tokenizer as characters / 4 plus 4 a message: the oldest turns are dropped until it "
        "fits; the system prompt and the question are always sent. Leave room for the answer "
        "(`--max-tokens`) in the model's context window",
        unset="unset: only `--context-messages` limits it",
    )
    save_interval: Seconds = setting(
        1.0,
        "seconds between saves of answers still streaming",
        doc="seconds between saves of answers still streaming (all of them in one "
        "transaction); an answer is also saved when it ends",
    )
    heartbeat: Seconds = setting(
        15.0,
        "seconds between keep-alive comments on a quiet stream",
        doc="seconds between keep-alive comments on a stream with nothing to say, so proxies "
        "keep it open",
    )
    stream_retention: Delay = setting(
        3600.0,
        "seconds a finished answer's stream stays resumable",
        doc="seconds a finished answer's stream stays resumable at `GET "
        "/api/streams/{messageId}`; after that it is `410 Gone` (for a week, then `404`); the "
        "history keeps the answer for ever",
    )
    # -- the stream log in Redis (docs/deploy.md) --
    redis_url: RedisUrl | None = setting(
        None,
        "Redis for the stream log, shared by several instances: redis://host:6379/0; "
        "unset: in this process's memory",
        doc="Redis (7 or newer) holding the stream log, so that several instances serve every "
        "answer: `redis://host:6379/0`, `rediss://user:password@host:6380/0`, "
        "`unix:///run/redis.sock`. See [deploy.md](deploy.md)",
        unset="unset: the stream log lives in this process's memory",
    )
    redis_prefix: str = setting(
        "askstream:",
        "prefix of every Redis key askstream writes",
        doc="prefix of every Redis key askstream writes, so that several deployments can "
        "share one Redis",
    )
    stream_max_events: Size = setting(
        10_000,
        "events kept per stream in Redis (XADD MAXLEN ~); older ones cannot be resumed",
        doc="events kept per answer in Redis (`XADD MAXLEN ~`, so a few more may stay); a "
        "resume from before the oldest kept one is `410`",
    )
    lease_ttl: Seconds = setting(
        5.0,
        "seconds after an instance dies before readers of its answers get error 503 (Redis)",
        doc="Redis: seconds an instance's lease on its answers outlives its last renewal. When "
        "an instance dies, its answers' readers get `event: error` with code `503` within "
        "about `lease-ttl` + `lease-renew` / 2 seconds, and the messages are stored as "
        "`failed`. Also how long a reader waits on an unreachable Redis, or on a stream that "
        "vanished from it, before it gets `error` 503",
    )
    lease_renew: Seconds = setting(
        2.0,
        "seconds between an instance's lease renewals; at most half of lease_ttl (Redis)",
        doc="Redis: seconds between an instance's renewals of its leases (one round trip for "
        "all of them); at most half of `lease-ttl`. Every instance also looks for lapsed "
        "leases every `lease-renew` / 2 seconds",
    )
    shutdown_timeout: Delay = setting(
        10.0,
        "on SIGTERM or Ctrl+C, seconds answers in flight get to finish; then they are "
        "stored `cancelled` and open streams end with error 503 (resume elsewhere)",
        doc="on SIGTERM or Ctrl+C, seconds answers in flight get to finish (under `serve` and "
        "plain uvicorn alike); then they are stored `cancelled` and open streams end with "
        "`error` 503 that says to resume; the process exits about a second later",
    )
    log_level: LogLevel = setting(
        "info",
        "critical, error, warning, info or debug",
        doc="`critical`, `error`, `warning`, `info` or `debug`; `info` logs one line per "
        "request and per answer, `warning` only what needs a look",
    )
    # -- the log's form (docs/deploy.md, "Logs"; _logs.py) --
    log_format: LogFormat = setting(
        "text",
        "text (readable lines) or json (one JSON object a line, for log collectors)",
        doc="`text`: readable lines, `LEVEL logger: message [request=... chat=... "
        "message=...]`; `json`: one JSON object a line (`time`, `level`, `logger`, "
        "`message`, `request_id`, `chat_id`, `message_id`, `exc`, ...) for a log collector. "
        "Under plain `uvicorn --factory`, `json` takes over the process's logging; `text` "
        "leaves uvicorn's as it is. See [deploy.md](deploy.md#logs)",
    )
    # -- who may ask (docs/security.md) --
    tokens: str | None = setting(
        None,
        "comma-separated user:token pairs; with tokens every API call needs one",
        doc="bearer tokens for programs and people: `alice:TOKEN,bob:TOKEN` (user names of "
        "letters, digits and `._@-`; tokens of 16 or more characters without spaces or "
        "commas). With any token configured, every API call needs `Authorization: Bearer "
        "<token>` and anonymous browser sessions are off. A variable only: tokens stay out of "
        "`ps`. See [security.md](security.md)",
        flag=False,
        secret=True,
        secret_file=False,  # ASKSTREAM_TOKENS_FILE is a setting of its own, in its own form
    )
    tokens_file: Path | None = setting(
        None,
        "file of 'user token' lines (the form to prefer)",
        doc="a file of `user token` lines (`#` comments allowed): the form to prefer, readable "
        "by the service's user only. Combined with `ASKSTREAM_TOKENS`; a user or token in "
        "both stops the start",
    )
    secret_key: str | None = setting(
        None,
        "signs the page's session cookies; unset: made once and kept in data_dir/secret_key",
        doc="signs the anonymous session cookies of the page. Several instances behind one "
        "balancer must share one value, or a browser's session is unknown on the other "
        "instance",
        unset="unset: made once and kept in `<data-dir>/secret_key` (mode 0600)",
        flag=False,
        secret=True,
    )
    allowed_hosts: Names = setting(
        (),
        "Host names the service answers to (* for any); unset: loopback names and --host",
        doc="the `Host` names the service answers to, comma-separated; `.example.com` matches "
        "a domain and its subdomains, `*` any. Any other `Host` is `400`: a page on a "
        "rebinding DNS name cannot reach a service on localhost",
        unset="unset: `localhost`, `127.0.0.1`, `[::1]` and `--host` (for `0.0.0.0`, also "
        "this machine's host name)",
    )
    cors_origins: Origins = setting(
        (),
        "origins whose pages may call the API from the browser (CORS); unset: none",
        doc="origins (`https://app.example.com`) whose pages may call the API from the "
        "browser, comma-separated: CORS preflights are answered for them, with "
        "`Authorization`, `Content-Type`, `Last-Event-ID` and `X-Request-ID` allowed and "
        "`Content-Location`, `X-Askstream-Resume` and `X-Request-ID` exposed. `*` allows any "
        "origin without "
        "credentials (cookies)",
        unset="unset: none",
    )
    api_docs: bool = setting(
        False,
        "serve the API's Swagger UI page at /docs",
        doc="serve the API's Swagger UI at `/docs` (a pinned copy shipped in the package; no "
        "third-party script). `/openapi.json` is always there",
    )
    insecure: bool = setting(
        False,
        "serve a non-loopback address with no tokens (anyone who reaches it can ask)",
        doc="let `askstream serve` listen on a non-loopback address with no tokens (it refuses "
        "otherwise); a warning is logged at every start. For a service behind something that "
        "already checks who asks",
    )
    # -- limits: what one client, one user and everyone together may hold (docs/deploy.md) --
    max_head_size: Size = setting(
        16 * 1024,
        "largest request head (request line and headers) in bytes; larger is 431",
        doc="largest request head (request line and headers) in bytes (16 KiB); a larger one "
        "is `431`, an unfinished one as soon as it passes the limit (see "
        "[deploy.md](deploy.md#limits))",
    )
    header_timeout: Seconds = setting(
        10.0,
        "seconds a client may take to send a request head; then 408 and the end",
        doc="seconds a client may take to send a request head (from connecting, or from the "
        "first byte of the next request on a kept-alive connection); then `408` and the "
        "connection ends. Needs askstream's protocol (`askstream serve` has it; under plain "
        "uvicorn pass `--http askstream.service:HttpProtocol`)",
    )
    body_timeout: Seconds = setting(
        10.0,
        "seconds a client may take to send a request body; then 408 and the end",
        doc="seconds a client may take to send a whole request body; then `408` and the "
        "connection ends",
    )
    max_connections: Size = setting(
        2048,
        "open connections per process (streams included); more are answered 503",
        doc="open connections per process, idle and streaming ones included; more are "
        "answered `503` with `Retry-After` and closed (without askstream's protocol: requests "
        "in progress)",
    )
    max_generations: Size = setting(
        256,
        "answers generating at once in this process; more asks are answered 503",
        doc="answers generating at once in this process (each one a model call); another ask "
        "is `503` with `Retry-After`",
    )
    max_user_generations: Size = setting(
        32,
        "answers one user may have generating at once in this process; more are 429",
        doc="answers one user may have generating at once in this process; another ask of "
        "theirs is `429` with `Retry-After`",
    )
    memory_store_max_bytes: Size = setting(
        256 * 1024 * 1024,
        "bytes the memory store may hold; oldest finished streams go first, "
        "a new ask is 503 while live ones fill it",
        doc="bytes the in-memory stream log may hold (256 MiB; each event counts its data and "
        "about 120 bytes of bookkeeping). Past it the oldest finished streams are dropped "
        "first (`410` for a late reader; the answer stays in the history); a new ask is `503` "
        "only while open streams fill it. With Redis, Redis's own `maxmemory` is the cap",
    )
    # -- processes (issue 14: all the cores); docs/deploy.md, "Several workers" --
    workers: Size = setting(
        1,
        "worker processes serving the port (askstream serve); more than 1 needs "
        "ASKSTREAM_REDIS_URL, and /metrics adds up every worker",
        doc="worker processes `askstream serve` runs on one port (uvicorn's supervisor; one "
        "per core is the usual choice). More than 1 needs `ASKSTREAM_REDIS_URL` (with the "
        "memory store `serve` exits with status 2), and `GET /metrics` adds up every "
        "worker's counts. See [deploy.md](deploy.md#several-workers-on-one-machine)",
    )

    # -- checks across settings: each on the later field, so that pydantic reports it
    # -- together with every other wrong setting (info.data holds the earlier valid ones)

    @field_validator("llm_model")
    @classmethod
    def _model_with_url(cls, model: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("llm_url") is not None and not model:
            raise _whole(
                f"{_label(info, 'llm_url')} is set but ASKSTREAM_LLM_MODEL is not: an "
                "OpenAI-compatible back end needs a model name (--llm-model)"
            )
        return model

    @field_validator("lease_renew")
    @classmethod
    def _renew_within_ttl(cls, renew: float, info: ValidationInfo) -> float:
        ttl = info.data.get("lease_ttl")
        if ttl is not None and renew > ttl / 2:
            raise _whole(
                f"{_label(info, 'lease_renew')} ({renew}) must be at most half of "
                f"{_label(info, 'lease_ttl')} ({ttl}), so that one slow renewal does not lose "
                "a live instance's answers"
            )
        return renew

    @field_validator("tokens")
    @classmethod
    def _tokens_parse(cls, tokens: str | None, info: ValidationInfo) -> str | None:
        if tokens:
            try:
                parse_tokens(tokens, _label(info, "tokens"))  # names users, never tokens
            except ValueError as exc:
                raise _whole(str(exc)) from None
        return tokens

    @field_validator("tokens_file")
    @classmethod
    def _tokens_file_reads(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        try:
            _user_tokens(info.data.get("tokens"), path)
        except ValueError as exc:
            raise _whole(str(exc)) from None
        return path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``Settings(...)`` is given: :meth:`from_env` reads the rest."""
        return (init_settings,)

    def user_tokens(self) -> dict[str, str]:
        """User name to token, from ``tokens`` and ``tokens_file`` together."""
        return _user_tokens(self.tokens, self.tokens_file)

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
        """Defaults, then the ``.env`` file, then ``ASKSTREAM_*`` variables from
        ``environ`` (``os.environ``), then ``overrides`` (the command line's flags;
        ``None`` values are skipped). ``overrides`` take the flags' text or typed values.

        Raises ``ValueError`` listing every wrong setting, one a line, each naming
        where its value came from (flag, variable, file) and, unless it is a secret,
        the value.
        """
        fields = cls.model_fields
        found = gather(fields, os.environ if environ is None else environ, overrides)
        problems = list(found.problems)
        try:
            settings = cls.model_validate(found.values, context=found.labels)
        except ValidationError as exc:
            problems += [
                (_where(e["loc"]), describe(e, fields, found.labels)) for e in exc.errors()
            ]
        if problems:
            order = list(fields)
            problems.sort(key=lambda p: order.index(p[0]) if p[0] in order else len(order))
            lines = [text for _, text in problems]
            if len(lines) == 1:
                raise ValueError(lines[0])
            raise ValueError(f"{len(lines)} settings are wrong:\n  " + "\n  ".join(lines))
        return settings


def _where(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]) if loc else ""


def _user_tokens(tokens: str | None, tokens_file: Path | None) -> dict[str, str]:
    found = parse_tokens(tokens) if tokens else {}
    if tokens_file is not None:
        for user, token in read_tokens_file(tokens_file).items():
            if user in found:
                raise ValueError(
                    f"user {user!r} has a token in both ASKSTREAM_TOKENS and "
                    "ASKSTREAM_TOKENS_FILE: keep one"
                )
            if token in found.values():
                raise ValueError("ASKSTREAM_TOKENS and ASKSTREAM_TOKENS_FILE share a token")
            found[user] = token
    return found
