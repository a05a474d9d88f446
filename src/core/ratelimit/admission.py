"""What a rate limiter promises: the `RateLimiter` protocol and the `Admission` it returns."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.ratelimit.gcra import Bucket, BucketState, Decision
from atoma_proxy.core.ratelimit.headers import format_duration, ratelimit_headers

__all__ = ["Admission", "RateLimiter", "refusal", "too_large"]

log = logging.getLogger(__name__)

Correction = Callable[[int], Awaitable[None]]


class Admission:
    """An admitted request: its `x-ratelimit-*` headers, and `settle` to correct its token charge."""

    def __init__(
        self, states: Sequence[BucketState] = (), estimated_tokens: int = 0, correct: Correction | None = None
    ) -> None:
        self.states = tuple(states)
        self.estimated_tokens = estimated_tokens
        self._correct = correct
        self._settled = False

    @property
    def settles_tokens(self) -> bool:
        """Whether `settle` can change anything (a tokens-per-minute limit applies)."""
        return self._correct is not None and not self._settled

    def headers(self) -> list[tuple[str, str]]:
        """OpenAI's six headers (three when only requests or only tokens are limited; none when unlimited)."""
        return ratelimit_headers(self.states)

    async def settle(self, actual_tokens: int) -> None:
        """Charge the tokens the request really used instead of the estimate: a refund or an extra charge.

        Once per admission; best effort (a failure is logged, never raised). A refund never leaves a
        bucket above its limit.
        """
        if self._settled:
            return
        self._settled = True
        delta = max(0, actual_tokens) - self.estimated_tokens
        if delta == 0 or self._correct is None:
            return
        try:
            await self._correct(delta)
        except Exception:
            log.exception("could not settle the token charge of a request")


class RateLimiter(Protocol):
    """Requests and tokens per minute per API key and per user, taken all at once or not at all."""

    async def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        """Take one request and `estimated_tokens` from every applicable limit, or raise `RateLimited`."""
        ...

    async def aclose(self) -> None: ...


def too_large(buckets: Sequence[Bucket], estimated_tokens: int) -> RateLimited | None:
    """The refusal of a request that no amount of waiting lets through."""
    for bucket in buckets:
        if bucket.kind == "tokens" and estimated_tokens > bucket.limit:
            return RateLimited(
                f"Request too large: it may use {estimated_tokens} tokens, but the limit of this {bucket.scope} "
                f"is {bucket.limit} tokens per minute. Lower max_tokens or shorten the input."
            )
    return None


def refusal(decision: Decision, estimated_tokens: int) -> RateLimited:
    """The error for a refused decision, with the headers and the delay after which it would fit."""
    bucket = decision.blocking
    assert bucket is not None
    short = "RPM" if bucket.kind == "requests" else "TPM"
    requested = f", requested {estimated_tokens}" if bucket.kind == "tokens" else ""
    return RateLimited(
        f"Rate limit reached for {bucket.kind} per minute ({short}) of this {bucket.scope}: "
        f"limit {bucket.limit}{requested}. Please try again in {format_duration(decision.retry_after)}.",
        retry_after=decision.retry_after,
        headers=tuple(ratelimit_headers(decision.states)),
    )
