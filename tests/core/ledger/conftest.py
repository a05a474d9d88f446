from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence import UserRepository, create_engine, session_factory
from tests.support.databases import DATABASE_KINDS, temporary_database


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def database_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
async def database_url(database_kind: str) -> AsyncIterator[str]:
    """One migrated database per module and kind: tests isolate themselves with a user of their own."""
    async with temporary_database(database_kind) as url:
        yield url


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=20))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


NewUser = Callable[[], Awaitable[int]]


@pytest.fixture
def new_user(sessions: async_sessionmaker[AsyncSession]) -> NewUser:
    """Creates a user with a unique email; returns its id."""

    async def create() -> int:
        async with sessions() as session, session.begin():
            user = await UserRepository(session).get_or_create_by_email(f"{uuid.uuid4().hex}@ledger.test")
            return user.id

    return create
