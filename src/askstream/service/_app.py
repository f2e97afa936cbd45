"""The FastAPI application: its lifespan owns the database, the store, the back end
and every generation task; its handlers give every error one JSON shape."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
from collections.abc import AsyncIterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
)
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..http import ShutdownMiddleware
from ..http import _handoff as handoff
from ..streams import MemoryStore, Store
from . import _aisdk
from ._backend import Backend
from ._demo import DemoBackend
from ._edge import HeadAsGet, HeadCheck, OpenLimit, allowed_methods
from ._errors import ServiceError
from ._fanout import Fanout
from ._generation import Generations
from ._guards import METRICS_PATH, Identify, SecurityHeaders, SiteGuard
from ._health import DATABASE, STORE, Dependencies, database_probe, outage_handlers, store_probe
from ._history import ChatHistory, create_engine
from ._identity import Identities, load_secret_key
from ._limits import GenerationLimits
from ._logs import RequestId, logging_config
from ._metrics import Metrics
from ._middleware import BodyLimit, InternalErrors
from ._openai_api import RESUME_HEADER, OpenAIErrors
from ._openai_api import router as openai_router
from ._openapi import restrict_overrides
from ._protocol import REFUSED_STATE, SETTINGS_STATE
from ._reaper import fail_lost, reap_forever, sweep_forever
from ._retry import RetryPolicy
from ._routes import Services, router
from ._settings import Settings
from ._stopping import RESUME_EVENT, Stopping
from ._text import shown
from ._workers import memory_store_refusal, workers_seen

__all__ = ["create_app", "make_backend", "make_identities", "make_store"]

logger = logging.getLogger("askstream.service")

_WEB = Path(__file__).resolve().parent.parent / "web"


def make_backend(settings: Settings) -> Backend:
    """The back end the settings name: OpenAI-compatible with an LLM URL, else the demo."""
    if settings.llm_url is None:
        return DemoBackend(delay=settings.demo_delay)
    from ._openai import OpenAIBackend

    assert settings.llm_model is not None  # Settings refuses a URL without a model
    return OpenAIBackend(
        settings.llm_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        connect_timeout=settings.llm_connect_timeout,
        read_timeout=settings.llm_read_timeout,
        retry=RetryPolicy(
            attempts=settings.llm_attempts,
            base=settings.llm_retry_delay,
            cap=settings.llm_retry_max_delay,
        ),
    )


def _first_piece_within(settings: Settings) -> float:
    """The longest an answer may wait for its first piece: every attempt's timeouts
    and the waits between them."""
    attempts = settings.llm_attempts
    waits = (attempts - 1) * settings.llm_retry_max_delay
    return attempts * (settings.llm_connect_timeout + settings.llm_read_timeout) + waits


def _document_overrides(app: FastAPI, allowed: tuple[str, ...]) -> None:
    # The document tells what this server takes: a field that is 400 here is
    # described as null only, so that a client built from it (or schemathesis)
    # never sends a value the server refuses.
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            restrict_overrides(build(), allowed)
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


def make_store(
    settings: Settings, metrics: Metrics | None = None
) -> AbstractAsyncContextManager[Store]:
    """The stream log the settings name: Redis with a Redis URL, else this process's memory
    (whose evictions ``metrics`` counts)."""
    if settings.redis_url is None:
        return nullcontext(
            MemoryStore(
                retention=settings.stream_retention,
                max_bytes=settings.memory_store_max_bytes,
                on_evict=None if metrics is None else metrics.evictions.inc,
            )
        )
    from ..streams import RedisStore

    return RedisStore(
        settings.redis_url,
        prefix=settings.redis_prefix,
        retention=settings.stream_retention,
        max_events=settings.stream_max_events,
        lease_ttl=settings.lease_ttl,
        lease_renew=settings.lease_renew,
    )


def make_identities(settings: Settings) -> Identities:
    """Who may ask: the configured tokens, else anonymous sessions signed with the
    secret key (from the settings, or kept in the data folder)."""
    tokens = settings.user_tokens()
    if tokens:
        return Identities(tokens, secret_key=b"")  # no sessions: nothing to sign
    if settings.secret_key:
        key = settings.secret_key.encode()
    else:
        key = load_secret_key(settings.data_dir)
    return Identities({}, secret_key=key)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])  # not `await task`: its CancelledError is not ours


async def _index(request: Request) -> FileResponse:
    return FileResponse(_WEB / "index.html")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"code": exc.code, "message": exc.message}, exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 404:
        message = f"no route {request.method} {shown(request.url.path)}"
    elif exc.status_code == 405:
        allowed = ", ".join(allowed_methods(request))
        headers = {**(headers or {}), "Allow": allowed}
        message = f"{request.method} is not allowed on {shown(request.url.path)}; use {allowed}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _error(
        422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    )


class _App(FastAPI):
    """FastAPI behind a stream handoff (``http/_handoff.py``).

    An open stream holds every frame between the server and its body. Its
    body runs here, outside FastAPI's stack, once that stack (its error
    middleware, ours, the routing, the dependencies) has returned: a reader
    then costs about what a bare ``EventStreamResponse`` does
    (``bench/bench_resume.py --only memory``). ``OpenLimit`` counts the stream
    until its body ends (``handoff.at_end``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The only frame of the app's that an open stream keeps.
        slot = await handoff.run(super().__call__, scope, receive, send)
        if slot is not None:
            try:
                assert slot.body is not None
                await slot.body
            finally:
                slot.end()


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    backend: Backend | None = None,
) -> FastAPI:
    """The ask service as an ASGI app (FastAPI: its OpenAPI page is at ``/docs``).

    With no ``settings``, they are read from ``ASKSTREAM_*`` variables, which is
    what ``uvicorn --factory askstream.service:create_app`` does. ``store`` and
    ``backend`` replace the ones the settings would make (a test's fake, a
    shared store); the app closes only what it made itself.

    Its startup fails (``ValueError``) for the memory store in one of several
    worker processes (``workers`` > 1; with no ``settings``, also
    ``WEB_CONCURRENCY`` or a uvicorn or gunicorn ``--workers`` seen in the
    command line), and with it the server.

    >>> from askstream.service import Settings, create_app
    >>> app = create_app(Settings(demo_delay=0.0, data_dir=Path("/tmp/askstream")))
    >>> app.title
    'askstream'
    """
    # Called with no settings, as `uvicorn --factory` and gunicorn do, the
    # process may be one of several workers: a memory store is refused then
    # (what can be seen of the workers: _workers.py). Given settings, their `workers`.
    workers = settings.workers if settings is not None else None
    settings = settings or Settings.from_env()
    if settings.log_format == "json":
        # Asked for by name: under `uvicorn --factory` too (uvicorn set up its
        # own logging before it called us). Readable text leaves the host's
        # logging as it is (`askstream serve` sets up both, see cli.py).
        logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    refusal = None
    if store is None and settings.redis_url is None:
        workers = workers or workers_seen(settings.workers)
        refusal = memory_store_refusal(workers) if workers > 1 else None
    logging.getLogger("askstream").setLevel(settings.log_level.upper())
    stopping = Stopping(timeout=settings.shutdown_timeout)
    # The app's own metrics (GET /metrics), in every worker's files under
    # PROMETHEUS_MULTIPROC_DIR when it is set (askstream serve --workers).
    metrics = Metrics.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if refusal is not None:
            # Refused at start, not when the app is made: uvicorn stops every
            # worker and itself when one fails its startup, while a factory
            # that raises is only started again, and again.
            raise ValueError(refusal)
        async with AsyncExitStack() as stack:
            history = ChatHistory(create_engine(settings.database))
            stack.push_async_callback(history.aclose)
            await history.create_tables(upgrade=settings.db_upgrade)
            llm = backend
            if llm is None:
                llm = make_backend(settings)
                stack.push_async_callback(llm.aclose)
            stack.callback(metrics.close)
            log = store
            if log is None:
                log = await stack.enter_async_context(make_store(settings, metrics))
            dependencies = await stack.enter_async_context(
                Dependencies(
                    {DATABASE: database_probe(history.engine), STORE: store_probe(log)},
                    on_store_error=partial(metrics.store_error, "unreachable"),
                )
            )
            generations = await stack.enter_async_context(
                Generations(
                    store=log,
                    history=history,
                    backend=llm,
                    save_interval=settings.save_interval,
                    limits=GenerationLimits(
                        total=settings.max_generations, per_user=settings.max_user_generations
                    ),
                    dependencies=dependencies,
                    metrics=metrics,
                )
            )
            # Every instance ends the answers of instances that died (leases in the store).
            reaper = asyncio.create_task(
                reap_forever(log, history, interval=settings.lease_renew / 2)
            )
            stack.push_async_callback(_stop, reaper)
            # And the answers no lease covers any more (the store lost them).
            idle = _first_piece_within(settings) + settings.lease_ttl
            sweeper = asyncio.create_task(sweep_forever(log, history, idle=idle))
            stack.push_async_callback(_stop, sweeper)
            fanout = Fanout(log, on_lost=partial(fail_lost, log, history), metrics=metrics)
            stack.push_async_callback(fanout.aclose)
            watcher = asyncio.create_task(stopping.watch(generations, fanout, dependencies))
            stack.push_async_callback(_stop, watcher)
            app.state.askstream = Services(
                settings=settings,
                store=log,
                history=history,
                generations=generations,
                fanout=fanout,
                dependencies=dependencies,
                metrics=metrics,
            )
            logger.info(
                "askstream: %s model, %s store, database %s",
                settings.backend,
                settings.store,
                _safe(settings),
            )
            # Everything made so far (modules, the app, the engine) lives as long
            # as the process: out of the collector's way, a full collection no
            # longer walks it, which took 60-80 ms with 1,000 readers connected.
            gc.freeze()
            # The server's protocol reads the limits from here, and counts its
            # refusals (_protocol.py).
            yield {SETTINGS_STATE: settings, REFUSED_STATE: metrics.refused}

    app = _App(
        title="askstream",
        summary="Chat answers streamed as server-sent events, resumable.",
        version=_version(),
        lifespan=lifespan,
        # FastAPI's pages load their scripts from a CDN onto our origin: off.
        docs_url=None,
        redoc_url=None,
        exception_handlers={
            ServiceError: _service_error,
            HTTPException: _http_error,
            RequestValidationError: _validation_error,
            **outage_handlers(_dependencies),
        },
    )
    # Open streams end once answers in flight had their time (see _stopping.py).
    app.add_middleware(
        ShutdownMiddleware, should_exit=stopping.streams_must_end, final_event=RESUME_EVENT
    )
    # Outermost last: the request id, OpenAI's error shape, the connection cap,
    # headers on every answer, the head's size, the gate (Host, cross-site
    # writes), CORS, who is asking, the body limit, HEAD as GET, and the last
    # word on errors.
    app.add_middleware(InternalErrors)
    app.add_middleware(HeadAsGet)
    app.add_middleware(
        BodyLimit,
        max_size=settings.max_body_size,
        timeout=settings.body_timeout,
        refused=metrics.refused,
    )
    app.add_middleware(Identify, identities=make_identities(settings))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=["Content-Location", RESUME_HEADER, "X-Request-ID"],
            # Credentials (cookies) only for origins named one by one, never for "*".
            allow_credentials="*" not in settings.cors_origins,
            max_age=600,
        )
    app.add_middleware(SiteGuard, allowed_hosts=settings.hosts, cors_origins=settings.cors_origins)
    app.add_middleware(HeadCheck, max_size=settings.max_head_size, refused=metrics.refused)
    app.add_middleware(SecurityHeaders)
    # The first word: no work before the count (the next one only wraps `send`).
    app.add_middleware(OpenLimit, limit=settings.max_connections, refused=metrics.refused)
    # The outermost: every error under /v1/ in OpenAI's shape too, the cap's included.
    app.add_middleware(OpenAIErrors)
    # Outside it, the outermost: every response, an OpenAI-shaped error and a
    # refusal of the cap included, gets its X-Request-ID, and every line logged
    # for a request names it (_logs.py).
    app.add_middleware(RequestId)
    app.include_router(router)
    app.include_router(openai_router)  # the OpenAI-compatible door, /v1/
    app.include_router(_aisdk.router)  # the AI SDK's door (docs/api.md)
    # Prometheus's scrape: behind the tokens when there are tokens (_guards.py).
    app.add_api_route(
        METRICS_PATH, partial(_metrics, metrics), methods=["GET"], include_in_schema=False
    )
    _document_overrides(app, settings.request_overrides)
    if (_WEB / "index.html").is_file():
        # The chat page (issue 6) at "/", its files under /static (askstream/web/).
        app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
        app.mount("/static", StaticFiles(directory=_WEB), name="static")
    if settings.api_docs:
        from ._docs import install_docs

        install_docs(app)
    return app


def _metrics(metrics: Metrics, request: Request) -> Response:
    # A plain def: FastAPI runs it in a thread, so that reading every worker's
    # files (multiprocess mode) keeps off the event loop.
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


def _dependencies(request: Request) -> Dependencies | None:
    services = getattr(request.app.state, "askstream", None)
    return None if services is None else services.dependencies


def _safe(settings: Settings) -> str:
    # The URL may carry a password; log it without one.
    from sqlalchemy.engine import make_url

    return make_url(settings.database).render_as_string(hide_password=True)


def _version() -> str:
    from .. import __version__

    return __version__
