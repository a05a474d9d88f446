"""The rate limiter the configuration asks for: none, in-process, or Redis."""

from __future__ import annotations

from atoma_proxy.config import RateLimitSettings
from atoma_proxy.core.ratelimit.admission import RateLimiter
from atoma_proxy.core.ratelimit.local import LocalRateLimiter
from atoma_proxy.core.ratelimit.policy import LimitPolicy, Limits, StaticLimitPolicy
from atoma_proxy.core.ratelimit.redis_limiter import RedisRateLimiter

__all__ = ["rate_limiter_from_settings"]


def rate_limiter_from_settings(settings: RateLimitSettings, policy: LimitPolicy | None = None) -> RateLimiter | None:
    """The configured limiter; None when no limit is configured (and no policy given), so nothing runs."""
    if policy is None:
        limits = Limits.from_settings(settings)
        if limits.unlimited:
            return None
        policy = StaticLimitPolicy(limits)
    if settings.redis_url:
        return RedisRateLimiter.from_url(
            settings.redis_url,
            policy,
            timeout=settings.redis_timeout,
            prefix=settings.key_prefix,
            fail_open=settings.fail_open,
        )
    return LocalRateLimiter(policy)
