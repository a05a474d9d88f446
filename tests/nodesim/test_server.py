"""Starting and stopping simulators: in-process and the blocking CLI entry point."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import httpx
import pytest

from atoma_proxy.nodesim import SimConfig, start_node_sim
from tests.nodesim.helpers import StartSim


async def test_port_zero_gives_the_real_port_and_stop_closes_it() -> None:
    sim = await start_node_sim(SimConfig(node_id="n-1"))
    port = int(sim.url.rsplit(":", 1)[1])
    assert sim.url == f"http://127.0.0.1:{port}" and port > 0
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{sim.url}/sim/stats")).json()["node_id"] == "n-1"
    assert sim.state.stats.requests_total == 0
    await sim.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_busy_port_raises(start_sim: StartSim) -> None:
    sim = await start_sim()
    port = int(sim.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        await start_node_sim(SimConfig(), port=port)


async def test_several_simulators_share_a_process(start_sim: StartSim) -> None:
    sims = [await start_sim(node_id=f"n{i}") for i in range(3)]
    async with httpx.AsyncClient() as client:
        ids = [(await client.get(f"{sim.url}/sim/stats")).json()["node_id"] for sim in sims]
    assert ids == ["n0", "n1", "n2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_run_node_sim_prints_its_url_and_stops_on_sigterm() -> None:
    code = (
        "from atoma_proxy.nodesim import SimConfig, run_node_sim;"
        f"run_node_sim(SimConfig(node_id='cli'), '127.0.0.1', {_free_port()})"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("node simulator cli listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/health")).json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode is not None
