"""The proxy's Prometheus metrics (README "Operations"), one definition each, no per-user labels.

Counters and histograms live in prometheus_client's default registry. With several workers,
`PROMETHEUS_MULTIPROC_DIR` names a directory shared by them (the `core`/`facade` commands create one
when workers > 1 and none is set): each worker writes its values there and any worker's /metrics sums
them all (prometheus_client's multiprocess mode). Node state (health, breaker, score) is read from the
answering process's registry at scrape time, so it costs nothing per request.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_TPOT = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# --- the core: requests (kind: chat, completion, embeddings, images) -------------------------------------
CHAT_REQUESTS = Counter("atoma_chat_completions_num_requests", "Chat and text completion requests.", ["model"])
EMBEDDING_REQUESTS = Counter("atoma_text_embs_num_requests", "Embeddings requests.", ["model"])
IMAGE_REQUESTS = Counter("atoma_image_gen_num_requests", "Image generation requests.", ["model"])
COMPLETED = Counter("atoma_total_completed_requests", "Inference requests answered successfully.", ["kind"])
FAILED = Counter("atoma_total_failed_requests", "Inference requests that ended with an error.", ["kind", "reason"])
TOO_MANY = Counter("atoma_total_too_many_requests", "Requests refused by a rate limit (429).")
LATENCY = Histogram(
    "atoma_request_latency_seconds", "Inference request duration in the core.", ["kind"], buckets=_LATENCY
)
TTFT = Histogram(
    "atoma_chat_completions_time_to_first_token", "Seconds to the first token of a stream.", ["model"], buckets=_TTFT
)
TPOT = Histogram(
    "atoma_chat_completions_intra_token_generation_time",
    "Mean seconds per output token after the first, per stream.",
    ["model"],
    buckets=_TPOT,
)
INPUT_TOKENS = Counter("atoma_chat_completions_input_tokens", "Prompt tokens, as the nodes reported.", ["model"])
OUTPUT_TOKENS = Counter("atoma_chat_completions_completions_tokens", "Generated tokens.", ["model"])
SPEND = Counter("atoma_spend_micro_usd", "Micro-USD charged to users.", ["model"])
IN_FLIGHT = Gauge("atoma_requests_in_flight", "Inference requests being served.", ["kind"], multiprocess_mode="livesum")
CORE_OVERHEAD = Histogram(
    "atoma_core_overhead_seconds", "Core time per request not spent waiting on a node.", buckets=_OVERHEAD
)
# --- nodes, as the relay sees them --------------------------------------------------------------------
NODE_ATTEMPTS = Counter("atoma_node_attempts", "Node attempts by outcome.", ["node", "outcome"])
NODE_FAILED_CONNECTIONS = Counter("atoma_failed_node_connections", "Node attempts that failed.", ["node"])
NODE_LATENCY = Histogram("atoma_node_connection_latency", "Seconds of one node attempt.", ["node"], buckets=_LATENCY)
# --- the ledger ----------------------------------------------------------------------------------------
RESERVATIONS_HELD = Gauge(
    "atoma_ledger_reservations_held", "Reservations awaiting settlement.", multiprocess_mode="livesum"
)
LEDGER_GROUP_SIZE = Histogram(
    "atoma_ledger_group_size", "Statements per group commit.", buckets=(1, 2, 4, 8, 16, 32, 64)
)
# --- the facade ----------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("atoma_http_requests", "HTTP requests answered by the facade.", ["route", "status"])
HTTP_LATENCY = Histogram(
    "atoma_http_request_duration_seconds", "Facade time per HTTP request.", ["route"], buckets=_LATENCY
)
HTTP_IN_FLIGHT = Gauge("atoma_http_requests_in_flight", "HTTP requests being served.", multiprocess_mode="livesum")
FACADE_OVERHEAD = Histogram(
    "atoma_proxy_overhead_seconds",
    "Time to the response head minus the time waited on nodes (x-atoma-overhead-ms).",
    buckets=_OVERHEAD,
)


def child(metric: Any) -> Callable[..., Any]:
    """`metric.labels`, memoized: labels() validates and locks (about 2 us), a hit is a dict lookup.

    Bounded: label values are kinds, reasons, routes, served models and node ids, never what a client chose.
    """
    return functools.lru_cache(maxsize=4096)(metric.labels)


REQUEST_COUNTERS = {"embeddings": EMBEDDING_REQUESTS, "images": IMAGE_REQUESTS}


def requests_counter(kind: str) -> Counter:
    """The original's counter of a request kind: chat for chat, text completions and any other text kind."""
    return REQUEST_COUNTERS.get(kind, CHAT_REQUESTS)


class FunctionCollector(Collector):
    """Metrics computed at scrape time by `collect`."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def gauge(name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def exposition(extra: Collector | None = None) -> bytes:
    """The text of /metrics: this process's metrics (all workers' in multiprocess mode), then `extra`."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if extra is not None:
        own = CollectorRegistry()
        own.register(extra)
        text += generate_latest(own)
    return text
