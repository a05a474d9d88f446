from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence import create_engine, session_factory
from tests.support.databases import DATABASE_KINDS, temporary_database


@pytest.fixture(params=DATABASE_KINDS)
async def sessions(request: pytest.FixtureRequest) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh database (SQLite, then PostgreSQL) migrated to head."""
    async with temporary_database(request.param) as url:
        engine = create_engine(DatabaseSettings(url=url))
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()
