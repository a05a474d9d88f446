"""A fake core and the facade served by uvicorn on port 0 (with the facade's own HTTP protocol, as
`atoma-proxy facade` serves it), both in the session's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from atoma_proxy.config import FacadeSettings, Settings
from atoma_proxy.facade import create_app
from atoma_proxy.facade.http_protocol import facade_protocol
from tests.facade.fake_core import FakeCore, RunningCore, start_fake_core

API_KEY = "sk-test-key"


class RunningFacade:
    def __init__(self, app: FastAPI, base_url: str) -> None:
        self.app = app
        self.base_url = base_url


@pytest_asyncio.fixture(scope="session")
async def running_core() -> AsyncIterator[RunningCore]:
    running = await start_fake_core()
    yield running
    await running.server.stop(None)


@pytest_asyncio.fixture(scope="session")
async def facade(running_core: RunningCore) -> AsyncIterator[RunningFacade]:
    settings = Settings(facade=FacadeSettings(core_target=running_core.target, request_timeout=30.0))
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", http=facade_protocol(settings.facade)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield RunningFacade(app, f"http://{host}:{port}")
    server.should_exit = True
    await task


@pytest.fixture
def core(running_core: RunningCore) -> FakeCore:
    """The fake core's servicer, with a fresh script and records for this test."""
    running_core.core.reset()
    return running_core.core


@pytest_asyncio.fixture
async def client(facade: RunningFacade) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{facade.base_url}/v1", api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


@pytest_asyncio.fixture
async def facade_http_openapi(facade: RunningFacade) -> dict:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        return (await http.get("/openapi.json")).json()
