"""Requests and tokens per minute, per API key and per user (README "Rate limits").

RateLimiter (protocol)  admit(principal, estimated_tokens) -> Admission, or raises RateLimited
├── LocalRateLimiter    in-process buckets (one core instance)
└── RedisRateLimiter    buckets in Redis, one Lua call per admission, shared by all instances
Admission               headers() (x-ratelimit-*), settle(actual_tokens)
LimitPolicy             the limits of a caller (StaticLimitPolicy: the configured ones)
"""

from atoma_proxy.core.ratelimit.admission import Admission, RateLimiter
from atoma_proxy.core.ratelimit.from_settings import rate_limiter_from_settings
from atoma_proxy.core.ratelimit.headers import format_duration
from atoma_proxy.core.ratelimit.local import LocalRateLimiter
from atoma_proxy.core.ratelimit.policy import LimitPolicy, Limits, StaticLimitPolicy
from atoma_proxy.core.ratelimit.redis_limiter import RedisRateLimiter

__all__ = [
    "Admission",
    "LimitPolicy",
    "Limits",
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "StaticLimitPolicy",
    "format_duration",
    "rate_limiter_from_settings",
]
