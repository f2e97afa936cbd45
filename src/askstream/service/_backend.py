"""What an LLM back end is to the service: messages in, a stream of chunks out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

__all__ = ["Backend", "ChatMessage", "Chunk", "ModelOptions", "Usage"]


class ChatMessage(TypedDict):
    """One turn of a conversation, in the OpenAI chat shape a back end is sent.

    >>> message: ChatMessage = {"role": "user", "content": "Why is the sky blue?"}
    """

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens an answer cost, as the model counted them (OpenAI's ``usage``).

    >>> Usage(prompt_tokens=12, completion_tokens=30).total_tokens
    42
    """

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt and completion together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """What a request asks of the model beyond the messages; ``None`` leaves the
    back end's default. Forwarded upstream as OpenAI's ``temperature`` and
    ``max_tokens``.

    >>> ModelOptions(temperature=0.2, max_tokens=256)
    ModelOptions(temperature=0.2, max_tokens=256)
    """

    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(slots=True)
class Chunk:
    """A piece of an answer: some text, and on the last one why the model stopped
    and, if the back end counted it, the :class:`Usage`. A thinking model's
    thoughts come before the answer as chunks with ``reasoning`` text.

    >>> Chunk("Hel")
    Chunk(delta='Hel', finish_reason=None, usage=None, reasoning='')
    >>> Chunk("", finish_reason="stop", usage=Usage(5, 7)).usage.total_tokens
    12
    >>> Chunk(reasoning="The user greets me.").reasoning
    'The user greets me.'
    """

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    reasoning: str = ""


class Backend(Protocol):
    """An LLM back end: :class:`~askstream.service.DemoBackend` (offline) or
    :class:`~askstream.service.OpenAIBackend` (any ``/v1/chat/completions``).

    :meth:`stream` is an async generator. Whoever iterates it must close it
    (``contextlib.aclosing``) so that stopping early closes the upstream request
    at once. It raises :class:`~askstream.service.UpstreamError` for every
    failure of the model's side.

    ``options`` carries the request's settings (:class:`ModelOptions`; ``None``:
    the back end's defaults); a back end that cannot honour one ignores it. The
    last chunk carries the :class:`Usage` when the back end knows it.

    >>> from contextlib import aclosing
    >>> async def answer(backend: Backend) -> str:
    ...     async with aclosing(backend.stream([{"role": "user", "content": "Hi"}])) as chunks:
    ...         return "".join([chunk.delta async for chunk in chunks])
    """

    def stream(
        self, messages: Sequence[ChatMessage], options: ModelOptions | None = None
    ) -> AsyncGenerator[Chunk, None]:
        """Answer the conversation ``messages`` (oldest first), piece by piece."""
        ...

    async def aclose(self) -> None:
        """Release what the back end holds (connections); it is not used after."""
        ...
