"""Rate limits kept in this process: for one core instance, or tests. Same semantics as Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.ratelimit.admission import Admission, refusal, too_large
from atoma_proxy.core.ratelimit.gcra import Bucket, buckets_for, corrected_tat, take
from atoma_proxy.core.ratelimit.policy import LimitPolicy

__all__ = ["LocalRateLimiter"]

# Full buckets (TAT in the past) are dropped this often, so idle keys do not accumulate.
_SWEEP_EVERY_US = 60_000_000.0


class LocalRateLimiter:
    """GCRA buckets in a dict. Atomic because nothing awaits between reading and writing them.

    With several core instances each keeps its own buckets: the limits multiply by the instances.
    """

    def __init__(self, policy: LimitPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._next_sweep = 0.0

    def _now(self) -> float:
        return self._clock() * 1e6

    async def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        buckets = buckets_for(principal, await self._policy.limits_for(principal))
        if not buckets:
            return Admission()
        estimated_tokens = max(0, estimated_tokens)
        error = too_large(buckets, estimated_tokens)
        if error is not None:
            raise error
        now = self._now()
        self._sweep(now)
        costs = [1 if b.kind == "requests" else estimated_tokens for b in buckets]
        decision = take(buckets, costs, [self._tats.get(b.name) for b in buckets], now)
        if not decision.admitted:
            raise refusal(decision, estimated_tokens)
        for bucket, tat in zip(buckets, decision.new_tats, strict=True):
            if tat > now:
                self._tats[bucket.name] = tat
        token_buckets = [b for b in buckets if b.kind == "tokens"]

        async def correct(delta: int) -> None:
            self._correct(token_buckets, delta)

        return Admission(decision.states, estimated_tokens, correct if token_buckets else None)

    def _correct(self, buckets: Sequence[Bucket], delta: int) -> None:
        now = self._now()
        for bucket in buckets:
            tat = corrected_tat(self._tats.get(bucket.name), delta, bucket.interval_us, now)
            if tat is None:
                self._tats.pop(bucket.name, None)
            else:
                self._tats[bucket.name] = tat

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_US
        self._tats = {name: tat for name, tat in self._tats.items() if tat > now}

    async def aclose(self) -> None:
        self._tats.clear()
