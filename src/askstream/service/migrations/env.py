"""Alembic's environment for the chat history, run by ``askstream.service._migrate``.

Migrations always run on a connection the caller already holds (Alembic's
"sharing a connection" recipe, ``config.attributes["connection"]``): the caller
opens it on the service's async engine and calls into Alembic through
``AsyncConnection.run_sync``, inside the transaction that holds the upgrade lock.
So this script never makes an engine nor reads a URL of its own.
"""

from __future__ import annotations

from alembic import context

from askstream.service._migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "askstream's migrations run through `askstream db upgrade` (or at the service's "
        "start), not through the alembic command"
    )
context.configure(
    connection=connection,
    # Our own name: the tables share a database with others, which may keep
    # their own Alembic history in the default alembic_version.
    version_table=VERSION_TABLE,
)
# The caller's transaction is already open, so this one is a no-op: every
# revision commits (or rolls back) with the lock, as one.
with context.begin_transaction():
    context.run_migrations()
