"""The offline demo model: what ``askstream serve`` answers with before a real one is set."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from ._backend import ChatMessage, Chunk

__all__ = ["DemoBackend"]

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

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[Chunk, None]:
        for number, piece in enumerate(_PIECE.findall(demo_answer(messages))):
            if number and self.delay:
                await self._sleep(self.delay)
            yield Chunk(piece)
        yield Chunk(finish_reason="stop")

    async def aclose(self) -> None:
        return None
