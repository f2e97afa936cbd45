"""The chats and their messages, as create_all made them before schema versions.

A database made then has these two tables and no version table: it is stamped
at this revision, untouched, before the upgrade (``_migrate.upgrade``).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Names and constraints exactly as MetaData.create_all named them (unnamed
    # unique and foreign keys, ix_* indexes), so a stamped old database and a
    # migrated new one end up with the same schema.
    op.create_table(
        "askstream_chats",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_askstream_chats_created_at", "askstream_chats", ["created_at"])
    op.create_table(
        "askstream_messages",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "chat_id",
            sa.String(64),
            sa.ForeignKey("askstream_chats.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("finish_reason", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_askstream_messages_chat_id", "askstream_messages", ["chat_id"])


def downgrade() -> None:
    op.drop_table("askstream_messages")
    op.drop_table("askstream_chats")
