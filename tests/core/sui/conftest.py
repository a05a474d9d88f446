"""Fixtures: a migrated database of each kind, the loopback Sui chain and a chain client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence import create_engine, session_factory
from atoma_proxy.core.sui.chain import GraphQLChainClient
from tests.support.databases import DATABASE_KINDS, temporary_database
from tests.support.sui_chain import LocalChain, RunningChain, start_chain

PACKAGE = "0x0c4a52c2c74f9361deb1a1b8496698c7e25847f7ad9abfbd6f8c511e508c62a0"
USDC_PACKAGE = "0xa1ec7fc00a6f40db9693ad1415d0c193ad3906494428cf252621037bd7117e29"
# Keys of the recorded data (Sui's keytool vectors): the proxy's wallet, a user's, a stranger's, two nodes.
PROXY_KEY = "AN0JMHpDum3BhrVwnkylH0/HGRHBQ/fO/8+MYOawO8j6"
USER_KEY = "AJrA997C1eVz6wYIp7bO8dpITSRBXpvg1m70/P3gusu2"
OTHER_KEY = "AAEMSIQeqyz09StSwuOW4MElQcZ+4jHW4/QcWlJEf5Yk"
NODE1_KEY = "suiprivkey1qyqr6yvxdqkh32ep4pk9caqvphmk9epn6rhkczcrhaeermsyvwsg783y9am"
NODE2_KEY = "suiprivkey1qgj6vet4rstf2p00j860xctkg4fyqqq5hxgu4mm0eg60fq787ujnqs5wc8q"


@pytest.fixture(params=DATABASE_KINDS)
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
async def running_chain() -> AsyncIterator[RunningChain]:
    running = await start_chain(LocalChain.recorded())
    yield running
    await running.stop()


@pytest.fixture
async def chain(running_chain: RunningChain) -> AsyncIterator[GraphQLChainClient]:
    client = GraphQLChainClient(running_chain.url)
    yield client
    await client.aclose()
