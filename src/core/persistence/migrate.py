"""Schema migrations: Alembic, run from code (`await upgrade_database(url)`) or from its command line.

Alembic is the only thing that makes the schema. From a checkout, the command line works as usual:

    alembic -c src/core/persistence/alembic.ini upgrade head
    alembic -c src/core/persistence/alembic.ini -x url=postgresql://user@host/db upgrade head
    alembic -c src/core/persistence/alembic.ini revision --autogenerate -m "add accounts"

(the URL comes from `-x url=`, else `ATOMA_DATABASE__URL`, else alembic.ini).

Every run happens in ONE transaction on a dedicated engine (see `create_migration_engine`): a migration
that fails leaves the schema as it was, on SQLite too. Runs from several processes queue up: PostgreSQL
takes a transaction-scoped advisory lock, SQLite starts with BEGIN IMMEDIATE (and waits up to its busy
timeout); the later run then finds the schema at head and does nothing. So every process may call
`upgrade_database` at start-up.

Alembic's API is synchronous, and its `context`/`op` are module-level proxies to *the* current migration,
so two migrations interleaved in one process (even on different databases) would trample each other.
`upgrade_database`/`downgrade_database` therefore run in a worker thread, one at a time per process
(a lock), each on an event loop of its own; inside, Alembic runs in `AsyncConnection.run_sync`, on the async
driver through SQLAlchemy's greenlet bridge. Awaiting them never blocks the caller's event loop. A
cancelled call stops waiting but lets a migration already under way finish (or roll back) on its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from atoma_proxy.core.persistence.database import create_migration_engine

__all__ = [
    "ALEMBIC_INI",
    "SCRIPT_LOCATION",
    "alembic_config",
    "current_revision",
    "downgrade_database",
    "head_revision",
    "run_in_migration_transaction",
    "upgrade_database",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = _PACKAGE_DIR / "alembic.ini"
SCRIPT_LOCATION = _PACKAGE_DIR / "migrations"

# pg_advisory_xact_lock key serializing migrations: b"atomaMig" read as a big-endian int64.
_PG_MIGRATION_LOCK = int.from_bytes(b"atomaMig", "big")

T = TypeVar("T")

# One Alembic run at a time in this process (see the module docstring).
_ALEMBIC_LOCK = threading.Lock()


def _escape(value: str) -> str:
    # Alembic's Config is a ConfigParser with %-interpolation: a URL-encoded password would break it.
    return value.replace("%", "%%")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` for the packaged alembic.ini and migrations, independent of the working directory.

    `url`, if given, replaces alembic.ini's `sqlalchemy.url`. Logging is left alone (alembic.ini's logging
    sections apply only when the alembic command line is used).
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", _escape(str(SCRIPT_LOCATION)))
    if url is not None:
        config.set_main_option("sqlalchemy.url", _escape(url))
    config.attributes["configure_logging"] = False
    return config


async def run_in_migration_transaction(url: str, fn: Callable[[Connection], T]) -> T:
    """Run `fn(connection)` (synchronous) in one locked migration transaction on `url`, then commit.

    On SQLite the foreign keys are checked before committing (they are off while migrating).
    """
    engine = create_migration_engine(url)
    try:
        async with engine.begin() as connection:
            dialect = connection.dialect.name
            if dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            result = await connection.run_sync(fn)
            if dialect == "sqlite":
                violations = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if violations:
                    raise RuntimeError(f"migration left foreign key violations: {violations[:10]!r}")
        return result
    finally:
        await engine.dispose()


def _run_alembic(url: str, action: Callable[[Config], None]) -> None:
    """In a worker thread: run the Alembic command `action` in a migration transaction on `url`."""

    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        action(config)

    with _ALEMBIC_LOCK:
        asyncio.run(run_in_migration_transaction(url, run))


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` (plain or driver-qualified) up to `revision`; a no-op when already there."""
    await asyncio.to_thread(_run_alembic, url, lambda config: command.upgrade(config, revision))


async def downgrade_database(url: str, revision: str = "base") -> None:
    """Migrate the database at `url` down to `revision` (by default: drop everything the migrations made)."""
    await asyncio.to_thread(_run_alembic, url, lambda config: command.downgrade(config, revision))


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None for a database the migrations have not touched."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await run_in_migration_transaction(url, read)


def head_revision() -> str:
    """The newest revision of the packaged migrations (what `upgrade_database` migrates to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
