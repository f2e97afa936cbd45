"""Chats get an owner (issue 11): who asked, and an index for one owner's list.

Chats made before have the owner ``''``, which no user is: they stay in the
database but no one lists or opens them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A server default, so that ADD COLUMN ... NOT NULL fills the rows already
    # there (SQLite refuses a NOT NULL column without one).
    op.add_column(
        "askstream_chats",
        sa.Column("owner", sa.String(100), nullable=False, server_default=""),
    )
    op.create_index("askstream_chats_owner_created", "askstream_chats", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_index("askstream_chats_owner_created", table_name="askstream_chats")
    # In place (SQLite 3.35 or newer), not Alembic's batch mode: that copies the
    # table and drops the old one, and with foreign keys on, dropping a chat
    # row cascades to its messages.
    op.drop_column("askstream_chats", "owner")
