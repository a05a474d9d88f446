"""Clients and polling helpers for the simulator tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest

from atoma_proxy.nodesim import RunningNodeSim

StartSim = Callable[..., Awaitable[RunningNodeSim]]
CHAT = "atoma/sim-chat"
EMBED = "atoma/sim-embed"
IMAGE = "atoma/sim-image"
HELLO = [{"role": "user", "content": "Hello, world!"}]


def openai_client(sim: RunningNodeSim, api_key: str = "unused") -> openai.AsyncOpenAI:
    """The official SDK against the simulator, without retries (a failure must surface)."""
    return openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key=api_key, max_retries=0)


async def get_json(sim: RunningNodeSim, path: str) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.url}{path}")
        response.raise_for_status()
        return response.json()


async def post_config(sim: RunningNodeSim, **fields: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"{sim.url}/sim/config", json=fields)


async def wait_for_stats(
    sim: RunningNodeSim, predicate: Callable[[dict[str, Any]], bool], patience: float = 10
) -> dict[str, Any]:
    """Poll /sim/stats until `predicate` holds; fail with the last stats after `patience` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        current = await get_json(sim, "/sim/stats")
        if predicate(current):
            return current
        if loop.time() > deadline:
            pytest.fail(f"/sim/stats never matched; last: {current}")
        await asyncio.sleep(0.01)
