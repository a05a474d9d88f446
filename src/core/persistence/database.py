"""Engines and sessions.

One async engine per process, made from `DatabaseSettings`; sessions come from `session_factory`.
Repositories only flush: whoever opened the session owns the unit of work and commits it.

Two backends are supported:

* SQLite (embedded, `sqlite:///path`) through aiosqlite. Every connection gets WAL journaling (readers
  do not block the writer), foreign keys on (SQLite's default is off, which would silently ignore
  ON DELETE CASCADE) and a busy timeout, so that a second writer waits for the lock instead of failing
  at once with "database is locked".
* PostgreSQL (`postgresql://...`) through psycopg 3, with a pool of `pool_size` connections that are
  pinged before use; connecting waits at most `connect_timeout` seconds and a request waits at most
  `pool_timeout` for a pooled connection, so an outage is an error at once (`outage.py`), not a hang.

Plain URLs (`sqlite:///x`, `postgresql://...`) are accepted everywhere and given their async driver by
`normalize_url`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence.outage import BoundedSession

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "create_engine", "create_migration_engine", "normalize_url", "session_factory"]

#: How long (milliseconds) a SQLite connection waits for another one's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000

# Scheme (lower case) -> scheme with the async driver this project uses.
_ASYNC_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}


def normalize_url(url: str) -> str:
    """Give a plain database URL its async driver; URLs that name a driver already are returned unchanged.

    >>> normalize_url("sqlite:///./atoma-proxy.db")
    'sqlite+aiosqlite:///./atoma-proxy.db'
    >>> normalize_url("postgres://user@host/db")
    'postgresql+psycopg://user@host/db'
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme:
        raise ValueError(f"not a database URL: {url!r}")
    replacement = _ASYNC_SCHEMES.get(scheme.lower())
    if replacement is None:
        return url
    return f"{replacement}://{rest}"


def _backend(url: str) -> str:
    """`sqlite`, `postgresql`, ...: the part of a (normalized) URL's scheme before the driver."""
    return url.partition("://")[0].partition("+")[0].lower()


def _sqlite_pragmas(*, foreign_keys: bool) -> list[str]:
    # busy_timeout first, so that switching to WAL waits for a lock held by someone else.
    return [
        f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}",
    ]


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool, explicit_begin: str | None) -> None:
    """Connection set-up for SQLite.

    `explicit_begin` (e.g. "BEGIN IMMEDIATE") turns off the sqlite3 driver's legacy transaction control
    (which only opens a transaction before INSERT/UPDATE/DELETE, so DDL would be autocommitted) and has
    SQLAlchemy emit that statement at the start of each transaction instead. Migrations use this; the
    application engine keeps the driver's default behaviour (see the module docstring of `migrate`).
    """
    pragmas = _sqlite_pragmas(foreign_keys=foreign_keys)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()
        if explicit_begin is not None:
            dbapi_connection.isolation_level = None

    if explicit_begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(explicit_begin)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """The application's async engine for `settings.url` (plain or driver-qualified URL).

    Dispose of it (`await engine.dispose()`) when done.
    """
    url = normalize_url(settings.url)
    if _backend(url) == "sqlite":
        engine = create_async_engine(url)
        _install_sqlite_hooks(engine, foreign_keys=True, explicit_begin=None)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.pool_timeout,
        connect_args={"connect_timeout": settings.connect_timeout},
    )


def create_migration_engine(url: str) -> AsyncEngine:
    """An engine for schema changes: no pool and, on SQLite, transactional DDL with foreign keys off.

    SQLite's ALTER TABLE is limited, so migrations rebuild tables ("batch" mode: create a copy, move
    the rows, drop the original, rename); with foreign keys on, dropping a parent table would cascade
    into its children. Alembic's documentation therefore asks for foreign keys off during migrations;
    `migrate` checks the foreign keys (PRAGMA foreign_key_check) before committing instead.
    BEGIN IMMEDIATE takes the write lock up front, so concurrent migrators queue up behind each other.
    """
    url = normalize_url(url)
    engine = create_async_engine(url, poolclass=NullPool)
    if _backend(url) == "sqlite":
        _install_sqlite_hooks(engine, foreign_keys=False, explicit_begin="BEGIN IMMEDIATE")
    return engine


def session_factory(engine: AsyncEngine, *, timeout: float | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to `engine`; objects stay readable after commit (expire_on_commit=False).

    With `timeout` (`database.statement_timeout`), each round trip of a session ends with DatabaseTimeout
    after that many seconds (`outage.BoundedSession`)."""
    if timeout is None:
        return async_sessionmaker(engine, expire_on_commit=False)
    bounded = type("BoundedSession", (BoundedSession,), {"timeout": timeout})
    return async_sessionmaker(engine, class_=bounded, expire_on_commit=False)
