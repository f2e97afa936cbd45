"""The service's log: readable lines or one JSON object a line, each naming the
request and the answer it is about.

Three context variables carry the ids; a record takes them when it is
emitted, so no call site passes them:

- ``request_id``: set by :class:`RequestId` (the outermost middleware) for
  everything a request runs. A task started while handling it copies it
  (asyncio copies the context at ``create_task``), so a generation task keeps
  the id of the ask that started it after that response has ended.
- ``chat_id`` and ``message_id``: set by :func:`bind_answer` where an answer
  becomes known (``Generations.start``, the stream routes). A task that serves
  many requests (a stream's hub, the dependency probe) starts in
  :func:`detached`, so it does not go on logging the id of the request that
  happened to start it.

:func:`logging_config` is the ``logging.config.dictConfig`` for
``askstream serve`` (uvicorn applies it, in every worker), text or JSON, for
askstream's loggers and uvicorn's. uvicorn's access log is off: it writes its
line when a response *starts*, so a five-minute stream is logged as "200"
before a byte of the answer went out, and never with its duration;
:class:`RequestId` writes one line per request (logger ``askstream.access``)
when the response has ended, with its status, duration and ids.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ..http._handoff import at_end
from ._middleware import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "RequestId",
    "TextFormatter",
    "bind_answer",
    "detached",
    "logging_config",
    "request_id",
]


_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "askstream_request_id", default=None
)
_chat_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "askstream_chat_id", default=None
)
_message_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "askstream_message_id", default=None
)
_VARS = {"request_id": _request_id, "chat_id": _chat_id, "message_id": _message_id}
#: The context fields of a log line, in the order they are written.
CONTEXT_FIELDS = tuple(_VARS)

access_logger = logging.getLogger("askstream.access")

# A request id we take from a client: printable ASCII without spaces, as
# proxies and tracing systems make them (UUIDs, hex, base64, "Root=1-...");
# longer or stranger ones are replaced, so a client cannot forge log lines.
_MAX_REQUEST_ID = 128
_PRINTABLE = frozenset(range(0x21, 0x7F))


def request_id() -> str | None:
    """The id of the request being handled here, if any."""
    return _request_id.get()


def bind_answer(*, chat_id: str | None = None, message_id: str | None = None) -> None:
    """Name the answer the current context is about: every line logged from here
    on (and in the tasks started from here) carries these ids. ``None`` keeps
    what is set."""
    if chat_id is not None:
        _chat_id.set(chat_id)
    if message_id is not None:
        _message_id.set(message_id)


def detached(*, chat_id: str | None = None, message_id: str | None = None) -> contextvars.Context:
    """A copy of the current context that is about no request (and about this
    answer, if given): for ``create_task(..., context=detached())`` of a task
    that outlives or serves many requests."""
    context = contextvars.copy_context()
    context.run(_reset, chat_id, message_id)
    return context


def _reset(chat_id: str | None, message_id: str | None) -> None:
    _request_id.set(None)
    _chat_id.set(chat_id)
    _message_id.set(message_id)


def _fields(record: logging.LogRecord) -> Iterator[tuple[str, str]]:
    # Stamped by ContextFilter when the record was made; else (a handler
    # without the filter) read now, which is the same moment for a plain
    # StreamHandler.
    for name, var in _VARS.items():
        value = getattr(record, name, None) or var.get()
        if not value and name == "message_id":
            # The store's own lines name a stream; the service names each
            # stream by its answer's message id.
            value = getattr(record, "stream_id", None)
        if value:
            yield name, value


class ContextFilter(logging.Filter):
    """Stamp each record with the request and answer ids of the context it was
    logged in (before a queue handler could move it to another thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """``LEVEL     logger: message``, then the ids: ``[request=... message=...]``."""

    def __init__(self) -> None:
        super().__init__("%(levelname)-9s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(f"{name.removesuffix('_id')}={value}" for name, value in _fields(record))
        return f"{line} [{ids}]" if ids else line


# The attributes every LogRecord has; anything else came as `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
    *CONTEXT_FIELDS,
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line::

        {"time": "2026-12-05T14:40:42.123Z", "level": "warning",
         "logger": "askstream.service", "message": "...", "request_id": "...",
         "chat_id": "...", "message_id": "...", "exc": "Traceback ..."}

    ``time`` is UTC with milliseconds; the ids are there when known; fields
    given as ``extra=`` follow; a traceback is one string, ``exc``. Non-ASCII
    is escaped, so a line is plain ASCII whatever the terminal's encoding.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            # Cached as Formatter.format does, for another handler of the record.
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``dictConfig`` of ``askstream serve``: one handler on stderr, in
    ``log_format``, taking askstream's, uvicorn's and every library's lines at
    ``level``; uvicorn's access log off (:class:`RequestId` logs requests)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = level.upper()
    # uvicorn's lifecycle lines (started, running on, shutting down...) give
    # way to serve's one "askstream is running"; its warnings and errors stay.
    quieter = level if level == "DEBUG" else _louder(level, "WARNING")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"askstream": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "askstream",
                "filters": ["context"],
            }
        },
        "loggers": {
            "askstream": {"level": level},
            # uvicorn's own handlers go: its lines reach ours through the root.
            "uvicorn": {"handlers": [], "propagate": True, "level": quieter},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": quieter},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def _louder(level: str, floor: str) -> str:
    levels = logging.getLevelNamesMapping()
    return level if levels[level] >= levels[floor] else floor


def _valid_request_id(value: bytes) -> str | None:
    if 0 < len(value) <= _MAX_REQUEST_ID and _PRINTABLE.issuperset(value):
        return value.decode("ascii")
    return None


class RequestId:
    """Give every request an id and every response its ``X-Request-ID``; log one
    line per request when its response has ended.

    The id is the request's own ``X-Request-ID`` when it is printable ASCII of
    at most 128 characters (a proxy's or a client's, so one id follows a
    request through every log), else a new one. It is in the context of
    everything the request runs (:func:`request_id`), so on every line logged
    for it, and in the response's headers, whoever answered: a route, an
    error handler, a middleware's 4xx, a stream.

    The line (logger ``askstream.access``, level info) says the method, the
    path (never the query, which may carry a secret), the status and how long
    the response took, plus the ids (a stream's ends when the stream does).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = _valid_request_id(value)
                break
        rid = given or uuid.uuid4().hex
        token = _request_id.set(rid)
        header = (b"x-request-id", rid.encode("ascii"))
        status = 0
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"),
                    header,
                ]
            await send(message)

        def log() -> None:
            duration = (time.perf_counter() - began) * 1e3
            path = _path(scope)
            access_logger.info(
                "%s %s %s %.1f ms",
                scope["method"],
                path,
                status or "-",  # none: the client left, or the app failed before
                duration,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status or None,
                    "duration_ms": round(duration, 1),
                },
            )

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # A stream handed off (http/_handoff.py) goes on after this call:
            # its line is logged when its body ends, in the request's context.
            if access_logger.isEnabledFor(logging.INFO) and not at_end(scope, log):
                log()
            _request_id.reset(token)


def _path(scope: Scope) -> str:
    # As the client sent it, still percent-encoded: a decoded %0A would put a
    # line break, so a forged line, into a text log.
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0].decode("latin-1").encode("unicode_escape").decode()
    return str(scope["path"]).encode("unicode_escape").decode()
