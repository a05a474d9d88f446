"""Python function calls per request through the whole proxy in one event loop (a deterministic measure).

    PYTHONPATH=. .venv/bin/python -m bench.call_count nonstream     # or: stream
    PYTHONPATH=. .venv/bin/python -m bench.call_count nonstream --bench-setup   # as `make bench` runs `serve`
    PYTHONPATH=. .venv/bin/python -m bench.call_count nonstream --bench-setup --concurrency 32

cProfile counts every Python call while N chat requests (`--concurrency` at a time, 1 by default) go
through the facade, the core and the node simulator of `tests/telemetry/inprocess.py` (SQLite, facade ->
core over gRPC; with `--bench-setup`, the one-process topology of `make bench`: the facade calls the core
in-process, PostgreSQL, rate limits on Redis). Unlike CPU time on a shared machine, the count at
concurrency 1 is the same from run to run, so two commits can be compared exactly (README "Performance");
at higher concurrency it moves a little with how requests happen to batch, and the httpx client's own
calls grow with it (`--top` lists the packages apart). Prints the calls per request, in all and in the
proxy's own modules (src/, the simulator excluded).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
from collections import Counter
from typing import Any

import httpx

from atoma_proxy.config import RateLimitSettings
from tests.telemetry.inprocess import MODEL, in_process_stack

N = 320  # a multiple of the concurrencies worth measuring (1, 8, 16, 32, 64)


BENCH_SETUP: dict[str, Any] = {
    "database": "postgresql",
    "local": True,
    "settings": {
        "rate_limits": RateLimitSettings(
            redis_url="redis://127.0.0.1:6379/14", key_requests_per_minute=10**9, user_tokens_per_minute=10**9
        )
    },
}


async def main(stream: bool, bench_setup: bool, top: int, concurrency: int) -> None:
    async with in_process_stack(**(BENCH_SETUP if bench_setup else {})) as stack:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        headers = {"authorization": f"Bearer {stack.api_key}"}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30, limits=limits) as http:
            for _ in range(50):
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                assert response.status_code == 200, response.text

            async def client(requests: int) -> None:
                for _ in range(requests):
                    response = await http.post("/v1/chat/completions", json=body, headers=headers)
                    assert response.status_code == 200

            prof = cProfile.Profile()
            prof.enable()
            await asyncio.gather(*(client(N // concurrency) for _ in range(concurrency)))
            prof.disable()
        await stack.core.meter.drain()
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        total = sum(v[1] for v in stats.values())
        own = sum(v[1] for k, v in stats.items() if "/src/" in k[0] and "/src/nodesim/" not in k[0])
        print(f"{'stream' if stream else 'nonstream'}: {total / N:.0f} calls per request, {own / N:.0f} in src/")
        if top:
            by_package: Counter[str] = Counter()
            for (path, _, _), value in stats.items():
                by_package[_package(path)] += value[1]
            for package, calls in by_package.most_common(top):
                print(f"  {calls / N:8.0f}  {package}")


def _package(path: str) -> str:
    """src/<dir>, the simulator, or the library (site-packages/<name>, the standard library's module)."""
    if "/src/" in path:
        parts = path.split("/src/", 1)[1].split("/")
        return "src/" + "/".join(parts[:2] if len(parts) > 2 else parts[:1])
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/")[0]
    return path.rsplit("/", 1)[-1]


if __name__ == "__main__":
    arguments = sys.argv[1:]
    concurrency = int(arguments[arguments.index("--concurrency") + 1]) if "--concurrency" in arguments else 1
    asyncio.run(
        main("stream" in arguments, "--bench-setup" in arguments, 25 if "--top" in arguments else 0, concurrency)
    )
