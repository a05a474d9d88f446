"""How the command line's database commands open the database: one way, for all of them.

`keys create`, `users create`, `balance credit|show` and `prices set` each run one unit of work:

    async with admin_session(database_url) as session:   # schema brought up to date, then one transaction
        user = await UserRepository(session).get_or_create_by_email(email)

`admin_session` migrates first (a no-op on a current database, safe to run concurrently), opens an engine
of its own with one connection, commits when the block ends without an error (rolls back otherwise) and
disposes the engine. `announce` is what every command that opens the database says first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence.api_keys import ApiKeyRepository, UserRepository
from atoma_proxy.core.persistence.database import create_engine, session_factory
from atoma_proxy.core.persistence.migrate import upgrade_database

__all__ = ["DEFAULT_KEY_NAME", "DEFAULT_USER_EMAIL", "admin_session", "announce", "create_api_key"]

DEFAULT_USER_EMAIL = "local@atoma.proxy"
DEFAULT_KEY_NAME = "default"

_log = logging.getLogger("atoma_proxy.cli")


def announce(database_url: str, command: str) -> str:
    """Say on the log (standard error) which database `command` uses, password hidden, and create the embedded
    database's directory when it is missing; returns `database_url`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    _log.info("atoma-proxy %s: database %s", command, url.render_as_string(hide_password=True))  # JSON too
    return database_url


@asynccontextmanager
async def admin_session(database_url: str, *, migrate: bool = True) -> AsyncIterator[AsyncSession]:
    """One unit of work on the database at `database_url` (plain or driver-qualified URL), committed when the
    block ends; with `migrate` (the default) the schema is first brought up to date."""
    if migrate:
        await upgrade_database(database_url)
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def create_api_key(
    database_url: str,
    *,
    email: str = DEFAULT_USER_EMAIL,
    name: str = DEFAULT_KEY_NAME,
    migrate: bool = True,
) -> str:
    """Issue a key named `name` to the user `email` (created if new), commit, and return the plaintext."""
    async with admin_session(database_url, migrate=migrate) as session:
        user = await UserRepository(session).get_or_create_by_email(email)
        key, _ = await ApiKeyRepository(session).create(user.id, name)
    return key
