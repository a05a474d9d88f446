from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence import User, create_engine, normalize_url, session_factory
from tests.support.databases import temporary_database


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:///./atoma-proxy.db", "sqlite+aiosqlite:///./atoma-proxy.db"),
        ("sqlite:////var/lib/atoma/proxy.db", "sqlite+aiosqlite:////var/lib/atoma/proxy.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("SQLite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://user@host/db", "postgresql+psycopg://user@host/db"),
        ("postgres://user@host/db", "postgresql+psycopg://user@host/db"),
        (
            "postgresql://us%40er:p%25ss@db.example:6543/atoma?sslmode=require",
            "postgresql+psycopg://us%40er:p%25ss@db.example:6543/atoma?sslmode=require",
        ),
        # Already explicit: left alone.
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        ("postgresql+asyncpg://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("mysql+aiomysql://user@host/db", "mysql+aiomysql://user@host/db"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["", "x.db", "://host/db", "sqlite:"])
def test_normalize_url_rejects_non_urls(url: str) -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        normalize_url(url)


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout() -> None:
    async with temporary_database("sqlite", migrate=False) as url:
        engine = create_engine(DatabaseSettings(url=url))
        try:
            assert engine.dialect.driver == "aiosqlite"
            async with engine.connect() as connection:
                assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
                assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
                assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 1000
        finally:
            await engine.dispose()


async def test_postgresql_engine_uses_psycopg_and_the_configured_pool_size() -> None:
    async with temporary_database("postgresql", migrate=False) as url:
        engine = create_engine(DatabaseSettings(url=url, pool_size=3))
        try:
            assert engine.dialect.name == "postgresql"
            assert engine.dialect.driver == "psycopg"
            assert engine.pool.size() == 3
        finally:
            await engine.dispose()


async def test_postgresql_engine_replaces_connections_the_server_closed() -> None:
    """pool_pre_ping: a pooled connection whose backend died is replaced instead of failing a request."""
    async with temporary_database("postgresql", migrate=False) as url:
        engine = create_engine(DatabaseSettings(url=url, pool_size=1))
        try:
            async with engine.connect() as connection:
                pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            # A connection of its own (the engine would hand back the very connection to be killed).
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as killer:
                await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
                for _ in range(500):
                    cursor = await killer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                    if (await cursor.fetchone()) == (0,):
                        break
                    await asyncio.sleep(0.01)
                else:
                    pytest.fail(f"backend {pid} was not terminated")
            async with engine.connect() as connection:
                new_pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            assert new_pid != pid
        finally:
            await engine.dispose()


async def test_objects_stay_loaded_after_commit(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        async with session.begin():
            user = User(email="after-commit@example.com")
            session.add(user)
        # expire_on_commit=False: no lazy reload (which would need I/O outside an await) after commit.
        assert user.email == "after-commit@example.com"
        assert user.id is not None


async def test_session_factory_sessions_are_bound_to_the_engine(engine: AsyncEngine) -> None:
    factory = session_factory(engine)
    async with factory() as session:
        assert session.bind is engine
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_timestamps_come_back_as_aware_utc(sessions: async_sessionmaker[AsyncSession]) -> None:
    plus_two = timezone(timedelta(hours=2))
    joined = datetime(2030, 5, 17, 14, 30, 15, 123456, tzinfo=plus_two)
    async with sessions() as session, session.begin():
        session.add(User(email="explicit@example.com", created_at=joined))
        session.add(User(email="defaulted@example.com"))
    async with sessions() as session:
        explicit = (await session.execute(select(User).where(User.email == "explicit@example.com"))).scalar_one()
        defaulted = (await session.execute(select(User).where(User.email == "defaulted@example.com"))).scalar_one()
    assert explicit.created_at == joined
    assert explicit.created_at.utcoffset() == timedelta(0)
    assert explicit.created_at.hour == 12
    assert defaulted.created_at.tzinfo is not None
    assert defaulted.created_at.utcoffset() == timedelta(0)
    assert abs(defaulted.created_at - datetime.now(UTC)) < timedelta(days=1)


async def test_naive_datetimes_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        session.add(User(email="naive@example.com", created_at=datetime(2030, 1, 1)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()
        await session.rollback()
