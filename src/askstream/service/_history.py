"""Chat history in SQL, through SQLAlchemy 2's async Core: SQLite or PostgreSQL.

Two tables, prefixed so they can share a database with others. A message row is
written when its answer starts (status ``streaming``), rewritten with the text
so far at least every ``save_interval`` (:meth:`ChatHistory.save_progress`, one
transaction for every answer in flight), and closed with its final status. A
crash therefore leaves ``streaming`` or ``failed`` behind, never nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from . import _migrate
from ._backend import ChatMessage, Usage
from ._errors import ServiceError

__all__ = ["ChatHistory", "ChatRecord", "MessageRecord", "MessageStatus"]

MessageStatus = Literal["streaming", "complete", "failed", "cancelled"]
Role = Literal["user", "assistant"]

# The tables as the newest revision of migrations/versions makes them: a change
# here is a new revision there (tests/service/test_migrations.py compares them).
_metadata = sa.MetaData()

_chats = sa.Table(
    "askstream_chats",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # Who asked: a token's user name, or "anon:<hex>" for a browser session.
    sa.Column("owner", sa.String(100), nullable=False, server_default=""),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # One user's chats, newest first: the list's one query.
    sa.Index("askstream_chats_owner_created", "owner", "created_at"),
)

_messages = sa.Table(
    "askstream_messages",
    _metadata,
    # The autoincrement key orders a chat's messages: a question and its answer
    # are written in one transaction, often within the same clock tick.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "chat_id",
        sa.String(64),
        sa.ForeignKey("askstream_chats.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("finish_reason", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # What the answer cost, as the back end counted it (null: it did not say).
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    # A thinking model's reasoning, written when the answer ends (null: none).
    sa.Column("reasoning", sa.Text),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _title(question: str) -> str:
    # The first line, cut at CR/LF only: str.splitlines() would also cut at
    # U+2028 and friends, which are text here.
    first = re.split(r"\r\n|\r|\n", question.strip(), maxsplit=1)[0]
    return first.strip()[:100]


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite keeps no zone: every time we write is UTC, so a naive one read back is too.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A chat as stored."""

    id: str
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime
    owner: str = ""


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One stored message; an assistant message's ``content`` grows while it streams."""

    id: str
    role: Role
    content: str
    status: MessageStatus
    finish_reason: str | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    usage: Usage | None = None
    reasoning: str | None = None


def _chat(row: sa.Row[Any]) -> ChatRecord:
    return ChatRecord(row.id, row.title, _utc(row.created_at), _utc(row.updated_at), row.owner)


def _message(row: sa.Row[Any]) -> MessageRecord:
    return MessageRecord(
        row.id,
        cast("Role", row.role),
        row.content,
        cast("MessageStatus", row.status),
        row.finish_reason,
        row.error,
        _utc(row.created_at),
        _utc(row.updated_at),
        None
        if row.prompt_tokens is None or row.completion_tokens is None
        else Usage(row.prompt_tokens, row.completion_tokens),
        row.reasoning,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite: needed for CASCADE
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the periodic saves
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across app crashes
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # One connection: SQLite has one writer at a time, and writers that
            # collide wait in its busy handler's sleeps (up to 100 ms each); in
            # SQLAlchemy's pool queue they wait on the event loop instead.
            engine = create_async_engine(url, pool_size=1, max_overflow=0)
        else:  # one in-memory database lives as long as its one connection
            engine = create_async_engine(url, poolclass=StaticPool)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


class ChatHistory:
    """The chats and their messages, in the database behind ``engine``.

    >>> import asyncio
    >>> async def main() -> list[str]:
    ...     history = ChatHistory(create_engine("sqlite+aiosqlite:///:memory:"))
    ...     await history.create_tables()
    ...     await history.begin_answer("c1", "Hi?", "u1", "a1", new_chat=True)
    ...     await history.finish_answer("a1", "Hello!", "complete", "stop")
    ...     messages = await history.messages("c1")
    ...     await history.aclose()
    ...     return [f"{m.role}: {m.content} ({m.status})" for m in messages]
    >>> asyncio.run(main())
    ['user: Hi? (complete)', 'assistant: Hello! (complete)']
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self, *, upgrade: bool = True) -> None:
        """Bring the schema to the newest revision (``_migrate.upgrade``: an empty
        database gets every table, an old one its changes), or with ``upgrade``
        off only check that it is there (:class:`~._migrate.SchemaError` if not)."""
        if upgrade:
            await _migrate.upgrade(self.engine)
        else:
            await _migrate.check(self.engine)

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def list_chats(
        self, owner: str, *, limit: int = 50, after: ChatRecord | None = None
    ) -> list[ChatRecord]:
        """``owner``'s chats, newest first: at most ``limit``, those that come after
        ``after`` in that order (a page's last chat: keyset pagination, so a chat
        made meanwhile neither repeats nor hides one)."""
        query = sa.select(_chats).where(_chats.c.owner == owner)
        if after is not None:
            query = query.where(
                sa.or_(
                    _chats.c.created_at < after.created_at,
                    sa.and_(_chats.c.created_at == after.created_at, _chats.c.id > after.id),
                )
            )
        query = query.order_by(_chats.c.created_at.desc(), _chats.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [_chat(row) for row in await conn.execute(query)]

    async def chat(self, chat_id: str, owner: str) -> ChatRecord | None:
        """The chat, if it exists and is ``owner``'s: another user's is ``None``, as
        one that never existed."""
        query = sa.select(_chats).where(_chats.c.id == chat_id, _chats.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _chat(row)

    async def owner(self, chat_id: str) -> str | None:
        """Whose chat ``chat_id`` is; ``None`` if there is no such chat. For a door
        whose clients name new chats themselves (the AI SDK's ``POST /api/chat``):
        a new id, the caller's chat, or another user's."""
        query = sa.select(_chats.c.owner).where(_chats.c.id == chat_id)
        async with self.engine.connect() as conn:
            owner: str | None = await conn.scalar(query)
        return owner

    async def streaming_answer(self, chat_id: str) -> str | None:
        """The id of the chat's newest answer still ``streaming``, if any."""
        query = (
            sa.select(_messages.c.id)
            .where(
                _messages.c.chat_id == chat_id,
                _messages.c.role == "assistant",
                _messages.c.status == "streaming",
            )
            .order_by(_messages.c.seq.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            answer_id: str | None = await conn.scalar(query)
        return answer_id

    async def messages(self, chat_id: str) -> list[MessageRecord]:
        """A chat's messages, oldest first."""
        query = sa.select(_messages).where(_messages.c.chat_id == chat_id).order_by(_messages.c.seq)
        async with self.engine.connect() as conn:
            return [_message(row) for row in await conn.execute(query)]

    async def context(self, chat_id: str, owner: str, limit: int) -> list[ChatMessage] | None:
        """The last ``limit`` turns to send the model, oldest first; ``None`` for no such
        chat of ``owner``'s.

        Questions always count; answers only once complete, since a failed or
        cancelled one is a fragment the model would take as its own words.
        """
        query = (
            sa.select(_messages.c.role, _messages.c.content)
            .where(
                _messages.c.chat_id == chat_id,
                sa.or_(_messages.c.role == "user", _messages.c.status == "complete"),
            )
            .order_by(_messages.c.seq.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            exists = await conn.scalar(
                sa.select(_chats.c.id).where(_chats.c.id == chat_id, _chats.c.owner == owner)
            )
            if exists is None:
                return None
            rows = (await conn.execute(query)).all() if limit else []
        return [
            ChatMessage(role=cast("Role", row.role), content=row.content) for row in reversed(rows)
        ]

    async def begin_answer(
        self,
        chat_id: str,
        question: str,
        question_id: str,
        answer_id: str,
        *,
        new_chat: bool,
        owner: str = "",
        first: str = "",
    ) -> None:
        """Store a question and its answer-to-be (``streaming``, holding ``first``), in one
        transaction that also creates the chat, ``owner``'s, when ``new_chat``.

        A new chat whose id is taken (a client names its chats, and two requests
        made the same one at once) is :class:`ServiceError` 409, and nothing is stored.
        """
        now = _now()
        async with self.engine.begin() as conn:
            if new_chat:
                title = _title(question)
                insert = _chats.insert().values(
                    id=chat_id, owner=owner, title=title, created_at=now, updated_at=now
                )
                try:
                    await conn.execute(insert)
                except sa.exc.IntegrityError:
                    raise ServiceError(
                        409, f"chat {chat_id!r} was just made by another request; send again"
                    ) from None
            else:
                await conn.execute(
                    _chats.update().where(_chats.c.id == chat_id).values(updated_at=now)
                )
            await conn.execute(
                _messages.insert(),
                [
                    {"id": question_id, "chat_id": chat_id, "role": "user",
                     "content": question, "status": "complete",
                     "created_at": now, "updated_at": now},
                    {"id": answer_id, "chat_id": chat_id, "role": "assistant",
                     "content": first, "status": "streaming",
                     "created_at": now, "updated_at": now},
                ],
            )  # fmt: skip

    async def discard_answer(
        self, chat_id: str, question_id: str, answer_id: str, *, chat: bool
    ) -> None:
        """Remove what :meth:`begin_answer` wrote, the chat too when ``chat``: an ask
        that failed before its answer began leaves nothing."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _messages.delete().where(_messages.c.id.in_([question_id, answer_id]))
            )
            if chat:
                await conn.execute(_chats.delete().where(_chats.c.id == chat_id))

    async def save_progress(self, answers: Mapping[str, str]) -> None:
        """Write the text so far of every answer in ``answers`` (id → text), in one
        transaction. Answers that are no longer ``streaming`` are left alone, so
        a late periodic save never overwrites a final one."""
        if not answers:
            return
        statement = (
            _messages.update()
            .where(_messages.c.id == sa.bindparam("b_id"), _messages.c.status == "streaming")
            .values(content=sa.bindparam("b_content"), updated_at=_now())
        )
        rows = [{"b_id": key, "b_content": text} for key, text in answers.items()]
        async with self.engine.begin() as conn:
            await conn.execute(statement, rows)

    async def finish_answer(
        self,
        answer_id: str,
        content: str,
        status: MessageStatus,
        finish_reason: str | None = None,
        error: str | None = None,
        *,
        usage: Usage | None = None,
        reasoning: str | None = None,
    ) -> None:
        """Write an answer's final text and status, for a failed one what failed, and
        what the back end said it cost and thought, when it did."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _messages.update()
                .where(_messages.c.id == answer_id)
                .values(
                    content=content,
                    status=status,
                    finish_reason=finish_reason,
                    error=error,
                    prompt_tokens=None if usage is None else usage.prompt_tokens,
                    completion_tokens=None if usage is None else usage.completion_tokens,
                    reasoning=reasoning,
                    updated_at=_now(),
                )
            )

    async def fail_answer(self, answer_id: str, error: str, content: str | None = None) -> bool:
        """Mark an answer that is still ``streaming`` as ``failed`` with ``error`` (and
        its final ``content``, when known); ``False`` if it was not streaming.

        For an answer whose producer died: whoever notices may call it, more
        than once, and it never overwrites an answer that ended otherwise.
        """
        values: dict[str, Any] = {"status": "failed", "error": error, "updated_at": _now()}
        if content is not None:
            values["content"] = content
        async with self.engine.begin() as conn:
            result = await conn.execute(
                _messages.update()
                .where(_messages.c.id == answer_id, _messages.c.status == "streaming")
                .values(**values)
            )
        return bool(result.rowcount)

    async def stale_answers(self, idle: float, limit: int = 100) -> list[str]:
        """Ids of answers still ``streaming`` whose row nobody wrote for ``idle``
        seconds (at most ``limit``, oldest first): candidates for an answer
        whose producer is gone (see ``_reaper.sweep_once``)."""
        before = _now() - dt.timedelta(seconds=idle)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(_messages.c.id)
                .where(
                    _messages.c.status == "streaming",
                    _messages.c.role == "assistant",
                    _messages.c.updated_at < before,
                )
                .order_by(_messages.c.updated_at)
                .limit(limit)
            )
            return [row.id for row in rows]

    async def delete_chat(self, chat_id: str, owner: str) -> bool:
        """Delete a chat of ``owner``'s and its messages; ``False`` if there was no such chat."""
        async with self.engine.begin() as conn:
            mine = _chats.c.id == chat_id, _chats.c.owner == owner
            if await conn.scalar(sa.select(_chats.c.id).where(*mine)) is None:
                return False
            # Explicit, not only ON DELETE CASCADE: it must not hang on a pragma.
            await conn.execute(_messages.delete().where(_messages.c.chat_id == chat_id))
            result = await conn.execute(_chats.delete().where(*mine))
        return bool(result.rowcount)
