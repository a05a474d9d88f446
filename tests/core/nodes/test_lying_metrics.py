"""A node's /metrics must not buy it traffic: whatever it reports, its score is finite and not negative."""

from __future__ import annotations

import math
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from atoma_proxy.core.nodes.load import model_loads
from atoma_proxy.core.nodes.prometheus import parse_metrics_text
from atoma_proxy.core.nodes.scoring import MAX_SCORE, score_nodes
from atoma_proxy.core.nodes.selection import SelectionRequest, StrategySelector, parse_strategy
from atoma_proxy.core.nodes.stats import ModelLoad
from tests.core.nodes.support import FakeClock, make_node

NOW = 1000.0
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
MAYBE_FLOAT = st.none() | ANY_FLOAT


@st.composite
def model_loads_any(draw: st.DrawFn) -> ModelLoad:
    return ModelLoad(
        running=draw(MAYBE_FLOAT),
        waiting=draw(MAYBE_FLOAT),
        kv_cache_usage=draw(MAYBE_FLOAT),
        ttft=draw(MAYBE_FLOAT),
        tpot=draw(MAYBE_FLOAT),
        in_flight_at_scrape=draw(st.integers(min_value=-10, max_value=10**6)),
        kv_per_request=draw(MAYBE_FLOAT),
    )


@settings(max_examples=300, deadline=None)
@given(
    loads=st.lists(model_loads_any(), min_size=1, max_size=4),
    prices=st.lists(st.integers(min_value=0, max_value=10**12), min_size=4, max_size=4),
    in_flight=st.lists(st.integers(min_value=0, max_value=10**6), min_size=4, max_size=4),
    measured=st.lists(st.none() | st.tuples(ANY_FLOAT, ANY_FLOAT), min_size=4, max_size=4),
    price_weight=st.floats(min_value=0, max_value=1e6),
)
def test_a_score_is_never_negative_nan_or_infinite(
    loads: list[ModelLoad],
    prices: list[int],
    in_flight: list[int],
    measured: list[tuple[float, float] | None],
    price_weight: float,
) -> None:
    nodes = []
    for index, load in enumerate(loads):
        node = make_node(f"n{index}", price=prices[index])
        node.load["m"] = load
        node.in_flight = in_flight[index]
        if measured[index] is not None:
            ttft, tpot = measured[index]  # type: ignore[misc]
            node.model_stats("m").ttft.observe(ttft, NOW)
            node.model_stats("m").tpot.observe(tpot, NOW)
        nodes.append(node)
    for score in score_nodes("m", nodes, price_weight=price_weight, now=NOW):
        assert math.isfinite(score.score) and 0 <= score.score <= MAX_SCORE, score


def _metrics(waiting: str, kv: str = "0.5", ttft_sum: str = "1.0") -> str:
    return (
        f'vllm:num_requests_running{{model_name="m"}} 2\n'
        f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n'
        f'vllm:time_to_first_token_seconds_sum{{model_name="m"}} {ttft_sum}\n'
        f'vllm:time_to_first_token_seconds_count{{model_name="m"}} 4\n'
    )


def _load(text: str) -> ModelLoad:
    return model_loads(parse_metrics_text(text), frozenset({"m"}), {})["m"]


def test_impossible_metrics_are_ignored_and_implausible_ones_clamped() -> None:
    for lie in ("-1000000", "NaN", "-Inf", "+Inf"):
        load = _load(_metrics(lie, kv=lie, ttft_sum=lie))
        assert (load.waiting, load.kv_cache_usage, load.ttft) == (None, None, None), lie
    huge = _load(_metrics("1e300", kv="7", ttft_sum="1e9"))
    assert huge.waiting == 100_000 and huge.kv_cache_usage == 1.0 and huge.ttft == 600.0
    instant = _load(_metrics("0", ttft_sum="0"))  # a mean TTFT of 0 s: no faster than 1 ms
    assert instant.ttft == 0.001
    honest = _load(_metrics("3"))
    assert (honest.running, honest.waiting, honest.kv_cache_usage, honest.ttft) == (2, 3, 0.5, 0.25)


def _balanced_picks(liar_load: ModelLoad, draws: int = 200) -> Counter[str]:
    clock = FakeClock(NOW)
    honest = make_node("honest", price=100)
    liar = make_node("liar", price=1000)  # ten times the price
    liar.load["m"] = liar_load
    selector = StrategySelector("balanced", rng=random.Random(7), clock=clock)
    request = SelectionRequest(strategy=parse_strategy("balanced"))
    return Counter(selector.select("m", [honest, liar], request).id for _ in range(draws))


def test_a_node_lying_about_its_queue_does_not_get_the_traffic() -> None:
    for waiting in (-1_000_000.0, math.nan, -math.inf):
        picks = _balanced_picks(ModelLoad(waiting=waiting, kv_cache_usage=waiting, running=waiting))
        assert picks["honest"] > picks["liar"], (waiting, picks)
    truthful = _balanced_picks(ModelLoad(waiting=0.0))
    lying = _balanced_picks(ModelLoad(waiting=-1_000_000.0))
    assert lying["liar"] <= truthful["liar"]  # the lie buys nothing over the truth
