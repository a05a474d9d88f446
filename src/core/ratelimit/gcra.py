"""The algorithm: GCRA (generic cell rate algorithm), a token bucket kept as one number.

A limit of L per minute is a bucket of capacity L refilled continuously at L per minute. GCRA
stores only the bucket's "theoretical arrival time" (TAT): the instant at which it will be full
again. Taking `cost` units moves the TAT forward by `cost * 60 s / L`; that is allowed while the
TAT stays within one minute of now. So a fresh key may send L requests at once, then one every
60/L seconds; nothing is reset at minute boundaries, and no per-request log is kept.

From the TAT follow OpenAI's headers: `remaining` = the whole units that still fit, `reset` = TAT -
now (time until the bucket is full again). A stored TAT in the past means the same as no TAT, so
keys can expire at their TAT and never need cleaning up.

This module is the reference implementation (used by `LocalRateLimiter`); `redis_limiter.py`
runs the same arithmetic in Lua, in the same order, so both give the same numbers.
Times are microseconds (floats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.ratelimit.policy import Limits

__all__ = ["PERIOD_US", "Bucket", "BucketState", "Decision", "buckets_for", "corrected_tat", "state", "take"]

PERIOD_US = 60_000_000.0
# Float rounding must not refuse a request of exactly the remaining capacity.
_SLACK_US = 0.5

Kind = Literal["requests", "tokens"]
Scope = Literal["API key", "user", "client address", "email"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit a request draws from; `name` is its storage key (without any prefix)."""

    name: str
    scope: Scope
    kind: Kind
    limit: int

    @property
    def interval_us(self) -> float:
        return PERIOD_US / self.limit


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket after an admission (or at a refusal): what the x-ratelimit-* headers report."""

    bucket: Bucket
    remaining: int
    reset: float  # seconds until the bucket is full again


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    states: tuple[BucketState, ...]
    new_tats: tuple[float, ...]  # to store when admitted
    retry_after: float = 0.0  # seconds, when refused
    blocking: Bucket | None = None  # the bucket that refused


def buckets_for(principal: Principal, limits: Limits) -> list[Bucket]:
    """The buckets of a caller. All share the `{u<user>}` hash tag: one Redis Cluster slot."""
    user = f"{{u{principal.user_id}}}"
    key = f"{user}:k{principal.api_key_id}"
    candidates: tuple[tuple[str, Scope, Kind, int], ...] = (
        (f"{key}:requests", "API key", "requests", limits.key_requests),
        (f"{key}:tokens", "API key", "tokens", limits.key_tokens),
        (f"{user}:requests", "user", "requests", limits.user_requests),
        (f"{user}:tokens", "user", "tokens", limits.user_tokens),
    )
    return [Bucket(name, scope, kind, limit) for name, scope, kind, limit in candidates if limit > 0]


def state(bucket: Bucket, until_full_us: float) -> BucketState:
    """The headers' view of a bucket that is `until_full_us` from full."""
    fits = (PERIOD_US - until_full_us) / bucket.interval_us
    remaining = min(bucket.limit, max(0, math.floor(fits + 1e-6)))
    return BucketState(bucket, remaining, max(0.0, until_full_us) / 1e6)


def take(buckets: Sequence[Bucket], costs: Sequence[int], tats: Sequence[float | None], now: float) -> Decision:
    """Take `costs` from all `buckets` or from none (the caller stores `new_tats` when admitted)."""
    bases: list[float] = []
    news: list[float] = []
    retry, blocking = 0.0, None
    for bucket, cost, tat in zip(buckets, costs, tats, strict=True):
        base = tat if tat is not None and tat > now else now
        new = base + cost * PERIOD_US / bucket.limit
        if new - now > PERIOD_US + _SLACK_US:
            wait = new - now - PERIOD_US
            if wait > retry:
                retry, blocking = wait, bucket
        bases.append(base)
        news.append(new)
    admitted = blocking is None
    ends = news if admitted else bases
    states = tuple(state(bucket, end - now) for bucket, end in zip(buckets, ends, strict=True))
    return Decision(admitted, states, tuple(news), retry / 1e6, blocking)


def corrected_tat(tat: float | None, delta: int, interval_us: float, now: float) -> float | None:
    """The TAT after charging `delta` more units (refunding when negative); None when the bucket is full.

    A refund never takes the TAT below now: a bucket cannot hold more than its limit.
    """
    if delta > 0:
        base = tat if tat is not None and tat > now else now
        return base + delta * interval_us
    if tat is None or tat <= now:
        return None
    new = tat + delta * interval_us
    return new if new > now else None
