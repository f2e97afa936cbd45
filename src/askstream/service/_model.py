"""What the model is asked: the operator's system prompt and defaults, what a request
may change, and the conversation cut to a token budget.

Every door (``POST /api/ask``, ``/v1/chat/completions``) goes through one
:class:`ModelPolicy`, so that the settings hold whichever door a question
came in by. The two doors differ only in how they treat a field the operator
did not allow: our own API refuses it (``400``: the caller wrote it and can
fix it), the OpenAI door ignores it (OpenAI clients send a temperature of
their own accord, and one refusal would make the door useless to them).

Tokens are estimated, not counted: a tokenizer is model-specific and a heavy
dependency. ``characters / 4`` (rounded up) is OpenAI's own rule of thumb for
English; other scripts have more tokens per character, so leave room.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._backend import ChatMessage, ModelOptions
from ._errors import ServiceError
from ._settings import Settings

__all__ = ["MESSAGE_TOKENS", "ModelPolicy", "estimate_tokens", "fit"]

#: Tokens a message costs beyond its text (its role and separators, as OpenAI counts).
MESSAGE_TOKENS = 4


def estimate_tokens(message: ChatMessage) -> int:
    """A message's tokens, estimated: its characters / 4, rounded up, plus
    :data:`MESSAGE_TOKENS`.

    >>> estimate_tokens({"role": "user", "content": "Why is the sky blue?"})
    9
    """
    return -(-len(message["content"]) // 4) + MESSAGE_TOKENS


def fit(context: Sequence[ChatMessage], question: str, budget: int | None) -> list[ChatMessage]:
    """``context`` cut so that it and ``question`` fit ``budget`` tokens
    (:func:`estimate_tokens`): the oldest turns go first; system messages stay,
    as does the question (which is not in ``context``) even when they alone
    are over. A kept conversation never starts with an answer whose question
    was dropped.

    >>> turns = [{"role": "system", "content": "Be brief."},
    ...          {"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 40},
    ...          {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    >>> [m["content"][:3] for m in fit(turns, "And?", 40)]
    ['Be ', 'Hi', 'Hel']
    >>> [m["content"] for m in fit(turns, "And?", 1)]
    ['Be brief.']
    >>> len(fit(turns, "And?", None))
    5
    """
    if budget is None:
        return list(context)
    used = estimate_tokens({"role": "user", "content": question})
    used += sum(estimate_tokens(m) for m in context if m["role"] == "system")
    kept: list[int] = []  # indexes of the turns kept, newest first
    for index in range(len(context) - 1, -1, -1):
        message = context[index]
        if message["role"] == "system":
            continue
        cost = estimate_tokens(message)
        if used + cost > budget:
            break  # older turns would leave a hole: stop at the first that does not fit
        used += cost
        kept.append(index)
    while kept and context[kept[-1]]["role"] == "assistant":
        kept.pop()  # the answer's question did not fit: without it, it misleads
    chosen = set(kept)
    return [m for i, m in enumerate(context) if m["role"] == "system" or i in chosen]


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """The operator's model settings (:class:`~askstream.service.Settings`), applied
    to a request.

    >>> policy = ModelPolicy(system_prompt="Be brief.", temperature=0.3, overrides=("max_tokens",))
    >>> policy.options(temperature=1.5, max_tokens=64)  # the temperature is not the caller's
    ModelOptions(temperature=0.3, max_tokens=64)
    >>> [m["role"] for m in policy.context([{"role": "user", "content": "Hi"}], "And?")]
    ['system', 'user']
    """

    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    overrides: tuple[str, ...] = ("temperature", "max_tokens")
    context_tokens: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> ModelPolicy:
        """The policy ``settings`` describe."""
        return cls(
            system_prompt=settings.system_prompt,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            overrides=settings.request_overrides,
            context_tokens=settings.context_tokens,
        )

    def allows(self, name: str) -> bool:
        """Whether a request may set ``name`` (``temperature``, ``max_tokens``, ``system``)."""
        return name in self.overrides

    def refuse(self, **requested: object) -> None:
        """``400`` naming the first of ``requested`` (name: value, ``None`` for not
        sent) that a request may not set; for ``POST /api/ask``.

        >>> ModelPolicy(overrides=()).refuse(maxTokens=5, temperature=None)
        Traceback (most recent call last):
        ...
        askstream._exceptions.ServiceError: 400: a request may not set maxTokens (allowed: none)
        """
        for wire, value in requested.items():
            if value is not None and not self.allows(_SETTING.get(wire, wire)):
                allowed = ", ".join(_WIRE.get(name, name) for name in self.overrides)
                raise ServiceError(
                    400, f"a request may not set {wire} (allowed: {allowed or 'none'})"
                )

    def options(
        self, *, temperature: float | None = None, max_tokens: int | None = None
    ) -> ModelOptions:
        """What goes to the back end: the request's values where it may set them
        and did, else the operator's defaults."""
        if temperature is None or not self.allows("temperature"):
            temperature = self.temperature
        if max_tokens is None or not self.allows("max_tokens"):
            max_tokens = self.max_tokens
        return ModelOptions(temperature=temperature, max_tokens=max_tokens)

    def context(
        self, history: Sequence[ChatMessage], question: str, *, system: str | None = None
    ) -> list[ChatMessage]:
        """The messages before ``question``, cut to the token budget (:func:`fit`):
        the operator's system prompt, then ``history``.

        Where a request may set ``system``, its own replaces the operator's:
        ``system`` (``POST /api/ask``), or system messages in ``history`` (the
        OpenAI door, whose clients send the conversation whole). Where it may
        not, the operator's comes first and a client's system messages follow
        it as part of the conversation.
        """
        own = self.allows("system")
        if own and system is not None:
            prompt: str | None = system
        elif own and any(m["role"] == "system" for m in history):
            prompt = None
        else:
            prompt = self.system_prompt
        messages: list[ChatMessage] = [{"role": "system", "content": prompt}] if prompt else []
        return fit([*messages, *history], question, self.context_tokens)


# The names of the overrides on /api/ask's wire, and back.
_WIRE = {"max_tokens": "maxTokens"}
_SETTING = {wire: name for name, wire in _WIRE.items()}
