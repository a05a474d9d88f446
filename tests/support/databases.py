"""Throw-away databases for tests, built by the real migrations (never `create_all`).

    async with temporary_database("postgresql") as url:      # in async tests and fixtures
        ...
    with temporary_database_sync("sqlite") as url:           # in sync (e.g. session) fixtures
        ...

`url` is a plain URL (`sqlite:///...` or `postgresql://...`), as a user would configure it. SQLite
databases live in a temporary directory; PostgreSQL databases are created as `atoma_test_<hex>` on the
server named by ATOMA_TEST_POSTGRES_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres,
a superuser connection used for CREATE/DROP DATABASE only) and dropped afterwards, connections or not.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from atoma_proxy.core.persistence.migrate import upgrade_database

__all__ = [
    "DATABASE_KINDS",
    "POSTGRES_ADMIN_URL",
    "temporary_database",
    "temporary_database_sync",
]

DATABASE_KINDS = ("sqlite", "postgresql")

POSTGRES_ADMIN_URL = os.environ.get("ATOMA_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _new_postgres_database() -> tuple[str, str]:
    name = f"atoma_test_{secrets.token_hex(8)}"
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return name, url


def _check_kind(kind: str) -> None:
    if kind not in DATABASE_KINDS:
        raise ValueError(f"unknown database kind {kind!r}: expected one of {DATABASE_KINDS}")


def _sqlite_url(directory: str) -> str:
    return f"sqlite:///{Path(directory) / 'x.db'}"


@asynccontextmanager
async def temporary_database(kind: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh database of `kind` ("sqlite" or "postgresql"), migrated to head unless `migrate=False`."""
    _check_kind(kind)
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="atoma-test-") as directory:
            url = _sqlite_url(directory)
            if migrate:
                await upgrade_database(url)
            yield url
        return

    name, url = _new_postgres_database()
    async with await psycopg.AsyncConnection.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        if migrate:
            await upgrade_database(url)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _upgrade_in_thread(url: str) -> None:
    # Its own thread and event loop: works whether or not the calling thread runs a loop.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="atoma-test-migrate") as executor:
        executor.submit(lambda: asyncio.run(upgrade_database(url))).result()


@contextmanager
def temporary_database_sync(kind: str, *, migrate: bool = True) -> Iterator[str]:
    """`temporary_database` for synchronous code (e.g. session fixtures that start server subprocesses)."""
    _check_kind(kind)
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="atoma-test-") as directory:
            url = _sqlite_url(directory)
            if migrate:
                _upgrade_in_thread(url)
            yield url
        return

    name, url = _new_postgres_database()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        if migrate:
            _upgrade_in_thread(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
