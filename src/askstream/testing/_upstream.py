"""A fake OpenAI-compatible ``/v1/chat/completions`` server, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal, cast, get_args

__all__ = ["FakeUpstream"]

Mode = Literal["normal", "fail", "drop", "slow", "stall", "refuse", "surrogate", "think", "flaky"]
_MODES: tuple[str, ...] = get_args(Mode)
_PIECE = re.compile(r"\s*\S{1,4}|\s+")
_LONE = re.compile("[\ud800-\udfff]")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _usage(prompt: int, completion: int) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    # A lone surrogate cannot be UTF-8: it goes out as a \ud83d escape, as a
    # gateway that cuts an emoji's pair in two sends it.
    ascii_only = _LONE.search(delta.get("content", "")) is not None
    return b"data: " + json.dumps(payload, ensure_ascii=ascii_only).encode() + b"\n\n"


class FakeUpstream:
    """An ASGI app that answers ``POST /v1/chat/completions`` (``stream: true``) the way
    OpenAI does, and misbehaves on request. Run it under uvicorn as a real server.

    The answer is ``answer`` if given, else ``"Echo: "`` and the last user message,
    cut into pieces of a few characters (or ``tokens`` pieces ``" tok<n>"``),
    ``delay`` seconds apart. ``mode`` picks the behaviour; a request whose model
    is ``fake-<mode>``, or whose last user message begins with ``fake-<mode>:``,
    picks its own (so one service in front of it can meet several):

    - ``normal``: every piece, a ``finish_reason: "stop"`` chunk, ``data: [DONE]``.
    - ``fail``: ``fail_after`` pieces, then an OpenAI error payload, then the end.
    - ``drop``: ``fail_after`` pieces, then the end, without ``[DONE]``.
    - ``slow``: ``slow_delay`` seconds before the first piece and between pieces.
    - ``stall``: ``fail_after`` pieces, then ``slow_delay`` seconds of silence (a
      model that thinks mid-answer), then the rest and a normal end.
    - ``refuse``: HTTP 503 with an OpenAI error body.
    - ``surrogate``: as ``normal``, but an emoji's two UTF-16 halves come after
      the first piece, each alone in its chunk (``"\\ud83d"``, then ``"\\ude42"``).
    - ``think``: a thinking model: ``reasoning`` (default ``"Thinking about: "`` and
      the question) in pieces as ``delta.reasoning_content`` (or the field
      ``reasoning_field`` names), then ``think_delay`` seconds of silence, then
      the answer as ``normal``.
    - ``flaky``: the first ``fail_first`` requests with the same messages are
      refused with HTTP ``fail_status`` (and ``Retry-After: <retry_after>`` when
      set); the next one is answered as ``normal``.

    With ``api_key`` set, a request without ``Authorization: Bearer <api_key>``
    gets 401. With ``stamp``, each piece is the time it was sent,
    ``time.monotonic_ns()`` followed by a space (one clock for every process on
    a Linux machine), for measuring latency.

    A request's ``max_tokens`` cuts the answer to that many pieces (finish reason
    ``"length"``); with ``stream_options.include_usage`` a last chunk carries the
    usage (the prompt's words, the pieces sent), as OpenAI's does.

    ``GET /requests`` lists what came in (``model``, ``messages``, ``temperature``,
    ``maxTokens``, ``streamOptions``, ``outcome``: ``done``, ``failed``, ``refused``
    or ``disconnected``, ``sent``: the pieces sent, and ``sentBeforeDisconnect``:
    how many had gone out when the client's disconnect was seen; a count, not a
    time, so a test can say "it stopped at once" without a stopwatch). ``from_env`` builds
    one from ``ASKSTREAM_FAKE_*`` variables for ``uvicorn --factory``.

    >>> # uvicorn --factory askstream.testing:FakeUpstream.from_env --port 9000
    >>> app = FakeUpstream(mode="fail", fail_after=2)
    """

    def __init__(
        self,
        *,
        mode: Mode = "normal",
        answer: str | None = None,
        tokens: int | None = None,
        delay: float = 0.0,
        slow_delay: float = 1.0,
        fail_after: int = 3,
        api_key: str | None = None,
        stamp: bool = False,
        reasoning: str | None = None,
        reasoning_field: str = "reasoning_content",
        think_delay: float = 0.0,
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: str | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, not {mode!r}")
        self.mode: Mode = mode
        self.answer = answer
        self.tokens = tokens
        self.delay = delay
        self.slow_delay = slow_delay
        self.fail_after = fail_after
        self.api_key = api_key
        self.stamp = stamp
        self.reasoning = reasoning
        self.reasoning_field = reasoning_field
        self.think_delay = think_delay
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self._refused: dict[str, int] = {}  # flaky: refusals so far, by the messages' JSON
        self.requests: deque[dict[str, Any]] = deque(maxlen=1000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FakeUpstream:
        """A FakeUpstream configured by ``ASKSTREAM_FAKE_MODE``, ``_ANSWER``, ``_TOKENS``,
        ``_DELAY``, ``_SLOW_DELAY``, ``_FAIL_AFTER``, ``_API_KEY``, ``_STAMP`` (``1``),
        ``_REASONING``, ``_REASONING_FIELD``, ``_THINK_DELAY``, ``_FAIL_FIRST``,
        ``_FAIL_STATUS`` and ``_RETRY_AFTER``."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get("ASKSTREAM_FAKE_" + name) or None

        tokens = get("TOKENS")
        return cls(
            mode=cast("Mode", get("MODE") or "normal"),
            answer=get("ANSWER"),
            tokens=int(tokens) if tokens else None,
            delay=float(get("DELAY") or 0.0),
            slow_delay=float(get("SLOW_DELAY") or 1.0),
            fail_after=int(get("FAIL_AFTER") or 3),
            api_key=get("API_KEY"),
            stamp=get("STAMP") in {"1", "true", "yes"},
            reasoning=get("REASONING"),
            reasoning_field=get("REASONING_FIELD") or "reasoning_content",
            think_delay=float(get("THINK_DELAY") or 0.0),
            fail_first=int(get("FAIL_FIRST") or 0),
            fail_status=int(get("FAIL_STATUS") or 503),
            retry_after=get("RETRY_AFTER"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
                await send({"type": kind + ".complete"})
                if kind == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/requests" and method == "GET":
            await _respond(send, 200, list(self.requests))
        elif path.endswith("/chat/completions") and method == "POST":
            await self._complete(scope, receive, send, body)
        else:
            await _respond(send, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _complete(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            await _respond(send, 400, {"error": {"message": "expected a chat completion body"}})
            return
        model = str(request.get("model", ""))
        mode = cast("Mode", model[5:]) if model[5:] in _MODES else self.mode
        asked = _question(messages).partition(":")[0]
        if asked.startswith("fake-") and asked[5:] in _MODES:
            mode = cast("Mode", asked[5:])
        record: dict[str, Any] = {
            "model": model, "messages": messages, "stream": request.get("stream"),
            "temperature": request.get("temperature"), "maxTokens": request.get("max_tokens"),
            "streamOptions": request.get("stream_options"),
            "outcome": "open", "sent": 0, "sentBeforeDisconnect": None,
        }  # fmt: skip
        self.requests.append(record)
        headers = dict(scope["headers"])
        if self.api_key is not None and headers.get(b"authorization") != (
            b"Bearer " + self.api_key.encode()
        ):
            record["outcome"] = "refused"
            await _respond(send, 401, {"error": {"message": "Incorrect API key provided"}})
            return
        if mode == "refuse":
            record["outcome"] = "refused"
            await _respond(
                send, 503, {"error": {"message": "the fake upstream refuses", "type": "overloaded"}}
            )
            return
        if mode == "flaky":
            key = json.dumps(messages, sort_keys=True)
            refused = self._refused.get(key, 0)
            if refused < self.fail_first:
                self._refused[key] = refused + 1
                record["outcome"] = "refused"
                extra = [] if self.retry_after is None else [(b"retry-after", self.retry_after)]
                await _respond(
                    send,
                    self.fail_status,
                    {"error": {"message": f"the fake upstream refuses ({refused + 1})"}},
                    extra,
                )
                return

        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            record["outcome"] = "disconnected"
            record["sentBeforeDisconnect"] = record["sent"]
            disconnected.set()

        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch())
            # OSError: the client went away while we wrote; the watcher has noted it.
            with contextlib.suppress(OSError):
                await self._stream(send, record, mode, request, disconnected)
            watcher.cancel()

    def _pieces(self, messages: list[dict[str, Any]]) -> list[str]:
        if self.tokens is not None:
            return [f" tok{n}" for n in range(self.tokens)]
        if self.answer is not None:
            return _PIECE.findall(self.answer)
        return _PIECE.findall(f"Echo: {_question(messages)}")

    async def _stream(
        self,
        send: Send,
        record: dict[str, Any],
        mode: Mode,
        request: dict[str, Any],
        disconnected: asyncio.Event,
    ) -> None:
        messages: list[dict[str, Any]] = request["messages"]
        await send({
            "type": "http.response.start", "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        })  # fmt: skip
        await send(
            {
                "type": "http.response.body",
                "body": _chunk({"role": "assistant", "content": ""}),
                "more_body": True,
            }
        )
        delay = self.slow_delay if mode == "slow" else self.delay
        pieces = self._pieces(messages)
        if mode in {"fail", "drop"}:
            pieces = pieces[: self.fail_after]
        elif mode == "surrogate":
            pieces[1:1] = ["\ud83d", "\ude42"]
        if mode == "think":
            thoughts = _PIECE.findall(self.reasoning or f"Thinking about: {_question(messages)}")
            for thought in thoughts:
                if delay:
                    await asyncio.sleep(delay)
                if disconnected.is_set():
                    return
                await send({
                    "type": "http.response.body",
                    "body": _chunk({self.reasoning_field: thought}),
                    "more_body": True,
                })  # fmt: skip
            with contextlib.suppress(TimeoutError):  # thinking, until done or disconnected
                await asyncio.wait_for(disconnected.wait(), self.think_delay)
            if disconnected.is_set():
                return
        finish_reason = "stop"
        max_tokens = request.get("max_tokens")
        if type(max_tokens) is int and len(pieces) > max_tokens:
            pieces, finish_reason = pieces[:max_tokens], "length"
        for number, piece in enumerate(pieces):
            if mode == "stall" and number == self.fail_after:
                await asyncio.sleep(self.slow_delay)
            elif delay and (number or mode == "slow"):
                await asyncio.sleep(delay)
            if disconnected.is_set():
                return
            text = f"{time.monotonic_ns()} " if self.stamp else piece
            await send(
                {"type": "http.response.body", "body": _chunk({"content": text}), "more_body": True}
            )
            record["sent"] += 1
        if mode == "fail":
            error = {
                "error": {"message": "the fake upstream failed mid-answer", "type": "server_error"}
            }
            tail = b"data: " + json.dumps(error).encode() + b"\n\n"
            record["outcome"] = "failed"
        elif mode == "drop":
            tail = b""
            record["outcome"] = "failed"
        else:
            tail = _chunk({}, finish_reason)
            options = request.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                prompt = sum(
                    len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)
                )
                tail += _usage(prompt, record["sent"])
            tail += b"data: [DONE]\n\n"
            record["outcome"] = "done"
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _question(messages: Any) -> str:
    # The last user message (the question), or "" for anything else.
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content", "")
            return content if isinstance(content, str) else ""
    return ""


async def _respond(
    send: Send, status: int, payload: Any, headers: list[tuple[bytes, str]] | None = None
) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name, value.encode()) for name, value in headers or ()),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
