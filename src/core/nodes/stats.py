"""What the proxy knows of a node's performance per model: reported by the node, and measured.

`ModelLoad` is what the node's /metrics said at the last scrape (see load.py). `ModelStats` is
what this proxy measured itself on the requests it sent, passively (no extra traffic):

- time to first token and time per output token, as peak-sensitive EWMAs: a slower sample moves
  the average half-way at once, a faster one only a fifth of the way, so a node that slows down
  loses traffic immediately and wins it back gradually;
- the error rate, from exponentially decayed counts (half-life `ERROR_HALF_LIFE`) plus
  `PRIOR_SUCCESSES` pseudo-successes, so two unlucky answers do not starve a node and a burst of
  errors fades on its own even if the node gets no traffic;
- requests in flight, and since when the oldest of them has been waiting for its first token
  (a node that stops answering is seen at once, before any of its slow answers completes).

Measurements age: `ttft_estimate`/`tpot_estimate` blend them toward a fallback (the node's own
metrics, else the peers' median) as they grow old (time constant `STALE_AFTER`), so a node that
was slow once is tried again later instead of being starved forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ERROR_HALF_LIFE", "PRIOR_SUCCESSES", "STALE_AFTER", "ModelLoad", "ModelStats", "PeakEwma"]

ERROR_HALF_LIFE = 20.0  # seconds
PRIOR_SUCCESSES = 3.0
STALE_AFTER = 10.0  # seconds: time constant of the blend of old measurements toward the fallback
_RISE, _FALL = 0.5, 0.2


@dataclass
class ModelLoad:
    """What a node's /metrics said about one model at the last scrape; None = not published."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # fraction, 0..1
    ttft: float | None = None  # mean seconds over the last scrape interval
    tpot: float | None = None  # mean seconds per output token over the last scrape interval
    in_flight_at_scrape: int = 0  # this proxy's requests of the model on the node when it was scraped
    kv_per_request: float | None = None  # KV-cache usage / running, from the last scrape with requests running


class PeakEwma:
    """An exponentially weighted moving average that rises faster than it falls."""

    __slots__ = ("updated_at", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self.updated_at = 0.0

    def observe(self, sample: float, now: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            weight = _RISE if sample > self.value else _FALL
            self.value += weight * (sample - self.value)
        self.updated_at = now

    def estimate(self, now: float, fallback: float | None) -> float | None:
        """The average, drawn toward `fallback` as it ages; `fallback` when nothing was measured."""
        if self.value is None:
            return fallback
        if fallback is None:
            return self.value
        freshness = math.exp(-max(0.0, now - self.updated_at) / STALE_AFTER)
        return fallback + (self.value - fallback) * freshness


class ModelStats:
    """This proxy's measurements of one node serving one model."""

    def __init__(self) -> None:
        self.ttft = PeakEwma()
        self.tpot = PeakEwma()
        self.output_tokens = PeakEwma()
        self.in_flight = 0
        self._waiting: dict[int, float] = {}  # attempt key -> when it started waiting for its first token
        self.successes = 0
        self.failures = 0
        # Misbehaviours, each also a failure: generated past the cap it was told, usage it could not have produced.
        self.overproduced = 0
        self.implausible_usage = 0
        self._errors = 0.0
        self._outcomes = 0.0
        self._decayed_at = 0.0

    def _decay(self, now: float) -> None:
        if now > self._decayed_at:
            factor = 0.5 ** ((now - self._decayed_at) / ERROR_HALF_LIFE)
            self._errors *= factor
            self._outcomes *= factor
            self._decayed_at = now

    def record_success(
        self, now: float, *, ttft: float | None = None, tpot: float | None = None, output_tokens: int | None = None
    ) -> None:
        self._decay(now)
        self._outcomes += 1
        self.successes += 1
        if ttft is not None:
            self.ttft.observe(ttft, now)
        if tpot is not None:
            self.tpot.observe(tpot, now)
        if output_tokens is not None and output_tokens > 0:
            self.output_tokens.observe(float(output_tokens), now)

    def record_failure(self, now: float) -> None:
        self._decay(now)
        self._outcomes += 1
        self._errors += 1
        self.failures += 1

    def begin_wait(self, key: int, now: float) -> None:
        self._waiting[key] = now

    def end_wait(self, key: int) -> None:
        self._waiting.pop(key, None)

    def longest_wait(self, now: float) -> float:
        """Seconds the oldest request still waiting for its first token has waited; 0 when none waits."""
        return now - min(self._waiting.values()) if self._waiting else 0.0

    def forget_errors(self) -> None:
        """The node recovered (its health probe or a trial request succeeded): old errors no longer apply."""
        self._errors = 0.0

    def error_rate(self, now: float) -> float:
        """Recent failures / (recent outcomes + PRIOR_SUCCESSES): 0 with no history, below 1 always."""
        self._decay(now)
        return self._errors / (self._outcomes + PRIOR_SUCCESSES)
