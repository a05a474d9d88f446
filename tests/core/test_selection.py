from __future__ import annotations

import pytest

from atoma_proxy.core.errors import ModelNotFound, NoNodeAvailable
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.selection import LeastInFlightSelector


def _node(node_id: str, price: int, in_flight: int = 0, healthy: bool = True) -> Node:
    return Node(node_id, f"http://{node_id}", frozenset({"m"}), price, price, in_flight=in_flight, healthy=healthy)


def test_fewest_in_flight_wins_then_price() -> None:
    cheap_busy, dear_idle, cheap_idle = _node("a", 1, in_flight=3), _node("b", 9), _node("c", 1)
    selector = LeastInFlightSelector()
    assert selector.select("m", [cheap_busy, dear_idle, cheap_idle]) is cheap_idle
    cheap_idle.in_flight = 1
    assert selector.select("m", [cheap_busy, dear_idle, cheap_idle]) is dear_idle


def test_unhealthy_nodes_are_skipped_and_none_left_is_unavailable() -> None:
    down, up = _node("a", 1, healthy=False), _node("b", 5)
    assert LeastInFlightSelector().select("m", [down, up]) is up
    up.healthy = False
    with pytest.raises(NoNodeAvailable):
        LeastInFlightSelector().select("m", [down, up])


def test_registry_knows_models_and_refuses_unknown_ones() -> None:
    registry = NodeRegistry([_node("a", 1), _node("b", 2)])
    assert [n.id for n in registry.candidates("m")] == ["a", "b"]
    assert set(registry.models()) == {"m"}
    with pytest.raises(ModelNotFound):
        registry.candidates("other")
    with pytest.raises(ValueError, match="duplicate"):
        registry.add(_node("a", 3))
