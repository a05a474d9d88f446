"""The one context of an inference request, from authentication to the last trailer.

Every stage reads and fills the same `InferenceCall` (README "Architecture"):

    begin       principal, request_id, deadline, strategy, node_context (who the nodes are told it is for)
    prepare     estimate (the one estimate), admission (rate limits; its headers), reservation (the ledger's
                hold), limits (what the node may produce), pinned_node_id (a stack pays: its node serves)
    relay       node, attempts, tried, usage (checked), delivered (tokens relayed), telemetry facts
    settle      cost (micro-USD charged)
    report      metadata(): x-request-id, x-atoma-*, x-ratelimit-*; end(): the stream's last event

Nothing else carries request state between stages: no context variables, no module globals.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atoma_proxy.core.node_limits import RequestLimits
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.transport import RequestContext
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.wire import metadata as keys

if TYPE_CHECKING:
    from atoma_proxy.core.auth import Principal
    from atoma_proxy.core.ledger.estimate import Estimate
    from atoma_proxy.core.ledger.metering import MeteredRequest
    from atoma_proxy.core.ratelimit.admission import Admission

__all__ = ["InferenceCall", "new_request_id", "usage_proto"]


@dataclass
class InferenceCall:
    """One inference request between its stages (see the module docstring)."""

    request_id: str
    principal: Principal | None = None
    # Asked by the caller: a strategy name (`x-atoma-routing-strategy`, checked when routing) and the RPC's
    # deadline as time.monotonic().
    strategy: str | None = None
    deadline: float | None = None
    # prepare: the one estimate (rate limits and ledger), the admission, the reservation, the node's limits.
    estimate: Estimate | None = None
    admission: Admission | None = None
    reservation: MeteredRequest | None = None
    limits: RequestLimits | None = None
    # Set when a stack pays for the request: only the stack's node may serve it.
    pinned_node_id: str | None = None
    # Who the request is for, as Atoma-protocol nodes are told; passed to the transport only when set.
    node_context: RequestContext | None = None
    # relay: the node serving (the last tried), how many were tried, its checked usage, tokens relayed.
    node: Node | None = None
    attempts: int = 0
    tried: list[Node] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    # Generated tokens delivered to the client: one per chunk with text (chunks.classify), so a stream cut
    # short (client gone, node failed) is metered by what was actually delivered.
    delivered: int = 0
    # A stream's usage-only chunk, when the client asked for it: sent last, once settled, with the cost.
    usage_chunk: bytes | None = None
    metadata_sent: bool = False
    settled: bool = False
    # Response metadata of the admission (x-ratelimit-*), reported with the routing facts.
    headers: Sequence[tuple[str, str]] = ()
    # Telemetry (core/telemetry): the RPC's kind, its span when traced, what the trace reports, and the
    # time spent waiting on nodes (for the overhead), as time.perf_counter() seconds.
    kind: str = "chat"
    span: Any = None
    response_id: str | None = None
    strategy_used: str | None = None
    score: float | None = None
    node_wait_seconds: float = 0.0
    node_wait_started: float | None = None

    def node_seconds(self) -> float:
        """Seconds waited on nodes so far, the attempt under way included."""
        if self.node_wait_started is None:
            return self.node_wait_seconds
        return self.node_wait_seconds + time.perf_counter() - self.node_wait_started

    @property
    def cost(self) -> int:
        """Micro-USD charged, once settled (0 before, and without a ledger)."""
        reservation = self.reservation
        return reservation.cost if reservation is not None and reservation.settled else 0

    def routing(self) -> common_pb2.RoutingInfo:
        return common_pb2.RoutingInfo(
            node_id=self.node.id if self.node else "", attempts=self.attempts, request_id=self.request_id
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [(keys.REQUEST_ID, self.request_id), (keys.ATTEMPTS, str(self.attempts))]
        if self.node is not None:
            pairs.append((keys.NODE, self.node.id))
            # The time waited on nodes: the facade subtracts it for the overhead.
            pairs.append((keys.NODE_MS, f"{self.node_seconds() * 1000:.2f}"))
        pairs.extend(self.headers)
        return tuple(pairs)

    def end(self) -> common_pb2.StreamEnd:
        end = common_pb2.StreamEnd(routing=self.routing())
        if self.usage:
            end.usage.CopyFrom(usage_proto(self.usage))
        return end


def new_request_id(supplied: str | None) -> str:
    if supplied and len(supplied) <= 128 and supplied.isprintable():
        return supplied
    return uuid.uuid4().hex


def usage_proto(usage: dict[str, Any]) -> common_pb2.Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return common_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )
