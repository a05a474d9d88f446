"""Which limits apply to a caller: the `LimitPolicy` seam.

Every key and user gets the configured limits today (`StaticLimitPolicy`). Per-key or per-plan
limits plug in here as another policy; one that reads a database should cache its answers the way
the authenticator does, since it is asked once per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from atoma_proxy.config import RateLimitSettings
from atoma_proxy.core.auth import Principal

__all__ = ["LimitPolicy", "Limits", "StaticLimitPolicy"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-minute limits of one caller; 0 is unlimited."""

    key_requests: int = 0
    key_tokens: int = 0
    user_requests: int = 0
    user_tokens: int = 0

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> Limits:
        return cls(
            key_requests=settings.key_requests_per_minute or 0,
            key_tokens=settings.key_tokens_per_minute or 0,
            user_requests=settings.user_requests_per_minute or 0,
            user_tokens=settings.user_tokens_per_minute or 0,
        )

    @property
    def unlimited(self) -> bool:
        return not (self.key_requests or self.key_tokens or self.user_requests or self.user_tokens)


class LimitPolicy(Protocol):
    """The limits of the caller of one request."""

    async def limits_for(self, principal: Principal) -> Limits: ...


class StaticLimitPolicy:
    """The same limits for every key and every user."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    async def limits_for(self, principal: Principal) -> Limits:
        return self.limits
