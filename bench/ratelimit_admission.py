"""What an admission costs: `LocalRateLimiter` and `RedisRateLimiter`, all four limits on.

Sequential: one admission at a time (the added latency of a request), wall time and the CPU time
of this process (what the core spends; Redis's own time is not in it). Concurrent: 32 callers at
once on one event loop (what one core process can admit per second). Each is the median of
`--runs` runs of `--admissions` admissions, spread over 100 API keys of 10 users, with limits high
enough that nothing is refused (a refusal costs the same round trip).

    python -m bench.ratelimit_admission [--redis-url redis://127.0.0.1:6379/0] [--runs 7] [--admissions 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import redis.asyncio as aioredis

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.ratelimit import Limits, LocalRateLimiter, RateLimiter, RedisRateLimiter, StaticLimitPolicy

LIMITS = Limits(key_requests=10**9, key_tokens=10**12, user_requests=10**9, user_tokens=10**12)
PRINCIPALS = [Principal(user_id=key % 10, api_key_id=key) for key in range(100)]


async def _sequential(limiter: RateLimiter, admissions: int) -> tuple[float, float]:
    """Wall time and this process's CPU time per admission."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(admissions):
        await limiter.admit(PRINCIPALS[i % 100], 200)
    return (time.perf_counter() - start) / admissions, (time.process_time() - cpu) / admissions


async def _concurrent(limiter: RateLimiter, admissions: int, callers: int = 32) -> float:
    async def caller(offset: int) -> None:
        for i in range(offset, admissions, callers):
            await limiter.admit(PRINCIPALS[i % 100], 200)

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return admissions / (time.perf_counter() - start)


async def _measure(name: str, limiter: RateLimiter, runs: int, admissions: int) -> None:
    await _sequential(limiter, 200)  # warm up: script loaded, connections open
    sequential = [await _sequential(limiter, admissions) for _ in range(runs)]
    wall = statistics.median(w for w, _ in sequential)
    cpu = statistics.median(c for _, c in sequential)
    per_second = statistics.median([await _concurrent(limiter, admissions) for _ in range(runs)])
    print(
        f"{name:6s} sequential {wall * 1e6:7.1f} us/admission (core CPU {cpu * 1e6:6.1f} us)"
        f"   32 concurrent {per_second:9,.0f} admissions/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--admissions", type=int, default=5000)
    args = parser.parse_args()
    policy = StaticLimitPolicy(LIMITS)

    local = LocalRateLimiter(policy)
    await _measure("local", local, args.runs, args.admissions)

    prefix = f"atoma-bench:{secrets.token_hex(4)}:"
    remote = RedisRateLimiter.from_url(args.redis_url, policy, prefix=prefix, fail_open=False)
    try:
        await _measure("redis", remote, args.runs, args.admissions)
    finally:
        await remote.aclose()
        client = aioredis.Redis.from_url(args.redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
