from collections.abc import AsyncIterator

import pytest

from atoma_proxy.clients import RoutingClient
from tests.clients.fake_core import FakeRoutingService, serve_fake_core

API_KEY = "sk-test-key"


@pytest.fixture
async def core() -> AsyncIterator[FakeRoutingService]:
    async with serve_fake_core() as service:
        yield service


@pytest.fixture
async def client(core: FakeRoutingService) -> AsyncIterator[RoutingClient]:
    async with await RoutingClient.connect(core.target, api_key=API_KEY) as client:
        yield client
