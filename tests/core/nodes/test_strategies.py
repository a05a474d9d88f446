"""The score and the strategies, deterministic with a seeded RNG and a fixed clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from atoma_proxy.core.errors import InvalidRequest, NodeFailed, NoNodeAvailable
from atoma_proxy.core.nodes.breaker import BreakerPolicy, CircuitBreaker
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.scoring import DEFAULT_TPOT, DEFAULT_TTFT, latency_estimates, score_nodes
from atoma_proxy.core.nodes.selection import (
    SelectionRequest,
    StrategySelector,
    eligible_nodes,
    parse_strategy,
)
from atoma_proxy.core.nodes.stats import STALE_AFTER, ModelLoad
from tests.core.nodes.support import FakeClock, make_node

NOW = 1000.0


def _measured(node: Node, ttft: float, tpot: float, tokens: int = 100, at: float = NOW) -> Node:
    stats = node.model_stats("m")
    stats.record_success(at, ttft=ttft, tpot=tpot, output_tokens=tokens)
    return node


def _pool() -> dict[str, Node]:
    """fast and dear, slow and cheap, middling: the benchmark's shape in miniature."""
    return {
        "fast": _measured(make_node("fast", price=500), ttft=0.05, tpot=0.01),
        "slow": _measured(make_node("slow", price=100), ttft=0.5, tpot=0.04),
        "mid": _measured(make_node("mid", price=250), ttft=0.15, tpot=0.02),
    }


def test_the_score_is_the_documented_formula() -> None:
    a = _measured(make_node("a", price=100), ttft=0.2, tpot=0.01, tokens=50)
    b = _measured(make_node("b", price=300), ttft=0.1, tpot=0.01, tokens=150)
    b.in_flight = 4
    b.load["m"] = ModelLoad(waiting=4.0, kv_cache_usage=0.5)
    b.model_stats("m").record_failure(NOW)  # 1 error in 2 outcomes: rate 1 / (2 + 3 pseudo-successes)
    scores = {s.node.id: s for s in score_nodes("m", [a, b], price_weight=0.5, now=NOW)}
    tokens = (50 + 150) / 2
    epsilon = max(1.0, 0.05 * (200 + 600) / 2)
    assert scores["a"].score == pytest.approx(0.2 + tokens * 0.01)
    expected_b = (
        (0.1 + tokens * 0.01)
        * (1 + (4 + 4) / 16)
        * ((600 + epsilon) / (200 + epsilon)) ** 0.5
        / (1 - 0.9 * 0.5**2)
        / (1 - 1 / 5) ** 2
    )
    assert scores["b"].score == pytest.approx(expected_b)
    assert scores["b"].error_rate == pytest.approx(1 / 5)


def test_estimates_fall_back_to_node_metrics_then_peers_then_defaults() -> None:
    measured = _measured(make_node("measured"), ttft=0.3, tpot=0.03)
    reporting = make_node("reporting")
    reporting.load["m"] = ModelLoad(ttft=0.9, tpot=0.05)
    silent = make_node("silent")
    peers = [measured, reporting, silent]
    assert latency_estimates(measured, "m", peers, NOW) == (0.3, 0.03)
    assert latency_estimates(reporting, "m", peers, NOW) == (0.9, 0.05)
    assert latency_estimates(silent, "m", peers, NOW) == (0.3, 0.03)  # the peers' median
    assert latency_estimates(silent, "m", [silent], NOW) == (DEFAULT_TTFT, DEFAULT_TPOT)


def test_old_measurements_fade_toward_the_peers() -> None:
    once_slow = _measured(make_node("once-slow"), ttft=5.0, tpot=0.02, at=NOW)
    peer = _measured(make_node("peer"), ttft=0.1, tpot=0.02, at=NOW + 10 * STALE_AFTER)
    fresh, _ = latency_estimates(once_slow, "m", [once_slow, peer], NOW)
    faded, _ = latency_estimates(once_slow, "m", [once_slow, peer], NOW + 10 * STALE_AFTER)
    assert fresh > 2.5  # the median of 5.0 and 0.1 is 2.55; its own fresh value wins
    assert faded == pytest.approx(2.55, abs=0.01)  # back to the fallback: it will be tried again


def _shares(selector: StrategySelector, nodes: list[Node], requests: int = 2000) -> Counter[str]:
    return Counter(selector.select("m", nodes).id for _ in range(requests))


def test_balanced_sends_most_to_the_best_node_and_never_to_the_worst() -> None:
    pool = _pool()
    selector = StrategySelector("balanced", rng=random.Random(7), clock=FakeClock(NOW))
    shares = _shares(selector, list(pool.values()))
    assert shares["fast"] > 0.6 * 2000
    assert shares["slow"] == 0  # power of two choices: the worst never wins a pair
    assert shares["mid"] > 0
    again = _shares(StrategySelector("balanced", rng=random.Random(7), clock=FakeClock(NOW)), list(pool.values()))
    assert again == shares  # a seed makes it reproducible


def test_load_moves_traffic_away_from_a_busy_node() -> None:
    pool = _pool()
    pool["fast"].in_flight = 40
    selector = StrategySelector("balanced", rng=random.Random(1), clock=FakeClock(NOW))
    shares = _shares(selector, list(pool.values()))
    assert shares["fast"] < shares["mid"]


def test_price_weight_trades_speed_for_price() -> None:
    pool = _pool()
    nodes = [pool["fast"], pool["slow"]]
    fastest = _shares(StrategySelector("fastest", rng=random.Random(3), clock=FakeClock(NOW)), nodes)
    thrifty = _shares(StrategySelector("balanced", price_weight=4.0, rng=random.Random(3), clock=FakeClock(NOW)), nodes)
    assert fastest == Counter({"fast": 2000})
    assert thrifty == Counter({"slow": 2000})


def test_cheapest_always_takes_the_lowest_price_and_the_score_breaks_ties() -> None:
    pool = _pool()
    twin = _measured(make_node("slow-twin", price=100), ttft=2.0, tpot=0.1)
    selector = StrategySelector("cheapest", rng=random.Random(5), clock=FakeClock(NOW))
    assert _shares(selector, [*pool.values(), twin]) == Counter({"slow": 2000})


def test_round_robin_takes_turns_per_model() -> None:
    pool = list(_pool().values())
    selector = StrategySelector("round_robin")
    assert [selector.select("m", pool).id for _ in range(6)] == ["fast", "slow", "mid"] * 2


def test_a_request_can_ask_for_another_strategy() -> None:
    pool = _pool()
    selector = StrategySelector("fastest", rng=random.Random(0), clock=FakeClock(NOW))
    picked = {selector.select("m", list(pool.values()), SelectionRequest(strategy="cheapest")).id for _ in range(50)}
    assert picked == {"slow"}


def test_strategy_names_are_checked() -> None:
    assert parse_strategy(None) is None
    assert parse_strategy("") is None
    assert parse_strategy(" Round_Robin ") == "round_robin"
    with pytest.raises(InvalidRequest) as raised:
        parse_strategy("fastest-please")
    assert raised.value.metadata == {"param": "x-atoma-routing-strategy"}
    with pytest.raises(ValueError):
        StrategySelector("random")


def test_only_healthy_active_nodes_with_a_closed_breaker_are_eligible() -> None:
    up, sick, draining, ejected = (make_node(i) for i in ("up", "sick", "draining", "ejected"))
    sick.healthy = False
    draining.draining = True
    ejected.breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1), FakeClock())
    ejected.breaker.record_failure(ejected.breaker.dispatch())
    nodes = [up, sick, draining, ejected]
    assert eligible_nodes("m", nodes, SelectionRequest()) == [up]
    up.healthy = False
    with pytest.raises(NodeFailed, match="failed its last requests") as ejected_only:
        eligible_nodes("m", nodes, SelectionRequest())
    assert ejected_only.value.retry_after == pytest.approx(1.0)  # when the ejection ends
    with pytest.raises(NoNodeAvailable, match="healthy"):
        eligible_nodes("m", [sick], SelectionRequest())


def test_retries_prefer_untried_nodes_and_repeat_one_only_when_alone() -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    assert eligible_nodes("m", [a, b, c], SelectionRequest(tried=(a,))) == [b, c]
    assert eligible_nodes("m", [a, b], SelectionRequest(tried=(a, b))) == [a]  # never b twice in a row
    assert eligible_nodes("m", [a], SelectionRequest(tried=(a, a))) == [a]


def test_a_pinned_request_goes_to_its_node_only() -> None:
    a, b = make_node("a"), make_node("b")
    assert eligible_nodes("m", [a, b], SelectionRequest(pinned_node_id="b")) == [b]
    with pytest.raises(NoNodeAvailable, match="bound to"):
        eligible_nodes("m", [a, b], SelectionRequest(pinned_node_id="z"))
    b.healthy = False
    with pytest.raises(NoNodeAvailable):
        eligible_nodes("m", [a, b], SelectionRequest(pinned_node_id="b"))


def test_a_node_with_two_slots_is_seen_full_as_soon_as_it_has_two_requests() -> None:
    small = _measured(make_node("small"), ttft=0.05, tpot=0.01)
    # Last scrape: one request running (ours), the cache half full: a request takes half of it.
    small.load["m"] = ModelLoad(running=1.0, kv_cache_usage=0.5, kv_per_request=0.5, in_flight_at_scrape=1)
    stats = small.model_stats("m")
    stats.in_flight = 1
    one = score_nodes("m", [small], price_weight=0.5, now=NOW)[0]
    stats.in_flight = 2
    two = score_nodes("m", [small], price_weight=0.5, now=NOW)[0]
    assert one.kv_cache_usage == 0.5 and two.kv_cache_usage == 1.0
    assert two.score > 5 * one.score  # full: 1 / (1 - 0.9) against 1 / (1 - 0.9 * 0.25)
