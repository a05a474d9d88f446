"""The /metrics text parser and the load read from vLLM and SGLang samples."""

from __future__ import annotations

import math

import pytest

from atoma_proxy.core.nodes.load import HistogramTotals, model_loads
from atoma_proxy.core.nodes.prometheus import parse_metrics_text

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.42
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.5
vllm:time_to_first_token_seconds_created{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.7e+09
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 400.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
"""

SGLANG = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct",tp_rank="0"} 5.0
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct",tp_rank="1"} 1.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen2.5-7B-Instruct",tp_rank="0"} 7.0
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct",tp_rank="0"} 0.28
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct",tp_rank="1"} 0.31
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{model_name="Qwen/Qwen2.5-7B-Instruct"} 2.3518979474117756e+06
sglang:time_to_first_token_seconds_bucket{le="0.001",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
sglang:time_to_first_token_seconds_count{model_name="Qwen/Qwen2.5-7B-Instruct"} 1.1e+06
# HELP sglang:time_per_output_token_seconds Histogram of time per output token in seconds.
# TYPE sglang:time_per_output_token_seconds histogram
sglang:time_per_output_token_seconds_sum{model_name="Qwen/Qwen2.5-7B-Instruct"} 866964.5791549598
sglang:time_per_output_token_seconds_count{model_name="Qwen/Qwen2.5-7B-Instruct"} 7.557572e+06
"""

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def test_samples_keep_names_labels_and_values() -> None:
    samples = parse_metrics_text(VLLM)
    assert samples[0].name == "vllm:num_requests_running"
    assert samples[0].labels == {"engine": "0", "model_name": LLAMA}
    assert samples[0].value == 3.0
    inf_bucket = next(s for s in samples if s.labels.get("le") == "+Inf")
    assert inf_bucket.value == 10.0
    assert all(not s.name.startswith("#") for s in samples)


def test_escapes_special_values_timestamps_and_junk() -> None:
    text = (
        'a{path="C:\\\\dir",quote="say \\"hi\\"",nl="x\\ny"} 1 1700000000000\n'
        "b +Inf\nc -Inf\nd NaN\n"
        'e{unterminated="x} 1\nf{x=1} 2\n   \ng\nh 1 2 3\n'
        "i{} 4.5e-3\n"
    )
    samples = {s.name: s for s in parse_metrics_text(text)}
    assert samples["a"].labels == {"path": "C:\\dir", "quote": 'say "hi"', "nl": "x\ny"}
    assert samples["a"].value == 1.0
    assert samples["b"].value == math.inf and samples["c"].value == -math.inf and math.isnan(samples["d"].value)
    assert samples["i"].value == pytest.approx(0.0045)
    assert set(samples) == {"a", "b", "c", "d", "i"}  # malformed lines are skipped, not fatal


def test_vllm_load() -> None:
    totals: HistogramTotals = {}
    load = model_loads(parse_metrics_text(VLLM), frozenset({LLAMA}), totals)[LLAMA]
    assert (load.running, load.waiting, load.kv_cache_usage) == (3.0, 2.0, 0.42)
    assert load.ttft == pytest.approx(0.25)  # lifetime mean on the first scrape
    assert load.tpot == pytest.approx(0.02)  # the newer inter-token name is understood


def test_sglang_load_sums_ranks_and_takes_the_fullest_cache() -> None:
    load = model_loads(parse_metrics_text(SGLANG), frozenset({QWEN}), {})[QWEN]
    assert (load.running, load.waiting, load.kv_cache_usage) == (6.0, 7.0, 0.31)
    assert load.ttft == pytest.approx(2.3518979474117756e06 / 1.1e06)
    assert load.tpot == pytest.approx(866964.5791549598 / 7.557572e06)


def test_latencies_are_means_since_the_previous_scrape() -> None:
    totals: HistogramTotals = {}
    model_loads(parse_metrics_text(VLLM), frozenset({LLAMA}), totals)
    later = VLLM.replace(
        '_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0',
        '_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0',
    )
    later = later.replace(
        '_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.5',
        '_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.5',
    )
    load = model_loads(parse_metrics_text(later), frozenset({LLAMA}), totals)[LLAMA]
    assert load.ttft == pytest.approx(1.0)  # (4.5 - 2.5) / (12 - 10): the node slowed down lately
    assert load.tpot is None  # no new token since the last scrape


def test_missing_metrics_and_other_model_names() -> None:
    only_running = 'vllm:num_requests_running{model_name="served-name"} 4\n'
    load = model_loads(parse_metrics_text(only_running), frozenset({"atoma/chat"}), {})["atoma/chat"]
    assert load.running == 4.0  # labels name none of our models: node-wide
    assert (load.waiting, load.kv_cache_usage, load.ttft, load.tpot) == (None, None, None, None)
    assert model_loads([], frozenset({"m"}), {})["m"].running is None


def test_the_simulators_metrics_are_read() -> None:
    from prometheus_client import generate_latest

    from atoma_proxy.nodesim.config import SimConfig
    from atoma_proxy.nodesim.state import SimState

    state = SimState(SimConfig(chat_models=["atoma/sim-chat"], max_concurrency=4))
    state.load["atoma/sim-chat"] = [2, 3]
    state.limiter.running = 2
    state.metrics.by_model["atoma/sim-chat"].ttft.observe(0.3)
    text = generate_latest(state.metrics.registry).decode()
    load = model_loads(parse_metrics_text(text), frozenset({"atoma/sim-chat"}), {})["atoma/sim-chat"]
    assert (load.running, load.waiting, load.kv_cache_usage) == (2.0, 3.0, 0.5)
    assert load.ttft == pytest.approx(0.3)


def _sim_text(running: int, kv: float, ttft_count: int, ttft_sum: float) -> str:
    return (
        f'vllm:num_requests_running{{model_name="m"}} {running}\n'
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n'
        f'vllm:time_to_first_token_seconds_count{{model_name="m"}} {ttft_count}\n'
        f'vllm:time_to_first_token_seconds_sum{{model_name="m"}} {ttft_sum}\n'
    )


async def test_the_scraper_keeps_what_an_idle_scrape_cannot_tell() -> None:
    from atoma_proxy.core.nodes.load import MetricsScraper
    from atoma_proxy.core.nodes.registry import NodeRegistry
    from tests.core.nodes.support import make_node

    node = make_node("n")
    texts = iter([_sim_text(2, 0.5, 4, 2.0), _sim_text(0, 0.0, 4, 2.0), None])

    async def fetch(_: object) -> str | None:
        return next(texts)

    scraper = MetricsScraper(NodeRegistry([node]), fetch, interval=1.0)
    await scraper.scrape(node)
    assert node.load["m"].kv_per_request == 0.25 and node.load["m"].ttft == 0.5
    await scraper.scrape(node)  # idle now, and no request finished since
    assert node.load["m"].running == 0 and node.load["m"].kv_per_request == 0.25 and node.load["m"].ttft == 0.5
    await scraper.scrape(node)  # no /metrics (or no answer): nothing stale is kept
    assert node.load == {}
