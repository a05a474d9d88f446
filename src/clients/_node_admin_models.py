"""What a NodeAdminClient returns: frozen dataclasses over the atoma.routing.v1 NodeAdminService protos.

Each keeps its proto in `raw`. Prices are integer micro-USD (per million tokens, or per image); times are seconds. A
measurement the core does not have yet is 0, as in the proto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as pb

__all__ = ["CircuitState", "NodeModelState", "NodeState", "ServingState", "node_state"]

ServingState = Literal["active", "draining", "unspecified"]
CircuitState = Literal["closed", "open", "half_open", "unspecified"]

_SERVING: dict[int, ServingState] = {
    pb.NODE_SERVING_STATE_ACTIVE: "active",
    pb.NODE_SERVING_STATE_DRAINING: "draining",
}
_CIRCUIT: dict[int, CircuitState] = {
    pb.CIRCUIT_STATE_CLOSED: "closed",
    pb.CIRCUIT_STATE_OPEN: "open",
    pb.CIRCUIT_STATE_HALF_OPEN: "half_open",
}


@dataclass(frozen=True)
class NodeModelState:
    """One model on one node: the load the node reports and what the core measured."""

    model: str
    in_flight: int
    ttft_seconds: float
    time_per_output_token_seconds: float
    error_rate: float
    running: float
    waiting: float
    kv_cache_usage: float
    successes: int
    failures: int
    score: float  # the balanced strategy's score (lower is better); 0 when the node is not a candidate
    raw: pb.NodeModelState


@dataclass(frozen=True)
class NodeState:
    """A node and what the core called knows of it right now (its API key never leaves the core)."""

    node_id: str
    url: str
    models: tuple[str, ...]
    input_price_per_million: int
    output_price_per_million: int
    price_per_image: int
    serving_state: ServingState
    healthy: bool
    circuit_state: CircuitState
    ejected_for_seconds: float
    in_flight: int
    source: str  # "config" or "admin"
    model_states: tuple[NodeModelState, ...]
    raw: pb.NodeState

    @property
    def draining(self) -> bool:
        """Whether the node takes no new request (those in flight finish)."""
        return self.serving_state == "draining"


def node_state(proto: pb.NodeState) -> NodeState:
    """The dataclass of a NodeState proto."""
    return NodeState(
        node_id=proto.node_id,
        url=proto.url,
        models=tuple(proto.models),
        input_price_per_million=proto.input_price_per_million,
        output_price_per_million=proto.output_price_per_million,
        price_per_image=proto.price_per_image,
        serving_state=_SERVING.get(proto.serving_state, "unspecified"),
        healthy=proto.healthy,
        circuit_state=_CIRCUIT.get(proto.circuit_state, "unspecified"),
        ejected_for_seconds=proto.ejected_for_seconds,
        in_flight=proto.in_flight,
        source=proto.source,
        model_states=tuple(_model_state(state) for state in proto.model_states),
        raw=proto,
    )


def _model_state(proto: pb.NodeModelState) -> NodeModelState:
    return NodeModelState(
        model=proto.model,
        in_flight=proto.in_flight,
        ttft_seconds=proto.ttft_seconds,
        time_per_output_token_seconds=proto.time_per_output_token_seconds,
        error_rate=proto.error_rate,
        running=proto.running,
        waiting=proto.waiting,
        kv_cache_usage=proto.kv_cache_usage,
        successes=proto.successes,
        failures=proto.failures,
        score=proto.score,
        raw=proto,
    )
