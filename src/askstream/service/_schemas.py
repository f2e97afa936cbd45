"""The service's JSON on the wire: request validation and the documented shapes.

Wire names are camelCase, as in the founding guide; Python names snake_case.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import Annotated, Literal, TypedDict

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from ._backend import Usage
from ._errors import ServiceError
from ._history import ChatRecord, MessageRecord
from ._text import Text, loads

__all__ = [
    "AskRequest",
    "ChatDetail",
    "ChatList",
    "ChatSummary",
    "DeltaData",
    "DoneData",
    "ErrorBody",
    "ErrorData",
    "MessageOut",
    "UsageData",
    "UsageOut",
    "decode_cursor",
    "encode_cursor",
    "parse_ask",
]


#: A character that is not white space as ``str.strip`` has it, spelled so that
#: JSON Schema's regexes (ECMA-262, whose ``\s`` is another set) read it alike.
_NOT_BLANK_CHAR = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NOT_BLANK = re.compile(_NOT_BLANK_CHAR)


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def _whole_number(value: object) -> object:
    # JSON Schema's "integer" is any number without a fraction: 64.0 is one
    # (JSON Schema 2020-12 validation, 6.1.1), and a strict int is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_Count = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]


class AskRequest(_Wire):
    """``POST /api/ask``'s body."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="ignore"
    )

    chat_id: Text | None = Field(
        default=None, description="The chat to continue; null or absent starts a new one."
    )
    question: Text = Field(
        min_length=1,
        description="The question; not empty or only white space.",
        json_schema_extra={"pattern": _NOT_BLANK_CHAR},
    )

    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description="This ask's temperature, if the server allows it "
        "(`ASKSTREAM_REQUEST_OVERRIDES`; else 400); null or absent: the server's.",
    )
    max_tokens: _Count | None = Field(
        default=None,
        description="The most tokens this answer may have, if the server allows it; "
        "null or absent: the server's.",
    )
    system: Text | None = Field(
        default=None,
        description="A system prompt for this ask in place of the server's, if the server "
        "allows it (not by default); null or absent: the server's.",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if _NOT_BLANK.search(value) is None:
            raise ValueError("must not be empty or only white space")
        return value


def parse_ask(body: bytes) -> AskRequest:
    """Parse and check an ask's body: 400 if it is not JSON (or nests deeper than
    32 levels), 422 if it is the wrong JSON (NUL and lone surrogates included).

    Any ``Content-Type`` is accepted: the founding guide's client sends
    ``text/event-stream`` with its JSON body.
    """
    payload = loads(body)  # 400: not JSON, or nested too deep
    if not isinstance(payload, dict):
        raise ServiceError(422, "the body must be a JSON object")
    try:
        return AskRequest.model_validate(payload)
    except ValidationError as exc:
        raise ServiceError(422, validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    """One line naming each bad field, e.g. ``question: Field required``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class DeltaData(TypedDict):
    """The data of each ``message`` event of an answer."""

    chatId: str
    messageId: str
    delta: str


class UsageData(TypedDict):
    """The tokens an answer cost, as the back end counted them."""

    promptTokens: int
    completionTokens: int
    totalTokens: int


class _DoneFields(TypedDict):
    chatId: str
    messageId: str
    answer: str
    finishReason: str


# total=False rather than NotRequired: with postponed annotations, Python 3.11's
# TypedDict cannot see a NotRequired, and would count usage as required.
class DoneData(_DoneFields, total=False):
    """The data of the ``done`` event that ends an answer; ``usage`` when the back
    end counted it."""

    usage: UsageData


class ErrorData(TypedDict):
    """The data of the ``error`` event that ends a failed answer, and every error body."""

    code: int
    message: str


class ErrorBody(_Wire):
    """Every error response's body."""

    code: int
    message: str


class UsageOut(_Wire):
    """The tokens an answer cost, as the back end counted them (:class:`UsageData`)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


class MessageOut(_Wire):
    """A stored message."""

    message_id: str
    role: Literal["user", "assistant"]
    content: str
    status: Literal["streaming", "complete", "failed", "cancelled"]
    finish_reason: str | None = Field(description="Why the model stopped, once complete.")
    error: str | None = Field(description="What failed, for a failed or cancelled answer.")
    created_at: dt.datetime
    updated_at: dt.datetime
    usage: UsageOut | None = Field(
        default=None,
        description="What the answer cost, as the model counted it; null for questions, "
        "answers still streaming, and back ends that do not count.",
    )
    reasoning: str | None = Field(
        default=None,
        description="A thinking model's reasoning before the answer (the `reasoning` "
        "events), stored when the answer ends; null when it sent none.",
    )

    @classmethod
    def of(cls, record: MessageRecord) -> MessageOut:
        return cls(
            message_id=record.id,
            role=record.role,
            content=record.content,
            status=record.status,
            finish_reason=record.finish_reason,
            error=record.error,
            created_at=record.created_at,
            updated_at=record.updated_at,
            usage=None if record.usage is None else UsageOut.of(record.usage),
            reasoning=record.reasoning,
        )


class ChatSummary(_Wire):
    """A chat in the list."""

    chat_id: str
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, record: ChatRecord) -> ChatSummary:
        return cls(
            chat_id=record.id,
            title=record.title,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class ChatList(_Wire):
    """``GET /api/chats``: a page of the caller's chats, newest first."""

    chats: list[ChatSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one."
    )


def encode_cursor(chat: ChatRecord) -> str:
    """Where the next page starts: after this chat. Opaque to clients."""
    raw = json.dumps([chat.created_at.isoformat(), chat.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> ChatRecord:
    """The chat :func:`encode_cursor` made ``cursor`` from (its key fields); 400 if
    the cursor is not one of ours."""
    refused = ServiceError(400, "cursor is not a nextCursor this service gave out")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, chat_id = json.loads(raw)
        when = dt.datetime.fromisoformat(created)
    except (ValueError, TypeError, binascii.Error):
        raise refused from None
    if not isinstance(chat_id, str) or when.tzinfo is None:
        raise refused
    return ChatRecord(chat_id, "", when, when)


class ChatDetail(ChatSummary):
    """``GET /api/chats/{chatId}``: a chat and its messages, oldest first."""

    messages: list[MessageOut]
