"""Account tests run on both databases (one migrated database per module and kind), with a settable clock."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.tokens import AccessTokenCodec
from atoma_proxy.core.persistence import create_engine, session_factory
from tests.support.databases import DATABASE_KINDS, temporary_database

JWT_SECRET = "unit-test-jwt-secret-0123456789abcdef-long-enough-for-hs512-as-well!"
ACCESS_MINUTES = 15
REFRESH_DAYS = 30


@dataclass
class FakeClock:
    """Seconds since the epoch, moved by tests."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cheap_hasher() -> PasswordHasher:
    """argon2id at its cheapest (tests hash many passwords; the default profile is checked on its own)."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def new_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.com"


@pytest.fixture(scope="module", params=DATABASE_KINDS)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    async with temporary_database(request.param) as url:
        engine = create_engine(DatabaseSettings(url=url))
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def codec(clock: FakeClock) -> AccessTokenCodec:
    return AccessTokenCodec(JWT_SECRET, ACCESS_MINUTES, clock)


@pytest.fixture
def logins(sessions: async_sessionmaker[AsyncSession], codec: AccessTokenCodec, clock: FakeClock) -> Logins:
    return Logins(sessions, cheap_hasher(), codec, refresh_token_days=REFRESH_DAYS, clock=clock)
