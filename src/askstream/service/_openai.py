"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random as _random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .._exceptions import (
    ConnectError,
    ContentTypeError,
    EventSourceError,
    ResponseError,
    TransportTimeout,
)
from ..http import aconnect
from ..sse import Event
from ._backend import ChatMessage, Chunk, ModelOptions, Usage
from ._errors import UpstreamError
from ._json import loads
from ._retry import RetryPolicy, retry_delay
from ._text import valid_text
from ._upstream import Upstream, lean_ok

__all__ = ["OpenAIBackend", "completions_url"]

logger = logging.getLogger("askstream.service")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def completions_url(url: str) -> str:
    """The chat completions endpoint for a configured URL, as OpenAI's SDKs read a base URL.

    The path gets ``/chat/completions``; a query (Azure's ``?api-version=``) stays
    after it.

    >>> completions_url("http://localhost:11434")
    'http://localhost:11434/v1/chat/completions'
    >>> completions_url("https://api.openai.com/v1/")
    'https://api.openai.com/v1/chat/completions'
    >>> completions_url("http://h/v1/chat/completions")
    'http://h/v1/chat/completions'
    >>> completions_url("https://r.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21")
    'https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21'
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/v1/chat/completions" if path == "" else "/chat/completions"
    # The fragment is dropped: a browser's part, never sent in a request.
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _error_text(payload: Any) -> str | None:
    # The model's text ends up in our answers: no lone surrogate may pass (_text.py).
    text = _error_field(payload)
    return None if text is None else valid_text(text)


def _error_field(payload: Any) -> str | None:
    # OpenAI: {"error": {"message": ...}}; vLLM and others: {"object": "error", "message": ...}.
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error is not None:
        return str(error)
    if payload.get("object") == "error":
        return str(payload.get("message") or payload)
    return None


def _usage(payload: dict[str, Any]) -> Usage | None:
    # OpenAI's last chunk with stream_options.include_usage; absent or null elsewhere.
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None  # a server that counts otherwise: no usage rather than a wrong one
    return Usage(prompt, completion)


def _response_message(exc: ResponseError) -> str:
    try:
        text = _error_text(json.loads(exc.message))
    except ValueError:
        text = None
    return text or exc.message


class OpenAIBackend:
    """A :class:`~askstream.service.Backend` for an OpenAI-compatible API (OpenAI,
    Ollama, vLLM, llama.cpp's server, LM Studio), read with askstream's own SSE client.

    ``url`` is the API's base URL (``https://api.openai.com/v1``,
    ``http://localhost:11434/v1``) or the full ``/chat/completions`` URL.
    ``connect_timeout`` bounds connecting, ``read_timeout`` the wait for the
    first byte and between chunks. A refusal (429, 5xx) or a failed connection
    before the first chunk is asked again as ``retry``
    (:class:`~askstream.service.RetryPolicy`) says, honouring ``Retry-After``;
    ``sleep``, ``clock`` and ``random`` are injectable for tests. Every failure
    is an :class:`~askstream.service.UpstreamError`; closing the stream early
    closes the upstream request.

    A thinking model's ``reasoning_content`` (or ``reasoning``) comes as chunks
    with :attr:`Chunk.reasoning <askstream.service.Chunk.reasoning>` set.

    The stream is read by a lean HTTP/1.1 client of its own (``_upstream.py``,
    http and https alike); httpx reads it instead when ``client`` is given or a
    proxy is configured for the URL (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``).

    >>> backend = OpenAIBackend("http://localhost:11434/v1", "llama3.2")
    >>> backend.url
    'http://localhost:11434/v1/chat/completions'
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], dt.datetime] = _utcnow,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.url = completions_url(url)
        self.model = model
        self.retry = retry or RetryPolicy()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self._timeout,
            # The service bounds its own concurrency; the pool must not queue answers.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        )
        self._upstream = (
            Upstream(connect_timeout=connect_timeout, read_timeout=read_timeout)
            if client is None and lean_ok(self.url)
            else None
        )

    async def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            # OpenAI, vLLM, Ollama and llama.cpp send the usage in a last chunk
            # (choices empty) only when asked.
            "stream_options": {"include_usage": True},
        }
        if options is not None:
            if options.temperature is not None:
                body["temperature"] = options.temperature
            if options.max_tokens is not None:
                body["max_tokens"] = options.max_tokens
        # Asked again only while nothing came (_retry.py): a refusal or a
        # connection that never opened. After the first chunk, never: the
        # question would be answered twice.
        retry = 0
        while True:
            began = False
            try:
                async with aclosing(self._attempt(body)) as chunks:
                    async for chunk in chunks:
                        began = True
                        yield chunk
            except UpstreamError as exc:
                delay = None
                if not began:
                    delay = retry_delay(
                        exc.__cause__, retry, self.retry, now=self._clock(), random=self._random
                    )
                if delay is None:
                    raise
                logger.info("the LLM back end failed (%s); asking again in %.2f s", exc, delay)
            else:
                return
            await self._sleep(delay)
            retry += 1

    async def _attempt(self, body: dict[str, Any]) -> AsyncGenerator[Chunk, None]:
        # The finish reason is held back until the stream ends, so that the last
        # chunk carries it with the usage that follows it on the wire.
        finish_reason: str | None = None
        usage: Usage | None = None
        done = False  # data: [DONE] came: an end even without a finish reason
        try:
            async with aclosing(self._events(body)) as events:
                async for event in events:
                    chunk = self._chunk(event)
                    if chunk is None:  # data: [DONE]
                        done = True
                        break
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.delta or chunk.reasoning:
                        yield Chunk(chunk.delta, reasoning=chunk.reasoning)
        except ResponseError as exc:
            raise UpstreamError(
                f"the LLM back end answered HTTP {exc.status}: {_response_message(exc)}",
                kind="status",
            ) from exc
        except ContentTypeError as exc:
            raise UpstreamError(
                f"the LLM back end did not stream: {exc}", kind="not_streaming"
            ) from exc
        except TransportTimeout as exc:
            if exc.phase == "connect":
                message = (
                    f"the LLM back end at {self.url} did not accept a connection "
                    f"within {self._connect_timeout:g} s"
                )
                kind = "connect_timeout"
            elif exc.phase == "read":
                message = f"the LLM back end sent nothing for {self._read_timeout:g} s"
                kind = "read_timeout"
            else:
                message = f"the LLM back end timed out: {exc}"
                kind = "other"
            raise UpstreamError(message, kind=kind) from exc
        except ConnectError as exc:
            raise UpstreamError(
                f"cannot reach the LLM back end at {self.url}: {exc.__cause__ or exc}",
                kind="connect",
            ) from exc
        except EventSourceError as exc:
            raise UpstreamError(f"the LLM back end's stream broke: {exc}", kind="broken") from exc
        if finish_reason is None and not done:
            raise UpstreamError(
                "the LLM back end ended the answer without finishing it", kind="incomplete"
            )
        yield Chunk(finish_reason=finish_reason or "stop", usage=usage)

    def _events(self, body: dict[str, object]) -> AsyncGenerator[Event, None]:
        if self._upstream is not None:
            return self._upstream.events(self.url, json.dumps(body).encode(), self._headers)
        return self._httpx_events(body)

    async def _httpx_events(self, body: dict[str, object]) -> AsyncGenerator[Event, None]:
        async with aconnect(
            "POST",
            self.url,
            client=self._client,
            json=body,
            headers=self._headers,
            timeout=self._timeout,
            reconnect=None,  # never POST a question twice: a drop is a failure
        ) as events:
            async for event in events:
                yield event

    def _chunk(self, event: Event) -> Chunk | None:
        if event.data == "[DONE]":
            return None
        try:
            payload = loads(event.data)  # _json.py: orjson, one call per chunk
        except ValueError:
            raise UpstreamError(
                f"the LLM back end sent a chunk that is not JSON: {event.data[:200]!r}",
                kind="bad_chunk",
            ) from None
        error = _error_text(payload)
        if error is not None:
            raise UpstreamError(f"the LLM back end failed: {error}", kind="error_payload")
        try:
            choice = payload["choices"][0] if payload["choices"] else {}
            delta = choice.get("delta") or {}
            # A thinking model's thoughts: `reasoning_content` (DeepSeek, vLLM,
            # llama.cpp) or `reasoning` (OpenRouter, Ollama, LM Studio).
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            return Chunk(
                delta.get("content") or "",
                choice.get("finish_reason"),
                _usage(payload),
                reasoning=reasoning if isinstance(reasoning, str) else "",
            )
        except (KeyError, TypeError, AttributeError):
            raise UpstreamError(
                f"the LLM back end sent a chunk of unknown shape: {event.data[:200]!r}",
                kind="bad_chunk",
            ) from None

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
        if self._own_client:
            await self._client.aclose()
