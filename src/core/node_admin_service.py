"""The NodeAdminService servicer: the node registry changed at runtime, behind the admin token.

Every RPC first passes the admin gate (`accounts.admin_token`, shared with AccountAdminService):
refused with ADMIN_DISABLED when no token is configured, PERMISSION_DENIED for a wrong one. Failures are
raised; the core's error edge (error_edge.py) ends the RPC with their status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import grpc

from atoma_proxy.core.accounts.callers import AdminGate
from atoma_proxy.core.confidential.keys import KeyRegistry
from atoma_proxy.core.errors import AlreadyExists, InvalidRequest, NotFound
from atoma_proxy.core.limits import MAX_PRICE_MICRO_USD
from atoma_proxy.core.nodes.breaker import CircuitState
from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.registry import ADMIN, Node, NodeRegistry
from atoma_proxy.core.nodes.scoring import score_nodes
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as pb_grpc

__all__ = ["NodeAdminService", "candidate_scores", "node_state"]

log = logging.getLogger(__name__)

_MAX_ID = 128
_CIRCUIT = {
    CircuitState.CLOSED: pb.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: pb.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN,
}


def candidate_scores(nodes: Sequence[Node], *, price_weight: float, now: float) -> dict[tuple[str, str], float]:
    """(node id, model) -> the balanced score among the nodes that could take the model's requests now."""
    scores: dict[tuple[str, str], float] = {}
    for model in sorted({m for n in nodes for m in n.models}):
        candidates = [
            n
            for n in nodes
            if model in n.models and n.healthy and not n.draining and n.breaker.state is CircuitState.CLOSED
        ]
        for scored in score_nodes(model, candidates, price_weight=price_weight, now=now):
            scores[(scored.node.id, model)] = scored.score
    return scores


def node_state(node: Node, now: float, scores: Mapping[tuple[str, str], float] | None = None) -> pb.NodeState:
    """The wire view of a node (its API key never leaves); `scores` from `candidate_scores`."""
    circuit = node.breaker.state
    state = pb.NodeState(
        node_id=node.id,
        url=node.url,
        models=sorted(node.models),
        input_price_per_million=node.input_price_per_million,
        output_price_per_million=node.output_price_per_million,
        price_per_image=node.price_per_image,
        serving_state=pb.NODE_SERVING_STATE_DRAINING if node.draining else pb.NODE_SERVING_STATE_ACTIVE,
        healthy=node.healthy,
        circuit_state=_CIRCUIT[circuit],
        ejected_for_seconds=max(0.0, node.breaker.open_until - now) if circuit is CircuitState.OPEN else 0.0,
        in_flight=node.in_flight,
        source=node.source,
    )
    for model in sorted(node.models):
        model_state = state.model_states.add(model=model, score=(scores or {}).get((node.id, model), 0.0))
        stats = node.stats.get(model)
        if stats is not None:
            model_state.in_flight = stats.in_flight
            model_state.ttft_seconds = stats.ttft.value or 0.0
            model_state.time_per_output_token_seconds = stats.tpot.value or 0.0
            model_state.error_rate = stats.error_rate(now)
            model_state.successes = stats.successes
            model_state.failures = stats.failures
        load = node.load.get(model)
        if load is not None:
            model_state.running = load.running or 0.0
            model_state.waiting = load.waiting or 0.0
            model_state.kv_cache_usage = load.kv_cache_usage or 0.0
    return state


def _new_node(request: pb.AddNodeRequest) -> Node:
    node_id = request.node_id.strip()
    if not node_id or len(node_id) > _MAX_ID or not node_id.isprintable():
        raise InvalidRequest(f"`node_id` must be 1 to {_MAX_ID} printable characters.", param="node_id")
    url = urlsplit(request.url.strip())
    if url.scheme not in ("http", "https") or not url.netloc:
        raise InvalidRequest("`url` must be an http(s) URL such as http://10.0.0.7:8000.", param="url")
    models = [m.strip() for m in request.models if m.strip()]
    if not models:
        raise InvalidRequest("`models` must name at least one model.", param="models")
    for field in ("input_price_per_million", "output_price_per_million", "price_per_image"):
        if not 0 <= getattr(request, field) <= MAX_PRICE_MICRO_USD:
            raise InvalidRequest(f"`{field}` must be between 0 and {MAX_PRICE_MICRO_USD}.", param=field)
    if request.confidential_signing_key and len(request.confidential_signing_key) != 32:
        raise InvalidRequest(
            "`confidential_signing_key` must be a 32-byte Ed25519 public key.", param="confidential_signing_key"
        )
    unknown = sorted(set(request.apis) - {"chat", "responses"})
    if unknown:
        raise InvalidRequest(f'`apis` may name only "chat" and "responses", not {unknown[0]!r}.', param="apis")
    return Node(
        id=node_id,
        url=request.url.strip().rstrip("/"),
        models=frozenset(models),
        input_price_per_million=request.input_price_per_million,
        output_price_per_million=request.output_price_per_million,
        price_per_image=request.price_per_image,
        api_key=request.api_key or None,
        source=ADMIN,
        serves_responses="responses" in request.apis,
    )


def _unknown(node_id: str) -> NotFound:
    return NotFound(f"No node `{node_id}` in the registry.", reason="NODE_NOT_FOUND", metadata={"param": "node_id"})


class NodeAdminService(pb_grpc.NodeAdminServiceServicer):
    def __init__(
        self,
        registry: NodeRegistry,
        poller: HealthPoller,
        gate: AdminGate,
        clock: Callable[[], float],
        keys: KeyRegistry | None = None,
        *,
        price_weight: float = 0.5,
    ) -> None:
        """`keys`: the confidential key registry, told of the signing keys of nodes added here."""
        self._price_weight = price_weight
        self._registry = registry
        self._poller = poller
        self._gate = gate
        self._clock = clock
        self._keys = keys

    def _check(self, context: grpc.aio.ServicerContext) -> None:
        self._gate.check(context.invocation_metadata())

    async def AddNode(self, request: pb.AddNodeRequest, context: grpc.aio.ServicerContext) -> pb.AddNodeResponse:
        self._check(context)
        node = _new_node(request)
        try:
            self._registry.add(node)
        except ValueError:
            raise AlreadyExists(
                f"Node `{node.id}` exists already: drain it first to replace it.",
                reason="NODE_ALREADY_EXISTS",
                metadata={"param": "node_id"},
            ) from None
        if request.confidential_signing_key and self._keys is not None:
            self._keys.add_signing_key(node.id, request.confidential_signing_key)
        await self._poller.probe(node)
        log.info("node %s added at %s (%s)", node.id, node.url, ", ".join(sorted(node.models)))
        return pb.AddNodeResponse(node=node_state(node, self._clock()))

    async def DrainNode(self, request: pb.DrainNodeRequest, context: grpc.aio.ServicerContext) -> pb.DrainNodeResponse:
        self._check(context)
        try:
            node = self._registry.drain(request.node_id)
        except KeyError:
            raise _unknown(request.node_id) from None
        log.info("node %s draining (%d requests in flight)", node.id, node.in_flight)
        return pb.DrainNodeResponse(node=node_state(node, self._clock()))

    async def RemoveNode(
        self, request: pb.RemoveNodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveNodeResponse:
        self._check(context)
        try:
            node = self._registry.remove(request.node_id)
        except KeyError:
            raise _unknown(request.node_id) from None
        if node.source == ADMIN and self._keys is not None:
            self._keys.remove_signing_key(node.id)
        log.info("node %s removed (%d requests in flight finish)", node.id, node.in_flight)
        return pb.RemoveNodeResponse(node=node_state(node, self._clock()))

    async def ListNodeStates(
        self, request: pb.ListNodeStatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNodeStatesResponse:
        self._check(context)
        now = self._clock()
        nodes: Sequence[Node] = self._registry.nodes()
        scores = candidate_scores(nodes, price_weight=self._price_weight, now=now)
        return pb.ListNodeStatesResponse(nodes=[node_state(n, now, scores) for n in nodes])
