"""The one score every load-aware strategy ranks nodes by (lower is better).

    score(n) = (T_n + R · P_n)                       expected seconds to serve a typical reply
             · (1 + (I_n + W_n) / C)                 its queue: in flight from here, waiting there
             · (c_n / c_min) ^ a                     price relative to the cheapest candidate
             / (1 - 0.9 · K_n²)                      KV-cache pressure
             / (1 - E_n) ^ 2                         recent errors

- T_n, P_n: time to first token and time per output token of node n for this model, measured by
  this proxy (stats.py: peak EWMAs that age toward a fallback), else the node's own /metrics,
  else the peers' median, else 0.5 s and 20 ms. T_n is at least the time the oldest request on n
  has been waiting for its first token: a node that stops answering loses traffic at once.
- R: the expected reply length, the candidates' average of observed completion tokens (128 before any).
- I_n: this proxy's requests in flight on n; W_n: requests waiting in n's queue (its /metrics);
  C = 16, the concurrency at which a node's latency is taken to have doubled. Measured latencies
  already include the queueing of a saturated node; this term covers the requests whose latency
  is not measured yet, so a burst does not herd onto the node that looked best.
- c_n: input + output price per million tokens; c_min the cheapest candidate's. To keep free
  nodes from making every other price infinitely dear, both get ε = 5% of the mean price (≥ 1).
  `a` is the strategy's price weight: `balanced` uses `routing.price_weight` (0.5), `fastest` 0.
- K_n: KV-cache usage (0..1) from /metrics, 0 when unknown: a half-full cache costs 1.3x, a full one
  10x (preemption and queueing start near full, not before). Scrapes are seconds apart, so the
  usage is carried forward to the requests running now: usage per running request (from the last
  scrape that saw any) times (this proxy's requests in flight now + the others' at the scrape). A
  node with two slots is seen full as soon as it has two requests, not at the next scrape.
- E_n: recent error rate (decayed, stats.py), capped at 0.9.

Each factor is dimensionless except the first, so the weights read as "how many times worse":
twice the price at a = 0.5 weighs like 41% more latency.

Every input is bounded before use (load.PLAUSIBLE for what a node reports, whatever its source),
and the score itself is finite and in [0, MAX_SCORE]: a node cannot report its way to a negative
or NaN score, which would win every draw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from atoma_proxy.core.nodes.load import plausible
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.stats import ModelLoad

__all__ = [
    "CONCURRENCY_SCALE",
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_TPOT",
    "DEFAULT_TTFT",
    "MAX_SCORE",
    "NodeScore",
    "latency_estimates",
    "score_nodes",
]

DEFAULT_TTFT = 0.5
DEFAULT_TPOT = 0.02
DEFAULT_OUTPUT_TOKENS = 128.0
CONCURRENCY_SCALE = 16.0
_KV_WEIGHT = 0.9
_MAX_ERROR_RATE = 0.9
_PRICE_EPSILON = 0.05
MAX_SCORE = 1e12  # the worst score; NaN or overflow gets it
_MAX_OUTPUT_TOKENS = 1e6
_MAX_SECONDS = 86_400.0
_MAX_EXPONENT = 100.0  # price_ratio ** weight as exp(weight * log(ratio)), kept from overflowing


@dataclass(frozen=True)
class NodeScore:
    """A node's score and the terms it was made of (for tests, logs and the admin API)."""

    node: Node
    score: float
    ttft: float
    tpot: float
    load: float
    kv_cache_usage: float
    error_rate: float
    price_ratio: float


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class _Peers:
    ttft: float | None
    tpot: float | None
    output_tokens: float


def _peers(model: str, nodes: Sequence[Node]) -> _Peers:
    ttfts, tpots, outputs = [], [], []
    for node in nodes:
        stats = node.stats.get(model)
        if stats is None:
            continue
        if stats.ttft.value is not None:
            ttfts.append(stats.ttft.value)
        if stats.tpot.value is not None:
            tpots.append(stats.tpot.value)
        if stats.output_tokens.value is not None:
            outputs.append(stats.output_tokens.value)
    output_tokens = statistics.fmean(outputs) if outputs else DEFAULT_OUTPUT_TOKENS
    if not 0 <= output_tokens <= _MAX_OUTPUT_TOKENS:  # NaN too
        output_tokens = DEFAULT_OUTPUT_TOKENS
    return _Peers(_median(ttfts), _median(tpots), output_tokens)


def latency_estimates(node: Node, model: str, peers: Sequence[Node], now: float) -> tuple[float, float]:
    """(TTFT seconds, seconds per output token) expected of `node` for `model` now."""
    return _estimates(node, model, _peers(model, peers), now)


def _estimates(node: Node, model: str, peers: _Peers, now: float) -> tuple[float, float]:
    reported = node.load.get(model)
    ttft_fallback = plausible("ttft", reported.ttft) if reported is not None else None
    tpot_fallback = plausible("tpot", reported.tpot) if reported is not None else None
    ttft_fallback = ttft_fallback if ttft_fallback is not None else peers.ttft
    tpot_fallback = tpot_fallback if tpot_fallback is not None else peers.tpot
    stats = node.stats.get(model)
    if stats is not None:
        ttft = stats.ttft.estimate(now, ttft_fallback)
        tpot = stats.tpot.estimate(now, tpot_fallback)
    else:
        ttft, tpot = ttft_fallback, tpot_fallback
    return _seconds(ttft, DEFAULT_TTFT), _seconds(tpot, DEFAULT_TPOT)


def _seconds(value: float | None, default: float) -> float:
    """A latency estimate, `default` when there is none or it is not a finite, non-negative number."""
    return value if value is not None and 0 <= value <= _MAX_SECONDS else default


def _kv_now(reported: ModelLoad | None, in_flight: int) -> float:
    """KV-cache usage carried forward from the last scrape to the requests running now."""
    if reported is None:
        return 0.0
    kv = plausible("kv_cache_usage", reported.kv_cache_usage) or 0.0
    per_request = reported.kv_per_request
    if per_request is not None and math.isfinite(per_request) and per_request >= 0:
        others = max(0.0, (plausible("running", reported.running) or 0.0) - reported.in_flight_at_scrape)
        kv = per_request * (others + max(in_flight, 0))
    return min(max(kv, 0.0), 1.0) if kv == kv else 0.0


def score_nodes(model: str, nodes: Sequence[Node], *, price_weight: float, now: float) -> list[NodeScore]:
    """The score of each node, in the order given."""
    if not nodes:
        return []
    peers = _peers(model, nodes)
    epsilon = max(1.0, _PRICE_EPSILON * statistics.fmean(n.price for n in nodes))
    cheapest = min(n.price for n in nodes) + epsilon
    scores = []
    for node in nodes:
        ttft, tpot = _estimates(node, model, peers, now)
        stats = node.stats.get(model)
        if stats is not None:
            ttft = max(ttft, stats.longest_wait(now))
        reported = node.load.get(model)
        waiting = (plausible("waiting", reported.waiting) or 0.0) if reported is not None else 0.0
        kv = _kv_now(reported, stats.in_flight if stats is not None else 0)
        errors = min(stats.error_rate(now), _MAX_ERROR_RATE) if stats is not None else 0.0
        errors = errors if errors >= 0 else 0.0  # NaN too
        load = 1.0 + (max(node.in_flight, 0) + waiting) / CONCURRENCY_SCALE
        price_ratio = (node.price + epsilon) / cheapest
        score = (
            (ttft + peers.output_tokens * tpot)
            * load
            * math.exp(min(price_weight * math.log(price_ratio), _MAX_EXPONENT))
            / (1.0 - _KV_WEIGHT * kv * kv)
            / (1.0 - errors) ** 2
        )
        score = min(score, MAX_SCORE) if score >= 0 else MAX_SCORE  # NaN compares false
        scores.append(NodeScore(node, score, ttft, tpot, load, kv, errors, price_ratio))
    return scores
