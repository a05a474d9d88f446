"""Live load reported by the nodes themselves: their Prometheus /metrics, scraped at an interval.

vLLM and SGLang publish the same facts under different names; each fact below lists its names in
order of preference (newer names first). Every fact is optional: a node without /metrics, or
with a metric missing, simply leaves that field None and the score uses what it has.

    fact            vLLM                                           SGLang
    running         vllm:num_requests_running                      sglang:num_running_reqs
    waiting         vllm:num_requests_waiting                      sglang:num_queue_reqs
    KV-cache use    vllm:kv_cache_usage_perc, :gpu_cache_usage_perc sglang:token_usage
    TTFT            vllm:time_to_first_token_seconds               sglang:time_to_first_token_seconds
    TPOT            vllm:time_per_output_token_seconds,            sglang:time_per_output_token_seconds,
                    vllm:inter_token_latency_seconds               sglang:inter_token_latency_seconds

Samples are matched to a model by their `model_name` label; a node whose labels name none of our
models (served under another name) reports node-wide values. TTFT and TPOT are means over the
last scrape interval (the difference of the cumulative `_sum` and `_count` between two scrapes),
so they follow the node's current state instead of its lifetime average.

A node's /metrics is its own claim, and a low number buys it traffic: values that cannot be true
are dropped (NaN, infinities, negative counts, sums or means, counters that went backwards while
the count grew) and the rest is clamped to a plausible range (`PLAUSIBLE`): a queue of at most
100,000, a KV-cache usage of 0..1, a mean TTFT of 1 ms to 10 min, a TPOT of 0.1 ms to 1 min.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from atoma_proxy.core.nodes.prometheus import Sample, parse_metrics_text
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.stats import ModelLoad

__all__ = ["PLAUSIBLE", "MetricsScraper", "ModelLoad", "model_loads", "plausible"]

log = logging.getLogger(__name__)

RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
TTFT = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")
TPOT = (
    "vllm:time_per_output_token_seconds",
    "vllm:inter_token_latency_seconds",
    "sglang:time_per_output_token_seconds",
    "sglang:inter_token_latency_seconds",
)
_MODEL_LABEL = "model_name"
MAX_QUEUE = 100_000.0
# (lowest, highest) believable value of each fact; outside it, NaN or infinite: see the module docstring.
PLAUSIBLE = {
    "running": (0.0, MAX_QUEUE),
    "waiting": (0.0, MAX_QUEUE),
    "kv_cache_usage": (0.0, 1.0),
    "ttft": (0.001, 600.0),
    "tpot": (0.0001, 60.0),
}
# A node without /metrics is asked again only every this many rounds.
_RETRY_ROUNDS = 10


# (sum, count) of a histogram, cumulative, keyed by (metric family, model).
HistogramTotals = dict[tuple[str, str], tuple[float, float]]


def model_loads(samples: Sequence[Sample], models: frozenset[str], previous: HistogramTotals) -> dict[str, ModelLoad]:
    """The load of each of `models` in these samples; `previous` is updated with the new histogram totals."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    loads: dict[str, ModelLoad] = {}
    for model in models:
        load = ModelLoad(
            running=plausible("running", _gauge(by_name, RUNNING, model, sum)),
            waiting=plausible("waiting", _gauge(by_name, WAITING, model, sum)),
            kv_cache_usage=plausible("kv_cache_usage", _gauge(by_name, KV_CACHE, model, max)),
            ttft=plausible("ttft", _histogram_mean(by_name, TTFT, model, previous)),
            tpot=plausible("tpot", _histogram_mean(by_name, TPOT, model, previous)),
        )
        loads[model] = load
    return loads


def plausible(fact: str, value: float | None) -> float | None:
    """`value` clamped to the fact's plausible range; None when it is NaN, infinite or negative."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    low, high = PLAUSIBLE[fact]
    return min(max(value, low), high)


def _for_model(samples: list[Sample], model: str) -> list[Sample]:
    matching = [s for s in samples if s.labels.get(_MODEL_LABEL) == model]
    return matching or samples


def _first_family(by_name: dict[str, list[Sample]], names: Sequence[str], suffix: str = "") -> tuple[str, list[Sample]]:
    for name in names:
        found = by_name.get(name + suffix)
        if found:
            return name, found
    return "", []


def _gauge(
    by_name: dict[str, list[Sample]], names: Sequence[str], model: str, combine: Callable[[list[float]], float]
) -> float | None:
    _, samples = _first_family(by_name, names)
    values = [s.value for s in _for_model(samples, model)]
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        return None  # one lying series taints the sum: the fact is unknown
    return combine(values)


def _histogram_mean(
    by_name: dict[str, list[Sample]], names: Sequence[str], model: str, previous: HistogramTotals
) -> float | None:
    family, sums = _first_family(by_name, names, "_sum")
    if not family:
        return None
    counts = by_name.get(family + "_count", [])
    total_sum = sum(s.value for s in _for_model(sums, model))
    total_count = sum(s.value for s in _for_model(counts, model))
    key = (family, model)
    if not (math.isfinite(total_sum) and math.isfinite(total_count) and total_sum >= 0 and total_count >= 0):
        previous.pop(key, None)
        return None
    before = previous.get(key)
    previous[key] = (total_sum, total_count)
    if before is not None and total_count >= before[1]:
        delta_sum, delta_count = total_sum - before[0], total_count - before[1]
    else:  # first scrape, or the node restarted and its counters began again
        delta_sum, delta_count = total_sum, total_count
    if delta_count <= 0 or delta_sum < 0:
        return None
    return delta_sum / delta_count


MetricsFetcher = Callable[[Node], Awaitable[str | None]]


class MetricsScraper:
    """Scrapes every active node's /metrics each `interval` seconds into `node.load`."""

    def __init__(self, registry: NodeRegistry, fetch: MetricsFetcher, interval: float) -> None:
        self._registry = registry
        self._fetch = fetch
        self._interval = interval
        self._totals: dict[str, HistogramTotals] = {}
        self._skip_rounds: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def scrape(self, node: Node) -> None:
        """One scrape of one node; a failure clears its load (stale numbers are worse than none)."""
        try:
            text = await self._fetch(node)
        except Exception:  # a broken exporter must never break routing
            log.debug("scraping /metrics of node %s failed", node.id, exc_info=True)
            text = None
        if text is None:
            node.load = {}
            self._skip_rounds[node.id] = _RETRY_ROUNDS
            return
        old_loads = node.load
        loads = model_loads(parse_metrics_text(text), node.models, self._totals.setdefault(node.id, {}))
        for model, load in loads.items():
            stats = node.stats.get(model)
            load.in_flight_at_scrape = stats.in_flight if stats is not None else 0
            # No request finished since the last scrape: the last interval's means still stand.
            old = old_loads.get(model)
            if load.running and load.kv_cache_usage is not None:
                load.kv_per_request = load.kv_cache_usage / load.running
            if old is not None:
                load.ttft = load.ttft if load.ttft is not None else old.ttft
                load.tpot = load.tpot if load.tpot is not None else old.tpot
                if load.kv_per_request is None:  # idle at this scrape: what one request takes still holds
                    load.kv_per_request = old.kv_per_request
        node.load = loads
        node.load_scraped_at = time.monotonic()

    async def scrape_all(self) -> None:
        due = []
        for node in self._registry.nodes():
            if node.draining:
                continue
            skip = self._skip_rounds.get(node.id, 0)
            if skip > 0:
                self._skip_rounds[node.id] = skip - 1
                continue
            due.append(node)
        await asyncio.gather(*(self.scrape(n) for n in due))
        known = {n.id for n in self._registry.nodes()}
        for node_id in [k for k in self._totals if k not in known]:
            del self._totals[node_id]

    async def _run(self) -> None:
        while True:
            try:
                await self.scrape_all()
            except Exception:  # a scrape round must never kill the scraper
                log.exception("metrics scrape round failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="node-metrics-scraper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
