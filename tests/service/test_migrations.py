"""Schema versions (service/_migrate.py, service/migrations): databases made by the
previous schema are upgraded with their rows, on SQLite and PostgreSQL alike.

"The previous schema" is the tables as ``create_all`` made them before chats had
owners (commit 90f2992), copied here as they were, not imported: the test must
not move when the package's tables do. So is the schema of revision 0002
(chats with owners; messages without usage or reasoning), as issue 11's
``create_all`` left it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from askstream.service import Usage, _migrate
from askstream.service._history import ChatHistory, _metadata, create_engine
from askstream.service._migrate import VERSION_TABLE, SchemaError, Upgrade

from .conftest import StartService, ask

pytestmark = pytest.mark.anyio

ASKSTREAM = [sys.executable, "-m", "askstream.cli"]
WHEN = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)

# -- the schema before versions (90f2992:src/askstream/service/_history.py) -------

_old = sa.MetaData()
sa.Table(
    "askstream_chats",
    _old,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "askstream_messages",
    _old,
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
)

# -- revision 0002's schema (create_all between issues 11 and 16) ---------------------

_owned = sa.MetaData()
for _table in _old.tables.values():
    _table.to_metadata(_owned)
_owned_chats = _owned.tables["askstream_chats"]
_owned_chats.append_column(sa.Column("owner", sa.String(100), nullable=False, server_default=""))
sa.Index("askstream_chats_owner_created", _owned_chats.c.owner, _owned_chats.c.created_at)

OLD_CHATS = [
    {"id": "old1", "title": "Why is the sky blue?", "created_at": WHEN, "updated_at": WHEN},
    {"id": "old2", "title": "中文 🙂", "created_at": WHEN, "updated_at": WHEN},
]
OLD_MESSAGES = [
    {"id": "q1", "chat_id": "old1", "role": "user", "content": "Why is the sky blue?",
     "status": "complete", "finish_reason": None, "error": None},
    {"id": "a1", "chat_id": "old1", "role": "assistant", "content": "Rayleigh scattering.",
     "status": "complete", "finish_reason": "stop", "error": None},
    {"id": "q2", "chat_id": "old2", "role": "user", "content": "中文 🙂",
     "status": "complete", "finish_reason": None, "error": None},
    {"id": "a2", "chat_id": "old2", "role": "assistant", "content": "半",
     "status": "failed", "finish_reason": None, "error": "the model stopped"},
]  # fmt: skip


async def make_old(url: str, metadata: sa.MetaData = _old) -> None:
    """A database as an askstream before schema versions left it: its tables, by
    create_all, and a few chats in them."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        chats, messages = metadata.tables["askstream_chats"], metadata.tables["askstream_messages"]
        await conn.execute(chats.insert(), OLD_CHATS)
        stamps = {"created_at": WHEN, "updated_at": WHEN}
        await conn.execute(messages.insert(), [{**row, **stamps} for row in OLD_MESSAGES])
    await engine.dispose()


def _ours(name: str | None, type_: str, _parents: Any) -> bool:
    return type_ != "table" or ((name or "").startswith("askstream_") and name != VERSION_TABLE)


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": _ours}
    )
    return list(compare_metadata(context, _metadata))


async def differences(engine: AsyncEngine) -> list[Any]:
    """What the schema in the database lacks or has beyond the package's tables."""
    async with engine.connect() as conn:
        return await conn.run_sync(_differences)


async def rows(engine: AsyncEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        chats = await conn.execute(sa.text("SELECT id, title FROM askstream_chats ORDER BY id"))
        messages = await conn.execute(
            sa.text(
                "SELECT id, chat_id, role, content, status, finish_reason, error "
                "FROM askstream_messages ORDER BY seq"
            )
        )
        return [tuple(row) for row in chats], [tuple(row) for row in messages]


OLD_ROWS = (
    [(chat["id"], chat["title"]) for chat in OLD_CHATS],
    [tuple(message.values()) for message in OLD_MESSAGES],
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'askstream.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def history(database_url: str) -> Any:
    history = ChatHistory(create_engine(database_url))
    yield history
    await history.aclose()


# -- upgrades ---------------------------------------------------------------------


async def test_a_database_of_the_previous_schema_is_upgraded_with_its_rows(
    database_url: str, history: ChatHistory
) -> None:
    await make_old(database_url)
    assert await differences(history.engine)  # the owner column and its index are missing

    assert await _migrate.upgrade(history.engine) == Upgrade("0001", _migrate.head())

    assert await differences(history.engine) == []
    assert await rows(history.engine) == OLD_ROWS
    # Old chats belong to nobody: the owner '' is no user's, so no one lists them.
    old = await history.chat("old1", "")
    assert old is not None
    assert old.owner == ""
    assert (old.title, old.created_at) == ("Why is the sky blue?", WHEN)
    assert [m.content for m in await history.messages("old1")] == [
        "Why is the sky blue?",
        "Rayleigh scattering.",
    ]
    # ... and the new code writes and reads beside them.
    await history.begin_answer("new", "Hi?", "q3", "a3", new_chat=True, owner="ann")
    assert [chat.id for chat in await history.list_chats("ann")] == ["new"]


async def test_a_fresh_database_reaches_the_newest_revision(history: ChatHistory) -> None:
    assert await _migrate.upgrade(history.engine) == Upgrade(None, _migrate.head())
    assert await differences(history.engine) == []
    await _migrate.check(history.engine)


async def test_upgrading_again_changes_nothing(database_url: str, history: ChatHistory) -> None:
    await make_old(database_url)
    await history.create_tables()
    again = await _migrate.upgrade(history.engine)
    assert again == Upgrade(_migrate.head(), _migrate.head())
    assert not again.changed
    await history.create_tables()
    assert await differences(history.engine) == []
    assert await rows(history.engine) == OLD_ROWS


async def test_tables_made_with_owners_but_no_version_are_taken_as_0002(
    database_url: str, history: ChatHistory
) -> None:
    # What create_all and the hand-written owner step made between issues 11 and 16.
    await make_old(database_url, _owned)
    assert await _migrate.upgrade(history.engine) == Upgrade("0002", _migrate.head())
    assert await differences(history.engine) == []
    assert await rows(history.engine) == OLD_ROWS


async def test_a_revision_from_a_newer_askstream_is_refused_by_name(
    history: ChatHistory,
) -> None:
    await _migrate.upgrade(history.engine)
    async with history.engine.begin() as conn:
        await conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    with pytest.raises(SchemaError, match="at revision 0099, which this askstream does not know"):
        await _migrate.upgrade(history.engine)


async def test_with_upgrades_off_an_old_database_is_refused_and_left_alone(
    database_url: str, history: ChatHistory
) -> None:
    await make_old(database_url)
    with pytest.raises(SchemaError, match=r"has no schema version.*`askstream db upgrade`"):
        await history.create_tables(upgrade=False)
    assert await differences(history.engine)  # untouched
    await history.create_tables()
    await history.create_tables(upgrade=False)  # at the newest: no complaint


async def test_messages_of_0002_get_usage_and_reasoning_columns_empty(
    database_url: str, history: ChatHistory
) -> None:
    await make_old(database_url, _owned)
    await history.create_tables()
    assert await differences(history.engine) == []
    old = {m.id: m for m in await history.messages("old1")}
    assert (old["a1"].usage, old["a1"].reasoning) == (None, None)
    # The new code writes both beside the old rows, and reads them back.
    await history.begin_answer("old1", "And?", "q3", "a3", new_chat=False)
    await history.finish_answer(
        "a3", "Mie.", "complete", "stop", usage=Usage(7, 2), reasoning="Think."
    )
    new = (await history.messages("old1"))[-1]
    assert (new.id, new.usage, new.reasoning) == ("a3", Usage(7, 2), "Think.")
    assert (await rows(history.engine))[1][:4] == OLD_ROWS[1]


def _downgrade_and_upgrade(connection: sa.Connection, revision: str) -> None:
    config = _migrate._config(connection)
    command.downgrade(config, revision)
    command.upgrade(config, "head")


@pytest.mark.parametrize("revision", ["0001", "0002"])
async def test_downgrading_and_back_keeps_the_rows(
    database_url: str, history: ChatHistory, revision: str
) -> None:
    await make_old(database_url)
    await history.create_tables()
    async with history.engine.begin() as conn:
        await conn.run_sync(_downgrade_and_upgrade, revision)
    assert await differences(history.engine) == []
    assert await rows(history.engine) == OLD_ROWS


async def test_upgrades_started_together_take_turns(database_url: str) -> None:
    # Three instances starting at once on one empty database: without the lock
    # two of them create the same tables (and fail) or stamp twice.
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        done = await asyncio.gather(*(_migrate.upgrade(engine) for engine in engines))
        assert sorted(done, key=lambda upgrade: upgrade.before or "") == [
            Upgrade(None, _migrate.head()),
            Upgrade(_migrate.head(), _migrate.head()),
            Upgrade(_migrate.head(), _migrate.head()),
        ]
        assert await differences(engines[0]) == []
    finally:
        for engine in engines:
            await engine.dispose()


# -- the command and the service ------------------------------------------------------


def db_upgrade(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")}
    return subprocess.run(
        [*ASKSTREAM, "db", "upgrade", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **env},
    )


async def test_askstream_db_upgrade_upgrades_an_old_sqlite_file_once(tmp_path: Path) -> None:
    database = tmp_path / "data" / "askstream.db"
    await make_old(f"sqlite+aiosqlite:///{database}")
    first = db_upgrade("--data-dir", str(database.parent))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"database sqlite+aiosqlite:///{database}: upgraded from 0001 to 0003\n"
    second = db_upgrade(ASKSTREAM_DATA_DIR=str(database.parent))
    assert second.returncode == 0, second.stderr
    assert second.stdout.endswith("already at 0003, the newest\n")
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        assert await differences(engine) == []
        assert await rows(engine) == OLD_ROWS
    finally:
        await engine.dispose()


async def test_askstream_db_upgrade_run_three_times_at_once_on_postgresql(
    pg_database: str,
) -> None:
    await make_old(pg_database)
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")}

    async def run() -> str:
        process = await asyncio.create_subprocess_exec(
            *ASKSTREAM,
            "db",
            "upgrade",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**base, "ASKSTREAM_DATABASE_URL": pg_database},
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    results = await asyncio.gather(run(), run(), run())
    said = sorted(out.split(": ", 1)[1] for out in results)
    assert said == [
        "already at 0003, the newest\n",
        "already at 0003, the newest\n",
        "upgraded from 0001 to 0003\n",
    ]
    engine = create_engine(pg_database)
    try:
        assert await differences(engine) == []
        assert await rows(engine) == OLD_ROWS
    finally:
        await engine.dispose()


def test_askstream_db_upgrade_says_what_failed_and_hides_the_password() -> None:
    result = db_upgrade("--database-url", "postgresql+asyncpg://me:secret@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "askstream: cannot upgrade the database postgresql+asyncpg://me:***@127.0.0.1:1/nowhere: "
    )
    assert "secret" not in result.stderr


async def test_the_service_starts_on_an_old_database_and_serves_new_chats_beside_it(
    tmp_path: Path, start_service: StartService, client: httpx.AsyncClient
) -> None:
    data = tmp_path / "old"
    url = f"sqlite+aiosqlite:///{data / 'askstream.db'}"
    await make_old(url)
    service = start_service(data)  # ASKSTREAM_DB_UPGRADE is on by default
    answer = await ask(client, service.url, "new here?")
    listed = (await client.get(f"{service.url}/api/chats")).json()
    # The old chats have no owner: listed to no one, opened by no one.
    assert [chat["chatId"] for chat in listed["chats"]] == [answer.done["chatId"]]
    assert (await client.get(f"{service.url}/api/chats/old1")).status_code == 404
    service.stop()
    engine = create_engine(url)
    try:
        assert await differences(engine) == []
        chats, messages = await rows(engine)
        assert [chat for chat in chats if chat[0] != answer.done["chatId"]] == OLD_ROWS[0]
        assert messages[:4] == OLD_ROWS[1]  # in order of writing: the old ones first
    finally:
        await engine.dispose()


async def test_the_service_refuses_an_old_database_when_upgrades_are_off(
    tmp_path: Path, start_service: StartService
) -> None:
    data = tmp_path / "old"
    await make_old(f"sqlite+aiosqlite:///{data / 'askstream.db'}")
    with pytest.raises(RuntimeError, match="exited with 3 on start"):
        start_service(data, ASKSTREAM_DB_UPGRADE="false")
