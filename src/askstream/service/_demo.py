"""The offline demo model: what ``askstream serve`` answers with before a real one is set."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from ._backend import ChatMessage, Chunk, ModelOptions, Usage

__all__ = ["DEMO_MODEL", "DemoBackend"]

#: The name the demo answers to where a model is named (``GET /v1/models``).
DEMO_MODEL = "askstream-demo"

# A word with the space before it, as tokenizers cut English; a run of CJK or
# other unspaced text is cut every few characters so it streams too.
_PIECE = re.compile(r"\s*\S{1,8}|\s+")


def demo_answer(messages: Sequence[ChatMessage]) -> str:
    """The demo's answer to a conversation: deterministic, and it says how to configure a model."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "").strip()
    earlier = len(messages) - 1
    context = f" This chat has {earlier} earlier messages." if earlier > 0 else ""
    return (
        f"You asked: “{question}”.{context} No language model is configured, so this "
        "is askstream's offline demo answering. To get real answers, point askstream at "
        "an OpenAI-compatible API: set ASKSTREAM_LLM_URL (for example "
        "https://api.openai.com/v1, or http://localhost:11434/v1 for Ollama), "
        "ASKSTREAM_LLM_MODEL (the model's name) and, if the API needs one, "
        "ASKSTREAM_LLM_API_KEY, then restart askstream serve."
    )


class DemoBackend:
    """A :class:`~askstream.service.Backend` that needs no network: it streams
    :func:`demo_answer` word by word, ``delay`` seconds apart.

    ``sleep`` is the pause between pieces (``asyncio.sleep``); tests pass a fake.
    It honours ``max_tokens`` (a piece is a token: the answer stops there with
    ``finish_reason`` ``"length"``), ignores ``temperature``, and reports
    :class:`Usage` in pieces, the prompt's cut the same way.

    >>> import asyncio
    >>> async def first_words() -> str:
    ...     chunks = DemoBackend(delay=0).stream([{"role": "user", "content": "Hi?"}])
    ...     return "".join([(await anext(chunks)).delta for _ in range(3)])
    >>> asyncio.run(first_words())
    'You asked: “Hi?”.'
    """

    def __init__(
        self,
        *,
        delay: float = 0.03,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.delay = delay
        self._sleep = sleep

    async def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        pieces = _PIECE.findall(demo_answer(messages))
        finish_reason = "stop"
        limit = options.max_tokens if options is not None else None
        if limit is not None and len(pieces) > limit:
            pieces, finish_reason = pieces[:limit], "length"
        for number, piece in enumerate(pieces):
            if number and self.delay:
                await self._sleep(self.delay)
            yield Chunk(piece)
        prompt = sum(len(_PIECE.findall(message["content"])) for message in messages)
        yield Chunk(finish_reason=finish_reason, usage=Usage(prompt, len(pieces)))

    async def aclose(self) -> None:
        return None
