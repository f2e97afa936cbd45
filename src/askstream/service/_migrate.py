"""The chat history's schema versions, with Alembic: upgrade to the newest, or check.

The revisions are in ``migrations/versions`` (shipped in the package), one per
change of the tables, and the database records the one it is at in
``askstream_alembic_version`` (our own name: the tables may share a database
with an application that keeps its own ``alembic_version``).

A database made before schema versions (by ``create_all``, with no version
table) is recognised by its tables and stamped with the revision they are, then
upgraded as any other: at 0001 when its chats have no ``owner`` column, at 0002
when they have one (added by hand at start, between issues 11 and 16).

Several instances may start at once on one database, and every one upgrades;
two upgrades must not interleave. The whole upgrade, stamp included, is one
transaction that first takes a lock:

- PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key. The first instance
  upgrades; the others wait on the lock until it commits, then find the newest
  revision and change nothing. DDL is transactional there, so an upgrade that
  fails leaves the schema as it was.
- SQLite: ``BEGIN IMMEDIATE``, which takes the file's write lock. Another
  process waits in SQLite's busy handler (``busy_timeout``, 5 s) and then finds
  the newest revision; SQLite's DDL is transactional too.

The errors an operator sees at start are :class:`SchemaError`, an
:class:`~askstream.AskstreamError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine

from .._exceptions import SchemaError

__all__ = ["VERSION_TABLE", "SchemaError", "Upgrade", "check", "head", "upgrade"]

logger = logging.getLogger("askstream.service")

VERSION_TABLE = "askstream_alembic_version"
_SCRIPTS = Path(__file__).with_name("migrations")
# The advisory lock's one key, the same in every instance: b"askstrea" as a
# big-endian bigint. Advisory locks are per database, so other databases'
# askstreams do not wait on it.
_LOCK_KEY = int.from_bytes(b"askstrea", "big")
# The revisions a database without a version table can be: the schema as
# create_all made it before chats had owners, and after.
_OWNERLESS, _OWNED = "0001", "0002"


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What an upgrade did: the revision found (``None``: an empty database) and the
    one reached."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    # A ConfigParser value: % would start an interpolation.
    config.set_main_option("script_location", str(_SCRIPTS).replace("%", "%%"))
    config.attributes["connection"] = connection  # for env.py
    return config


def head() -> str:
    """The newest revision this askstream knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None  # the scripts ship with the package
    return revision


def _recorded(connection: sa.Connection) -> str | None:
    # Read directly rather than through a MigrationContext, which logs two
    # lines at INFO each time it is made: at every start, for nothing.
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
    revision: str | None = connection.scalar(sa.select(version.c.version_num))
    return revision


def _unversioned(connection: sa.Connection) -> str | None:
    """The revision of tables made before schema versions (``None``: no tables)."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("askstream_chats"):
        return None
    columns = {column["name"] for column in inspector.get_columns("askstream_chats")}
    return _OWNED if "owner" in columns else _OWNERLESS


def _lock(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # The sqlite3 module opens no transaction before DDL and SQLAlchemy's
        # begin() sends nothing: this is the transaction's start, and commit()
        # ends it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: sa.Connection) -> Upgrade:
    _lock(connection)
    recorded = _recorded(connection)
    if recorded is not None and recorded == head():
        return Upgrade(recorded, recorded)  # the usual start: nothing for Alembic to do
    before = recorded if recorded is not None else _unversioned(connection)
    config = _config(connection)
    if before is not None:
        _known(before)
        if recorded is None:
            command.stamp(config, before)
    command.upgrade(config, "head")
    after = _recorded(connection)
    assert after is not None
    return Upgrade(before, after)


def _known(revision: str) -> None:
    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except CommandError:
        raise SchemaError(
            f"the database's schema is at revision {revision}, which this askstream does "
            f"not know (its newest is {head()}): a newer askstream upgraded it"
        ) from None


async def upgrade(engine: AsyncEngine) -> Upgrade:
    """Bring the schema behind ``engine`` to the newest revision, under a lock;
    an empty database gets every table."""
    async with engine.begin() as connection:
        done = await connection.run_sync(_upgrade)
    if done.changed:
        logger.info(
            "askstream: database schema upgraded from %s to %s",
            done.before or "nothing",
            done.after,
        )
    return done


async def check(engine: AsyncEngine) -> None:
    """Raise :class:`SchemaError` unless the schema is at the newest revision."""
    async with engine.connect() as connection:
        recorded = await connection.run_sync(_recorded)
    newest = head()
    if recorded != newest:
        found = "has no schema version" if recorded is None else f"is at revision {recorded}"
        raise SchemaError(
            f"the database {found}, this askstream needs {newest}: run `askstream db upgrade` "
            "(or start with ASKSTREAM_DB_UPGRADE=true)"
        )
