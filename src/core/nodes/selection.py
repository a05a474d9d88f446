"""Choosing a node for a request.

`NodeSelector` is the seam the routing issue replaces with scored strategies; the default here
is least in-flight requests among healthy nodes, price as the tie-break, so that equal nodes
share load and the cheaper one wins a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from atoma_proxy.core.errors import NoNodeAvailable
from atoma_proxy.core.nodes.registry import Node


class NodeSelector(Protocol):
    def select(self, model: str, candidates: Sequence[Node]) -> Node:
        """The node to try; raises NoNodeAvailable when none can serve."""
        ...


class LeastInFlightSelector:
    """Fewest in-flight requests first, then lowest output and input price, then id."""

    def select(self, model: str, candidates: Sequence[Node]) -> Node:
        healthy = [n for n in candidates if n.healthy]
        if not healthy:
            raise NoNodeAvailable(f"No healthy node serves `{model}` right now; retry shortly.")
        return min(
            healthy,
            key=lambda n: (n.in_flight, n.output_price_per_million, n.input_price_per_million, n.id),
        )
