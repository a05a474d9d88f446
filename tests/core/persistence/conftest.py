from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence import create_engine, session_factory
from tests.support.databases import DATABASE_KINDS, temporary_database


@pytest.fixture(params=DATABASE_KINDS)
def database_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(database_kind: str) -> AsyncIterator[str]:
    """A fresh database migrated to head."""
    async with temporary_database(database_kind) as url:
        yield url


@pytest.fixture
async def empty_database_url(database_kind: str) -> AsyncIterator[str]:
    """A fresh database the migrations have not touched."""
    async with temporary_database(database_kind, migrate=False) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=database_url))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
