"""What a request would cost, before it is sent (RoutingService.EstimateCost, REST `POST /v1/quote/...`).

The ledger's own estimate (`Meter.estimate`) and prices (`Meter.node_cost`, `Meter.reservation_amount`)
over the nodes a reservation would consider, so a quote is exactly what `reserve` would hold and
bounds what settlement may charge. Nothing is held; stacks are not considered (they pay in units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atoma_proxy.core.ledger.estimate import Estimate, RequestKind
from atoma_proxy.core.ledger.metering import Meter

__all__ = ["NodeCost", "Quote", "quote"]


@dataclass(frozen=True, slots=True)
class NodeCost:
    node_id: str
    healthy: bool
    cost: int


@dataclass(frozen=True, slots=True)
class Quote:
    estimate: Estimate
    nodes: list[NodeCost]
    reserved: int
    user_price: bool

    @property
    def min_cost(self) -> int:
        return min((n.cost for n in self.nodes), default=0)

    @property
    def max_cost(self) -> int:
        return max((n.cost for n in self.nodes), default=0)


async def quote(meter: Meter, user_id: int, kind: RequestKind, model: str, body: dict[str, Any]) -> Quote:
    """The quote of the node-ready `body`; ModelNotFound when no node serves `model`."""
    estimate = meter.estimate(kind, model, body)
    serving = meter.serving_nodes(model)
    override = await meter.user_price(user_id, model)
    return Quote(
        estimate,
        [NodeCost(n.id, n.healthy, meter.node_cost(estimate, n, override)) for n in serving],
        meter.reservation_amount(estimate, serving, override),
        override is not None,
    )
