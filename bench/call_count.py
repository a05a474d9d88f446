"""Python function calls per request through the whole proxy in one event loop (a deterministic measure).

    PYTHONPATH=. .venv/bin/python -m bench.call_count nonstream     # or: stream

cProfile counts every Python call while N sequential chat requests go through the facade, the core and the
node simulator of `tests/telemetry/inprocess.py`. Unlike CPU time on a shared machine, the count is the same
from run to run, so two commits can be compared exactly (README "Performance"). Prints the calls per request,
in all and in the proxy's own modules (src/, the simulator excluded).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys

import httpx

from tests.telemetry.inprocess import MODEL, in_process_stack

N = 300


async def main(stream: bool) -> None:
    async with in_process_stack() as stack:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        headers = {"authorization": f"Bearer {stack.api_key}"}
        async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as http:
            for _ in range(50):
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                assert response.status_code == 200, response.text
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(N):
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                assert response.status_code == 200
            prof.disable()
        await stack.core.meter.drain()
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        total = sum(v[1] for v in stats.values())
        own = sum(v[1] for k, v in stats.items() if "/src/" in k[0] and "/src/nodesim/" not in k[0])
        print(f"{'stream' if stream else 'nonstream'}: {total / N:.0f} calls per request, {own / N:.0f} in src/")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] == ["stream"]))
