"""GET /metrics: Prometheus text under vLLM's metric names, so the proxy's load-aware routing and
dashboards can be tested against the simulator exactly as against vLLM.

Each app has its own CollectorRegistry (several simulators share a process in the demo and the
tests). Load gauges are computed at scrape time from the live counts. Deviations from vLLM:
`vllm:time_per_output_token_seconds` is observed once per request (its mean inter-token time),
not once per token; `vllm:gpu_cache_usage_perc` and `vllm:kv_cache_usage_perc` are simulated as
running / max_concurrency, or 1% per running request (capped at 100%) when unlimited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["E2E_BUCKETS", "TPOT_BUCKETS", "TTFT_BUCKETS", "LoadSource", "ModelMetrics", "SimMetrics"]

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)

# model -> [running, waiting]
LoadSource = Callable[[], tuple[Mapping[str, Sequence[float]], float]]


class _LoadCollector(Collector):
    """vllm:num_requests_running / _waiting and the cache-usage gauges, read at scrape time."""

    def __init__(self, source: LoadSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        load, cache_usage = self._source()
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests being generated.", labels=["model_name"])
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Requests queued for a slot.", labels=["model_name"])
        gpu = GaugeMetricFamily(
            "vllm:gpu_cache_usage_perc", "Simulated KV-cache usage (1 = 100%).", labels=["model_name"]
        )
        kv = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc", "Simulated KV-cache usage (1 = 100%).", labels=["model_name"]
        )
        for model, (model_running, model_waiting) in load.items():
            running.add_metric([model], model_running)
            waiting.add_metric([model], model_waiting)
            gpu.add_metric([model], cache_usage)
            kv.add_metric([model], cache_usage)
        yield from (running, waiting, gpu, kv)


class SimMetrics:
    def __init__(self, models: list[str], load: LoadSource) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=False)
        labels = ["model_name"]
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefill tokens processed.", labels, registry=registry)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Generation tokens produced.", labels, registry=registry
        )
        self.request_success = Counter(
            "vllm:request_success", "Successfully finished requests.", [*labels, "finished_reason"], registry=registry
        )
        self.cancelled = Counter(
            "atoma_sim_requests_cancelled",
            "Requests abandoned by their client before the end.",
            labels,
            registry=registry,
        )
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Time to first token.", labels, registry=registry, buckets=TTFT_BUCKETS
        )
        self.tpot = Histogram(
            "vllm:time_per_output_token_seconds",
            "Mean time per output token of a request.",
            labels,
            registry=registry,
            buckets=TPOT_BUCKETS,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            labels,
            registry=registry,
            buckets=E2E_BUCKETS,
        )
        registry.register(_LoadCollector(load))
        # Labelled children resolved once (labels() costs a lock and a tuple build per call); every
        # series thereby exists at 0 from the start, as in vLLM.
        self.by_model = {model: ModelMetrics(self, model) for model in models}


class ModelMetrics:
    """One model's children of the SimMetrics families, for the request hot path."""

    def __init__(self, metrics: SimMetrics, model: str) -> None:
        self.prompt_tokens = metrics.prompt_tokens.labels(model)
        self.generation_tokens = metrics.generation_tokens.labels(model)
        self.cancelled = metrics.cancelled.labels(model)
        self.ttft = metrics.ttft.labels(model)
        self.tpot = metrics.tpot.labels(model)
        self.e2e = metrics.e2e.labels(model)
        self.success = {reason: metrics.request_success.labels(model, reason) for reason in ("stop", "length")}
