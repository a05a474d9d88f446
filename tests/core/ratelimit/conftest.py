"""Both rate limiters behind one fixture, so the same behavioural tests run against each.

Redis tests use the Redis at ATOMA_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a
unique key prefix per test, deleted afterwards. Time is a `FakeClock`: no test sleeps.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from atoma_proxy.core.ratelimit import (
    Limits,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    StaticLimitPolicy,
)

REDIS_URL = os.environ.get("ATOMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Generous: these tests are about what the limiter decides, and a busy test machine must not turn a
# slow reply into "Redis is down" (which fails open and admits everything).
REDIS_TIMEOUT = 5.0

MakeLimiter = Callable[[Limits], RateLimiter]


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"atoma-test:{secrets.token_hex(6)}:"
    yield prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["local", "redis"])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[MakeLimiter]:
    created: list[RateLimiter] = []

    def make(limits: Limits) -> RateLimiter:
        policy = StaticLimitPolicy(limits)
        limiter: RateLimiter
        if request.param == "local":
            limiter = LocalRateLimiter(policy, clock=clock)
        else:
            limiter = RedisRateLimiter.from_url(
                REDIS_URL, policy, prefix=redis_prefix, clock=clock, timeout=REDIS_TIMEOUT
            )
        created.append(limiter)
        return limiter

    yield make
    for limiter in created:
        await limiter.aclose()
