"""OpenAI's `x-ratelimit-*` response headers from bucket states."""

from __future__ import annotations

import math
from collections.abc import Iterable

from atoma_proxy.core.ratelimit.gcra import BucketState

__all__ = ["format_duration", "ratelimit_headers"]


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's time.Duration at millisecond precision): 59ms, 1s, 8.64s, 6m0s.

    Rounded up, so a client that waits this long is not refused again for rounding.
    """
    millis = math.ceil(round(max(0.0, seconds) * 1000, 6))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{text}s"
    if minutes:
        return f"{minutes}m{text}s"
    return f"{text}s"


def ratelimit_headers(states: Iterable[BucketState]) -> list[tuple[str, str]]:
    """limit, remaining and reset of requests and of tokens, each from the tightest applicable bucket."""
    states = list(states)
    headers: list[tuple[str, str]] = []
    for kind in ("requests", "tokens"):
        applicable = [s for s in states if s.bucket.kind == kind]
        if not applicable:
            continue
        tightest = min(applicable, key=lambda s: (s.remaining, s.bucket.limit, -s.reset))
        headers += [
            (f"x-ratelimit-limit-{kind}", str(tightest.bucket.limit)),
            (f"x-ratelimit-remaining-{kind}", str(tightest.remaining)),
            (f"x-ratelimit-reset-{kind}", format_duration(tightest.reset)),
        ]
    return headers
