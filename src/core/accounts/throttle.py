"""Throttling of the unauthenticated account RPCs: Register, Login and RefreshToken.

Each attempt takes one unit from the bucket of its client address (`client_address.py`: the gRPC
peer, or the address the facade forwards) and, for Register and Login, one from the bucket of
its email; both or neither (GCRA, `ratelimit/gcra.py`: a bucket of N per minute lets N through at
once, then one every 60/N seconds). Past either, the call ends at once, before any password is
hashed, with RATE_LIMITED and a RetryInfo (HTTP 429 with `retry-after`).

The buckets live in Redis when `rate_limits.redis_url` is set (one Lua call, the same script as the
request limits, so every core instance counts together) and in this process otherwise. Redis
unreachable: `rate_limits.fail_open` decides, as for the request limits. Emails are stored in
Redis only as a SHA-256 prefix.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from atoma_proxy.config import AccountsSettings, RateLimitSettings
from atoma_proxy.core.client_address import TrustedProxies
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.ratelimit.gcra import Bucket, Decision, take
from atoma_proxy.core.ratelimit.headers import format_duration
from atoma_proxy.core.ratelimit.redis_limiter import ADMIT_SCRIPT, decision_from_reply

__all__ = ["AttemptStore", "AuthThrottle", "LocalAttemptStore", "RedisAttemptStore", "auth_throttle_from_settings"]

log = logging.getLogger(__name__)

_SWEEP_EVERY_US = 60_000_000.0
_WARN_EVERY = 10.0


class AttemptStore(Protocol):
    """Takes one unit from every bucket, or from none."""

    async def take(self, buckets: Sequence[Bucket]) -> Decision: ...

    async def aclose(self) -> None: ...


class LocalAttemptStore:
    """GCRA buckets in a dict (one core instance); atomic because nothing awaits in `take`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._next_sweep = 0.0

    async def take(self, buckets: Sequence[Bucket]) -> Decision:
        now = self._clock() * 1e6
        if now >= self._next_sweep:  # full buckets are forgotten, so idle addresses do not accumulate
            self._next_sweep = now + _SWEEP_EVERY_US
            self._tats = {name: tat for name, tat in self._tats.items() if tat > now}
        decision = take(buckets, [1] * len(buckets), [self._tats.get(b.name) for b in buckets], now)
        if decision.admitted:
            for bucket, tat in zip(buckets, decision.new_tats, strict=True):
                self._tats[bucket.name] = tat
        return decision

    async def aclose(self) -> None:
        self._tats.clear()


class RedisAttemptStore:
    """GCRA buckets in Redis, shared by every core instance (the request limits' admission script)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, fail_open: bool, owns_client: bool = False) -> None:
        self._client = client
        self._prefix = prefix
        self._fail_open = fail_open
        self._owns_client = owns_client
        self._script = client.register_script(ADMIT_SCRIPT)
        self._skip_until = 0.0
        self._next_warning = 0.0

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> RedisAttemptStore:
        assert settings.redis_url
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=16,
            timeout=2.0,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(
            aioredis.Redis.from_pool(pool),
            prefix=settings.key_prefix,
            fail_open=settings.fail_open,
            owns_client=True,
        )

    async def take(self, buckets: Sequence[Bucket]) -> Decision:
        if time.monotonic() >= self._skip_until:
            spec = " ".join(f"{b.limit} 1" for b in buckets)
            try:
                reply = await self._script(keys=[self._prefix + b.name for b in buckets], args=["", spec])
            except (RedisError, OSError) as failure:
                self._skip_until = time.monotonic() + 1.0
                self._warn(failure)
            else:
                return decision_from_reply(buckets, reply)
        if self._fail_open:
            return Decision(True, (), ())
        raise RateLimited("Sign-in limits cannot be checked right now; please retry shortly.", retry_after=1.0)

    def _warn(self, failure: Exception) -> None:
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + _WARN_EVERY
            outcome = "admitted" if self._fail_open else "refused"
            log.warning("Redis is unavailable for sign-in limits (%s): attempts are %s", failure, outcome)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class AuthThrottle:
    """Attempts per minute per client address and per email; 0 turns a limit off."""

    def __init__(self, store: AttemptStore, *, per_address: int, per_email: int, proxies: TrustedProxies) -> None:
        self._store = store
        self._per_address = per_address
        self._per_email = per_email
        self.proxies = proxies

    async def check(self, address: str, email: str | None = None) -> None:
        """Take one attempt of `address` (and of `email`, when given); RateLimited past a limit."""
        buckets: list[Bucket] = []
        if self._per_address > 0:
            buckets.append(Bucket(f"auth:a:{address}", "client address", "requests", self._per_address))
        if email is not None and self._per_email > 0:
            digest = hashlib.sha256(email.encode()).hexdigest()[:32]
            buckets.append(Bucket(f"auth:e:{digest}", "email", "requests", self._per_email))
        if not buckets:
            return
        decision = await self._store.take(buckets)
        if decision.admitted:
            return
        blocking = decision.blocking
        assert blocking is not None
        raise RateLimited(
            f"Too many sign-in attempts for this {blocking.scope} (limit {blocking.limit} per minute). "
            f"Please try again in {format_duration(decision.retry_after)}.",
            retry_after=decision.retry_after,
        )

    async def aclose(self) -> None:
        await self._store.aclose()


def auth_throttle_from_settings(accounts: AccountsSettings, rate_limits: RateLimitSettings) -> AuthThrottle:
    """The throttle of `accounts`' limits, in Redis when `rate_limits.redis_url` is set."""
    store: AttemptStore = RedisAttemptStore.from_settings(rate_limits) if rate_limits.redis_url else LocalAttemptStore()
    return AuthThrottle(
        store,
        per_address=accounts.auth_attempts_per_address,
        per_email=accounts.auth_attempts_per_email,
        proxies=TrustedProxies(accounts.trusted_proxies),
    )
