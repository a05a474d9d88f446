"""What only the Redis limiter has to show: atomicity across connections and processes, key expiry, outages."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.ratelimit import Limits, RateLimiter, RedisRateLimiter, StaticLimitPolicy
from tests.core.ratelimit.conftest import REDIS_TIMEOUT, REDIS_URL, FakeClock
from tests.support.processes import free_port

ALICE = Principal(user_id=1, api_key_id=11)


async def _count_admitted(limiters: list[RateLimiter], attempts: int, tokens: int = 0) -> int:
    async def attempt(i: int) -> bool:
        try:
            await limiters[i % len(limiters)].admit(ALICE, tokens)
        except RateLimited:
            return False
        return True

    return sum(await asyncio.gather(*(attempt(i) for i in range(attempts))))


@pytest.mark.parametrize("instances", [1, 2])
async def test_concurrent_admissions_never_exceed_the_limit(
    instances: int, redis_prefix: str, clock: FakeClock
) -> None:
    # Separate limiters have separate connection pools: as separate core processes would.
    policy = StaticLimitPolicy(Limits(key_requests=50, user_tokens=10_000))
    limiters: list[RateLimiter] = [
        RedisRateLimiter.from_url(REDIS_URL, policy, prefix=redis_prefix, clock=clock, timeout=REDIS_TIMEOUT)
        for _ in range(instances)
    ]
    try:
        assert await _count_admitted(limiters, 200, tokens=10) == 50
        # All or nothing under concurrency too: only the 50 admitted requests took tokens.
        admission = await limiters[0].admit(Principal(user_id=1, api_key_id=12), 0)
        assert dict(admission.headers())["x-ratelimit-remaining-tokens"] == str(10_000 - 50 * 10)
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_instances_share_one_limit_on_the_redis_clock(redis_prefix: str) -> None:
    # No injected clock: the script reads Redis TIME. A limit of 3 refills one request per 20 s.
    policy = StaticLimitPolicy(Limits(key_requests=3))
    limiters: list[RateLimiter] = [
        RedisRateLimiter.from_url(REDIS_URL, policy, prefix=redis_prefix, timeout=REDIS_TIMEOUT) for _ in range(2)
    ]
    try:
        assert await _count_admitted(limiters, 8) == 3
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_keys_expire_by_themselves(redis_prefix: str) -> None:
    policy = StaticLimitPolicy(Limits(key_requests=3, key_tokens=100, user_requests=10, user_tokens=1000))
    limiter = RedisRateLimiter.from_url(REDIS_URL, policy, prefix=redis_prefix, timeout=REDIS_TIMEOUT)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await limiter.admit(ALICE, 10)
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 4
        for key in keys:
            # Each expires when its bucket is full again: at most one minute.
            assert 0 < await client.pttl(key) <= 60_001
    finally:
        await client.aclose()
        await limiter.aclose()


def _unreachable_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_unreachable_redis_fails_open_with_a_rate_limited_warning(caplog: pytest.LogCaptureFixture) -> None:
    policy = StaticLimitPolicy(Limits(key_requests=1))
    limiter = RedisRateLimiter.from_url(_unreachable_url(), policy, outage_pause=0)
    try:
        with caplog.at_level(logging.WARNING, logger="atoma_proxy.core.ratelimit.redis_limiter"):
            admissions = [await limiter.admit(ALICE, 0) for _ in range(5)]
        assert all(a.headers() == [] for a in admissions)
        await admissions[0].settle(10)
        warnings = [r for r in caplog.records if "Redis is unavailable for rate limits" in r.getMessage()]
        assert len(warnings) == 1
        assert "admitted without limits" in warnings[0].getMessage()
    finally:
        await limiter.aclose()


async def test_unreachable_redis_fails_closed_when_configured() -> None:
    policy = StaticLimitPolicy(Limits(key_requests=1000))
    limiter = RedisRateLimiter.from_url(_unreachable_url(), policy, fail_open=False)
    try:
        for _ in range(2):  # the first call finds Redis down, the second is refused without trying it
            with pytest.raises(RateLimited) as refused:
                await limiter.admit(ALICE, 0)
            assert refused.value.retry_after == 1.0
    finally:
        await limiter.aclose()


async def test_concurrent_corrections_are_sent_together_with_the_same_result(
    redis_prefix: str, clock: FakeClock
) -> None:
    policy = StaticLimitPolicy(Limits(user_tokens=100_000))
    limiter = RedisRateLimiter.from_url(REDIS_URL, policy, prefix=redis_prefix, clock=clock, timeout=REDIS_TIMEOUT)
    sent: list[int] = []
    send = limiter._settle_script

    async def counted(**kwargs):  # type: ignore[no-untyped-def]
        sent.append(kwargs["args"][1])
        return await send(**kwargs)

    limiter._settle_script = counted  # type: ignore[method-assign]
    try:
        admissions = [await limiter.admit(ALICE, 1_000) for _ in range(20)]  # 20 000 taken
        await asyncio.gather(*(admission.settle(100) for admission in admissions))  # 900 refunded each
        probe = await limiter.admit(Principal(user_id=1, api_key_id=99), 0)
    finally:
        await limiter.aclose()
    assert dict(probe.headers())["x-ratelimit-remaining-tokens"] == str(100_000 - 20 * 100)
    assert sum(sent) == -20 * 900
    assert len(sent) < 20  # summed while one was in flight
