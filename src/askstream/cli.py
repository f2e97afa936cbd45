"""The ``askstream`` command: ``askstream serve`` runs the service, ``askstream ask`` asks it.

    askstream serve [--host 127.0.0.1] [--port 8000] [--llm-url URL --llm-model NAME] ...
    askstream ask "Why is the sky blue?" [--chat ID] [--url http://127.0.0.1:8000] [--token T]
    askstream db upgrade [--database-url URL] [--data-dir DIR]

Every ``serve`` flag has an ``ASKSTREAM_*`` variable twin, also read from a ``.env``
file; flags win over variables, variables over the file. ``ask``
prints the answer as it arrives, then the chat's id on stderr (pass it to
``--chat`` to go on); on an error it prints the server's message and exits 1.

``ask`` and ``--help`` run on a base install (``pip install askstream``): only
``serve`` and ``db`` import the service, so only they need the ``service`` extra,
and without it they say so and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import logging.config
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import AskstreamError, ConnectError, ResponseError, TransportTimeout

if TYPE_CHECKING:
    from .service import Settings

__all__ = ["exposure_refusal", "main"]

DEFAULT_URL = "http://127.0.0.1:8000"
_ANY_HOST = {"0.0.0.0", "::", ""}  # noqa: S104 (names, compared with, never bound)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``serve``'s and ``db``'s flags only when ``command`` is one
    of them, since they come from the service's Settings (the ``service`` extra):
    ``--help`` and ``ask`` work on a base install."""
    parser = argparse.ArgumentParser(
        prog="askstream", description="Chat answers streamed as server-sent events."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the ask service",
        description="Run the ask service. Every flag can also be set by its ASKSTREAM_* "
        "variable (e.g. --llm-url is ASKSTREAM_LLM_URL) or in a .env file; flags win over "
        "variables, variables over the file (docs/configuration.md).",
    )
    db = commands.add_parser("db", help="look after the chat history's database")

    ask = commands.add_parser(
        "ask",
        help="ask a running service a question",
        description="Ask a question and print the answer as it streams in.",
    )
    ask.add_argument("question")
    ask.add_argument("--chat", metavar="ID", help="continue this chat (its id)")
    ask.add_argument(
        "--url",
        default=os.environ.get("ASKSTREAM_URL", DEFAULT_URL),
        help=f"the service (default: $ASKSTREAM_URL or {DEFAULT_URL})",
    )
    # Read in main(), not here: a default would print the token in --help.
    ask.add_argument(
        "--token",
        help="the bearer token of a service that requires one (default: $ASKSTREAM_TOKEN)",
    )

    if command == "serve":
        _serve_parser(serve)
    elif command == "db":
        _db_parser(db)
    return parser


def _serve_parser(serve: argparse.ArgumentParser) -> None:
    from .service import Settings
    from .service._settings_sources import flag, meta

    for name, field in Settings.model_fields.items():
        declared = meta(field)
        if not declared.flag:
            continue
        if field.default is False:  # a switch: given means on
            serve.add_argument(
                flag(name), action="store_const", const=True, default=None, help=declared.help
            )
            continue
        shown = "" if field.default in (None, ()) else f" (default: {_shown(field.default)})"
        # The text goes to Settings.from_env as it is, which checks every setting at
        # once and names each wrong one (exit status 2, as argparse's own errors).
        serve.add_argument(
            flag(name),
            default=None,  # None: not given, so the variable, the file or the default applies
            metavar=name.split("_")[-1].upper(),
            help=declared.help + shown,
        )


def _db_parser(db: argparse.ArgumentParser) -> None:
    from .service import Settings
    from .service._settings_sources import flag, meta

    actions = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = actions.add_parser(
        "upgrade",
        help="bring the database's schema to the newest revision",
        description="Bring the chat history's schema to the newest revision (an empty "
        "database gets every table). It reads the database as `serve` does: these flags, "
        "else ASKSTREAM_DATABASE_URL and ASKSTREAM_DATA_DIR, from the environment or the "
        ".env file. Safe to run while instances are serving, and again: an upgraded "
        "database is left alone.",
    )
    for name in ("data_dir", "database_url", "env_file"):
        upgrade.add_argument(
            flag(name),
            default=None,
            metavar=name.split("_")[-1].upper(),
            help=meta(Settings.model_fields[name]).help,
        )


#: What each command imports beyond a base install: ``ask`` and ``--help`` need
#: only the base dependencies (httpx, Starlette, anyio).
_EXTRA_MODULES = {
    "serve": ("uvicorn", "askstream.service"),
    "db": ("askstream.service._migrate",),
}


def _missing_extra(command: str | None) -> str | None:
    """The first module ``command`` needs that is not installed, or ``None``."""
    for module in _EXTRA_MODULES.get(command or "", ()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] == "askstream":
                raise  # a module of ours missing is a broken install, not a missing extra
            return exc.name
    return None


def _shown(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``askstream`` command line; returns the exit status.

    Example::

        main(["ask", "Hi?", "--url", "http://127.0.0.1:8000"])
        Hello! ...
        0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word: the top level has no option but --help.
    command = argv[0] if argv else None
    missing = _missing_extra(command)
    if missing is not None:
        print(
            f"askstream: `askstream {command}` needs the service extra ({missing} is not "
            "installed): pip install 'askstream[service]'",
            file=sys.stderr,
        )
        return 2
    args = _parser(command).parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "db":
        return _db_upgrade(
            database_url=args.database_url, data_dir=args.data_dir, env_file=args.env_file
        )
    token = args.token or os.environ.get("ASKSTREAM_TOKEN") or None  # the flag wins
    return _ask(args.question, chat=args.chat, url=args.url, token=token)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .service import HttpProtocol, Settings, create_app
    from .service._logs import logging_config

    overrides = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        settings = Settings.from_env(None, **overrides)
    except ValueError as exc:
        print(f"askstream: {exc}", file=sys.stderr)
        return 2
    # The command is the application: it may configure logging (importing askstream never does).
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    refusal = exposure_refusal(settings)
    if refusal is not None:
        print(f"askstream: {refusal}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return _serve_workers(settings, overrides)

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # Our logging for uvicorn's loggers too, in every process it starts:
        # the same form, uvicorn's lifecycle lines and access log off (_logs.py).
        log_config=logging_config(settings.log_format, settings.log_level),
        log_level=None,
        access_log=False,
        # The app itself ends its streams within shutdown_timeout (see
        # service/_stopping.py); uvicorn's own limit is only the backstop.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout) + 1,
        http=HttpProtocol,  # the head timeout, head and connection caps (docs/deploy.md)
    )
    host = "127.0.0.1" if settings.host in _ANY_HOST else settings.host
    address = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # listening: the URL works now
                print(
                    f"askstream is running: open {address} "
                    f"({settings.backend} model; Ctrl+C stops it)",
                    flush=True,
                )

    server = Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn stopped gracefully, then re-raised the Ctrl+C it caught.
        print("askstream stopped", file=sys.stderr, flush=True)
        return 130
    return 0 if server.started else 1


def _as_variable(value: object) -> str:
    """A flag's parsed value as its ``ASKSTREAM_*`` variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _serve_workers(settings: Settings, overrides: dict[str, Any]) -> int:
    """``serve --workers N``: uvicorn's supervisor and N worker processes on one socket.

    Each worker is a fresh interpreter that builds its app with
    ``create_app()``: the settings reach it as ``ASKSTREAM_*`` variables (the
    flags given are written there), the metrics as prometheus-client's
    multiprocess folder, made here and removed at the end.
    """
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .service import HttpProtocol
    from .service._identity import load_secret_key
    from .service._logs import logging_config
    from .service._metrics import MULTIPROC_ENV, mark_process_dead
    from .service._workers import memory_store_refusal

    if settings.redis_url is None:
        print(f"askstream: {memory_store_refusal(settings.workers)}", file=sys.stderr)
        return 2
    for name, value in overrides.items():
        if value is not None:
            os.environ["ASKSTREAM_" + name.upper()] = _as_variable(value)
    if not settings.user_tokens() and not settings.secret_key:
        # Made here, before any worker starts: they all read this one key.
        load_secret_key(settings.data_dir)
    made = None
    if not os.environ.get(MULTIPROC_ENV):
        made = tempfile.mkdtemp(prefix="askstream-metrics-")
        os.environ[MULTIPROC_ENV] = made
    config = uvicorn.Config(
        "askstream.service:create_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        # Applied in every worker (a new interpreter: nothing carries over) and
        # here, for uvicorn's supervisor lines: one form for all (_logs.py).
        log_config=logging_config(settings.log_format, settings.log_level),
        log_level=None,  # the levels are in log_config
        access_log=False,  # askstream.access logs each request (_logs.py)
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout) + 1,
        http=HttpProtocol,
    )
    host = "127.0.0.1" if settings.host in _ANY_HOST else settings.host
    address = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"

    class Workers(Multiprocess):
        ready = False

        def init_processes(self) -> None:
            super().init_processes()
            # Every worker's lifespan done (the database upgraded, the store
            # reached): only then is the URL worth printing.
            self.ready = all(
                process.wait_until_ready(_WORKER_START, self.should_exit)
                for process in self.processes
            )
            if self.ready:
                print(
                    f"askstream is running: open {address} ({settings.backend} model, "
                    f"{settings.workers} workers; Ctrl+C stops it)",
                    flush=True,
                )
            else:
                self.should_exit.set()

        def keep_subprocess_alive(self) -> None:
            # A worker that died (and was replaced) leaves its live gauges (open
            # streams, readers) behind: out of the sum at once, not at the next
            # scrape (which would notice too), as prometheus-client asks of a
            # supervisor.
            before = {process.pid for process in self.processes}
            super().keep_subprocess_alive()
            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    mark_process_dead(pid, os.environ[MULTIPROC_ENV])

    config.configure_logging()  # this process logs too (uvicorn's supervisor lines)
    try:
        supervisor = Workers(config, sockets=[config.bind_socket()])
        supervisor.run()
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    if not supervisor.ready:
        print("askstream: a worker did not start; see its error above", file=sys.stderr)
        return 1
    return 0


#: Seconds a worker may take to start (upgrade the database, reach the store).
_WORKER_START = 60.0


def _db_upgrade(**overrides: str | None) -> int:
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from .service import Settings
    from .service._history import create_engine
    from .service._logs import logging_config
    from .service._migrate import SchemaError, Upgrade, upgrade

    try:
        settings = Settings.from_env(None, **overrides)
    except ValueError as exc:
        print(f"askstream: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    shown = make_url(settings.database).render_as_string(hide_password=True)

    async def run() -> Upgrade:
        engine = create_engine(settings.database)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        done = asyncio.run(run())
    except (SchemaError, SQLAlchemyError, OSError) as exc:
        print(f"askstream: cannot upgrade the database {shown}: {exc}", file=sys.stderr)
        return 1
    if done.changed:
        print(f"database {shown}: upgraded from {done.before or 'nothing'} to {done.after}")
    else:
        print(f"database {shown}: already at {done.after}, the newest")
    return 0


def exposure_refusal(settings: Settings) -> str | None:
    """Why ``serve`` must not start with these settings (a public address with no
    tokens), or ``None``; with ``--insecure`` it starts, and says so in the log."""
    if settings.loopback or settings.user_tokens():
        return None
    if settings.insecure:
        logging.getLogger("askstream").warning(
            "serving %s with no tokens (--insecure): anyone who reaches it can read and "
            "write every chat",
            settings.host,
        )
        return None
    return (
        f"refusing to serve {settings.host} with no tokens: anyone who reaches it could "
        "read and write every chat.\n"
        "  Give users tokens: ASKSTREAM_TOKENS_FILE=/path/to/tokens (one 'user token' line "
        "each; see docs/security.md),\n"
        "  or serve 127.0.0.1 only, or pass --insecure if something in front of askstream "
        "already checks who asks."
    )


def _ask(question: str, *, chat: str | None, url: str, token: str | None = None) -> int:
    import httpx

    from .http import BearerAuth, connect

    body: dict[str, Any] = {"chatId": chat, "question": question}
    try:
        # A token read from a file often ends with a newline.
        auth = BearerAuth(token.strip()) if token else None
    except ValueError as exc:
        print(f"askstream: --token / ASKSTREAM_TOKEN: {exc}", file=sys.stderr)
        return 2
    # Without a token the service knows us by an anonymous session, as it knows a
    # browser: kept between runs, so that --chat finds the chats this user made.
    sessions = _Sessions(url) if auth is None else None
    client = httpx.Client(follow_redirects=True, cookies=sessions.load() if sessions else None)
    try:
        # A dropped answer resumes by itself: the client follows the response's
        # Content-Location with Last-Event-ID.
        with (
            client,
            connect(
                "POST",
                url.rstrip("/") + "/api/ask",
                json=body,
                auth=auth,
                until={"done", "error"},
                client=client,
            ) as events,
        ):
            for event in events:
                if sessions is not None:
                    sessions.save(client.cookies)
                    sessions = None  # once: the session is set by the answer's start
                data = json.loads(event.data)
                if event.event == "done":
                    print(flush=True)
                    print(f"chat: {data['chatId']}", file=sys.stderr)
                    return 0
                if event.event == "error":
                    print(flush=True)
                    print(f"askstream: error {data['code']}: {data['message']}", file=sys.stderr)
                    return 1
                if event.event == "message":  # not a thinking model's `reasoning`
                    print(data["delta"], end="", flush=True)
        print(flush=True)
        print("askstream: the answer ended without finishing", file=sys.stderr)
    except AskstreamError as exc:  # whatever failed, the client raises one of ours
        print(f"askstream: {_ask_failure(exc, url, token=auth is not None)}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output left (`askstream ask ... | head`): stop quietly,
        # and keep Python from failing again as it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    return 1


def _ask_failure(exc: AskstreamError, url: str, *, token: bool) -> str:
    """What ``ask`` prints for a failed answer."""
    if isinstance(exc, ResponseError):
        text = f"error {exc.code}: {exc.message}"
        if exc.status == 401:
            text += (
                "\naskstream: the service refused this token: check --token or ASKSTREAM_TOKEN"
                if token
                else "\naskstream: the service needs a token: pass --token TOKEN or set "
                "ASKSTREAM_TOKEN"
            )
        return text
    if isinstance(exc, ConnectError | TransportTimeout):
        return f"cannot reach {url}: {exc.__cause__ or exc}"
    return str(exc)  # a broken stream that could not be resumed, a refused stream


class _Sessions:
    """The anonymous session cookie ``ask`` holds for each service, in one file
    (``$ASKSTREAM_STATE_DIR``, else ``$XDG_STATE_HOME/askstream``, mode 0600)."""

    def __init__(self, url: str) -> None:
        import httpx

        base = os.environ.get("ASKSTREAM_STATE_DIR") or os.path.join(
            os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "askstream"
        )
        self.path = os.path.join(base, "sessions.json")
        parsed = httpx.URL(url)
        self.origin = f"{parsed.scheme}://{parsed.netloc.decode()}"
        self.host = parsed.host

    def _all(self) -> dict[str, str]:
        try:
            with open(self.path, encoding="utf-8") as file:
                found = json.load(file)
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def load(self) -> dict[str, str]:
        value = self._all().get(self.origin)
        return {COOKIE: value} if isinstance(value, str) else {}

    def save(self, cookies: Any) -> None:
        value = cookies.get(COOKIE)
        known = self._all()
        if not value or known.get(self.origin) == value:
            return
        known[self.origin] = value
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(known, file)
        os.replace(self.path + ".new", self.path)


#: The service's session cookie (askstream.service's ``Identify``).
COOKIE = "askstream_session"


if __name__ == "__main__":
    sys.exit(main())
