"""Messages keep what they cost and what the model thought (issue 15): the usage the
back end counted (``prompt_tokens``, ``completion_tokens``) and a thinking model's
``reasoning``.

All three are nullable: messages written before, and answers of back ends that
count nothing or do not think, have none.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("askstream_messages", sa.Column("prompt_tokens", sa.Integer))
    op.add_column("askstream_messages", sa.Column("completion_tokens", sa.Integer))
    op.add_column("askstream_messages", sa.Column("reasoning", sa.Text))


def downgrade() -> None:
    # In place (SQLite 3.35 or newer), not Alembic's batch mode: that copies the
    # table and drops the old one, and with foreign keys on, dropping a row of a
    # table that others reference cascades.
    op.drop_column("askstream_messages", "reasoning")
    op.drop_column("askstream_messages", "completion_tokens")
    op.drop_column("askstream_messages", "prompt_tokens")
