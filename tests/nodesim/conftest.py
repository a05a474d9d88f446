"""Fixtures: simulators started in the test loop (stopped after each test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from atoma_proxy.nodesim import RunningNodeSim, SimConfig, start_node_sim
from tests.nodesim.helpers import StartSim


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """`await start_sim(**SimConfig fields)`; every simulator is stopped after the test."""
    sims: list[RunningNodeSim] = []

    async def start(**fields: Any) -> RunningNodeSim:
        sim = await start_node_sim(SimConfig(**fields))
        sims.append(sim)
        return sim

    yield start
    await asyncio.gather(*(sim.stop() for sim in sims))


@pytest.fixture
async def sim(start_sim: StartSim) -> RunningNodeSim:
    return await start_sim()
