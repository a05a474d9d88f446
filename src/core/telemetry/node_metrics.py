"""Node state as Prometheus gauges, read from the registry at scrape time (nothing per request)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from atoma_proxy.core.nodes.breaker import CircuitState
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.nodes.scoring import score_nodes
from atoma_proxy.core.telemetry.metrics import FunctionCollector, gauge

__all__ = ["node_collector"]


def node_collector(registry: NodeRegistry, price_weight: float, clock: Callable[[], float]) -> FunctionCollector:
    def collect() -> Iterable[Metric]:
        nodes = registry.nodes()
        yield gauge("atoma_node_healthy", "1 when the node's health probe passes.", ["node"],
                    (([n.id], float(n.healthy)) for n in nodes))  # fmt: skip
        yield gauge("atoma_node_draining", "1 while the node takes no new requests.", ["node"],
                    (([n.id], float(n.draining)) for n in nodes))  # fmt: skip
        yield gauge("atoma_node_in_flight", "Requests the node is serving for this process.", ["node"],
                    (([n.id], float(n.in_flight)) for n in nodes))  # fmt: skip
        yield gauge(
            "atoma_node_breaker_state",
            "1 for the node's circuit breaker state (closed, open, half_open).",
            ["node", "state"],
            (([n.id, state.value], float(n.breaker.state is state)) for n in nodes for state in CircuitState),
        )
        now = clock()
        scores = []
        for model in sorted(registry.models()):
            serving = [n for n in nodes if model in n.models]
            ranked = score_nodes(model, serving, price_weight=price_weight, now=now)
            scores += [([s.node.id, model], s.score) for s in ranked]
        yield gauge("atoma_node_score", "Balanced routing score (lower is better).", ["node", "model"], scores)
        labels = ["node", "model"]
        over = CounterMetricFamily("atoma_node_overproduced", "Answers past the output cap.", labels=labels)
        odd = CounterMetricFamily("atoma_node_implausible_usage", "Implausible usage reports.", labels=labels)
        for node in nodes:
            for model, stats in node.stats.items():
                over.add_metric([node.id, model], stats.overproduced)
                odd.add_metric([node.id, model], stats.implausible_usage)
        yield over
        yield odd

    return FunctionCollector(collect)
