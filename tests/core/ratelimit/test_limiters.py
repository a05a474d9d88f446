"""Behaviour shared by LocalRateLimiter and RedisRateLimiter (each test runs against both)."""

from __future__ import annotations

import pytest

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.ratelimit import Admission, Limits, RateLimiter
from tests.core.ratelimit.conftest import FakeClock, MakeLimiter

ALICE_KEY_1 = Principal(user_id=1, api_key_id=11)
ALICE_KEY_2 = Principal(user_id=1, api_key_id=12)
BOB = Principal(user_id=2, api_key_id=21)


async def _admitted(limiter: RateLimiter, principal: Principal, tokens: int = 0) -> bool:
    try:
        await limiter.admit(principal, tokens)
    except RateLimited:
        return False
    return True


async def _refusal(limiter: RateLimiter, principal: Principal, tokens: int = 0) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(principal, tokens)
    return refused.value


def _headers(admission: Admission) -> dict[str, str]:
    return dict(admission.headers())


async def test_requests_per_minute_of_a_key(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=3))
    assert [await _admitted(limiter, ALICE_KEY_1) for _ in range(3)] == [True, True, True]
    refused = await _refusal(limiter, ALICE_KEY_1)
    assert refused.reason == "RATE_LIMITED"
    assert refused.retry_after == pytest.approx(20.0)  # one request back every 60/3 s
    assert "requests per minute (RPM) of this API key: limit 3" in refused.message
    # Another key of the same user, and another user, have their own limits.
    assert await _admitted(limiter, ALICE_KEY_2)
    assert await _admitted(limiter, BOB)


async def test_requests_per_minute_of_a_user_count_all_its_keys(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(user_requests=3))
    assert await _admitted(limiter, ALICE_KEY_1)
    assert await _admitted(limiter, ALICE_KEY_1)
    assert await _admitted(limiter, ALICE_KEY_2)
    refused = await _refusal(limiter, ALICE_KEY_2)
    assert "of this user" in refused.message
    assert not await _admitted(limiter, ALICE_KEY_1)
    assert await _admitted(limiter, BOB)


async def test_tokens_per_minute_of_a_key(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    assert await _admitted(limiter, ALICE_KEY_1, 60)
    refused = await _refusal(limiter, ALICE_KEY_1, 50)
    assert refused.retry_after == pytest.approx(6.0)  # 10 tokens short, one token back every 0.6 s
    assert "limit 100, requested 50" in refused.message
    admission = await limiter.admit(ALICE_KEY_1, 40)
    assert _headers(admission)["x-ratelimit-remaining-tokens"] == "0"
    assert await _admitted(limiter, ALICE_KEY_2, 100)


async def test_tokens_per_minute_of_a_user_count_all_its_keys(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(user_tokens=100))
    assert await _admitted(limiter, ALICE_KEY_1, 70)
    assert not await _admitted(limiter, ALICE_KEY_2, 31)
    assert await _admitted(limiter, ALICE_KEY_2, 30)
    assert await _admitted(limiter, BOB, 100)


async def test_a_refusal_takes_from_no_bucket(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=10, user_tokens=100))
    assert await _admitted(limiter, ALICE_KEY_1, 90)
    # The user's tokens refuse it: the key's request count must not move.
    assert not await _admitted(limiter, ALICE_KEY_1, 20)
    assert not await _admitted(limiter, ALICE_KEY_1, 20)
    admission = await limiter.admit(ALICE_KEY_1, 10)
    assert _headers(admission)["x-ratelimit-remaining-requests"] == "8"
    assert _headers(admission)["x-ratelimit-remaining-tokens"] == "0"


async def test_a_request_refused_on_requests_takes_no_tokens(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=1, user_tokens=100))
    assert await _admitted(limiter, ALICE_KEY_1, 10)
    assert not await _admitted(limiter, ALICE_KEY_1, 50)
    # Alice's other key finds the user's tokens untouched by the refused request.
    admission = await limiter.admit(ALICE_KEY_2, 90)
    assert _headers(admission)["x-ratelimit-remaining-tokens"] == "0"


async def test_capacity_comes_back_with_time(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(Limits(key_requests=2))
    assert await _admitted(limiter, ALICE_KEY_1)
    assert await _admitted(limiter, ALICE_KEY_1)
    assert not await _admitted(limiter, ALICE_KEY_1)
    clock.advance(29.9)
    assert not await _admitted(limiter, ALICE_KEY_1)
    clock.advance(0.1)  # 30 s: one request's worth is back
    assert await _admitted(limiter, ALICE_KEY_1)
    assert not await _admitted(limiter, ALICE_KEY_1)
    clock.advance(60)  # a full minute idle: the whole limit, never more
    assert [await _admitted(limiter, ALICE_KEY_1) for _ in range(3)] == [True, True, False]


async def test_settle_refunds_unused_tokens(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    admission = await limiter.admit(ALICE_KEY_1, 80)
    assert not await _admitted(limiter, ALICE_KEY_1, 70)
    await admission.settle(30)
    after = await limiter.admit(ALICE_KEY_1, 70)
    assert _headers(after)["x-ratelimit-remaining-tokens"] == "0"


async def test_settle_charges_tokens_beyond_the_estimate(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    admission = await limiter.admit(ALICE_KEY_1, 10)
    await admission.settle(90)
    refused = await _refusal(limiter, ALICE_KEY_1, 20)
    assert refused.retry_after == pytest.approx(6.0)  # 90 used + 20 asked = 10 over: 10 x 0.6 s


async def test_settle_may_leave_a_debt_that_time_pays(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    admission = await limiter.admit(ALICE_KEY_1, 100)
    await admission.settle(150)  # the node produced more than estimated: 50 tokens over the limit
    refused = await _refusal(limiter, ALICE_KEY_1, 0)
    assert refused.retry_after == pytest.approx(30.0)
    clock.advance(30)
    assert await _admitted(limiter, ALICE_KEY_1, 0)
    assert not await _admitted(limiter, ALICE_KEY_1, 1)


async def test_a_refund_never_raises_a_bucket_above_its_limit(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    admission = await limiter.admit(ALICE_KEY_1, 50)
    clock.advance(60)  # full again before the request settles
    await admission.settle(-5)  # nonsense usage counts as 0: a refund of 50
    after = await limiter.admit(ALICE_KEY_1, 1)
    assert _headers(after)["x-ratelimit-remaining-tokens"] == "99"
    assert not await _admitted(limiter, ALICE_KEY_1, 100)


async def test_settle_counts_once(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_tokens=100))
    admission = await limiter.admit(ALICE_KEY_1, 50)
    await admission.settle(0)
    await admission.settle(0)
    after = await limiter.admit(ALICE_KEY_1, 60)
    assert _headers(after)["x-ratelimit-remaining-tokens"] == "40"


async def test_headers_report_the_tightest_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=5, key_tokens=1000, user_requests=3, user_tokens=500))
    admission = await limiter.admit(ALICE_KEY_1, 100)
    assert admission.headers() == [
        ("x-ratelimit-limit-requests", "3"),
        ("x-ratelimit-remaining-requests", "2"),
        ("x-ratelimit-reset-requests", "20s"),
        ("x-ratelimit-limit-tokens", "500"),
        ("x-ratelimit-remaining-tokens", "400"),
        ("x-ratelimit-reset-tokens", "12s"),
    ]
    await limiter.admit(ALICE_KEY_1, 1)
    # Alice's other key has 4 of its own 5 requests left, but the user's 3 are used up.
    other = _headers(await limiter.admit(ALICE_KEY_2, 0))
    assert other["x-ratelimit-limit-requests"] == "3"
    assert other["x-ratelimit-remaining-requests"] == "0"


async def test_a_refusal_carries_the_headers(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=1))
    await limiter.admit(ALICE_KEY_1, 0)
    refused = await _refusal(limiter, ALICE_KEY_1)
    assert dict(refused.headers) == {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }


async def test_a_request_over_the_whole_token_limit_is_refused_without_retry(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(key_requests=2, key_tokens=100))
    refused = await _refusal(limiter, ALICE_KEY_1, 101)
    assert refused.retry_after is None
    assert "too large" in refused.message
    # Nothing was taken.
    assert _headers(await limiter.admit(ALICE_KEY_1, 100))["x-ratelimit-remaining-requests"] == "1"


async def test_without_limits_everything_is_admitted_without_headers(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits())
    admissions = [await limiter.admit(ALICE_KEY_1, 10**9) for _ in range(100)]
    assert all(a.headers() == [] for a in admissions)
    await admissions[0].settle(5)
