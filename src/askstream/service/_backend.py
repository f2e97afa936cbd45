"""What an LLM back end is to the service: messages in, a stream of chunks out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

__all__ = ["Backend", "ChatMessage", "Chunk"]


class ChatMessage(TypedDict):
    """One turn of a conversation, in the OpenAI chat shape a back end is sent.

    >>> message: ChatMessage = {"role": "user", "content": "Why is the sky blue?"}
    """

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True)
class Chunk:
    """A piece of an answer: some text, and on the last one why the model stopped.

    >>> Chunk("Hel"), Chunk("", finish_reason="stop")
    (Chunk(delta='Hel', finish_reason=None), Chunk(delta='', finish_reason='stop'))
    """

    delta: str = ""
    finish_reason: str | None = None


class Backend(Protocol):
    """An LLM back end: :class:`~askstream.service.DemoBackend` (offline) or
    :class:`~askstream.service.OpenAIBackend` (any ``/v1/chat/completions``).

    :meth:`stream` is an async generator. Whoever iterates it must close it
    (``contextlib.aclosing``) so that stopping early closes the upstream request
    at once. It raises :class:`~askstream.service.UpstreamError` for every
    failure of the model's side.

    >>> from contextlib import aclosing
    >>> async def answer(backend: Backend) -> str:
    ...     async with aclosing(backend.stream([{"role": "user", "content": "Hi"}])) as chunks:
    ...         return "".join([chunk.delta async for chunk in chunks])
    """

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[Chunk, None]:
        """Answer the conversation ``messages`` (oldest first), piece by piece."""
        ...

    async def aclose(self) -> None:
        """Release what the back end holds (connections); it is not used after."""
        ...
