"""The stages of an inference request around the relay, in order (README "Architecture").

    call = await stages.begin(metadata, time_remaining, kind="chat")          # authenticate (once)
    body = await stages.prepare(call, RequestKind.CHAT, model, normalize)     # normalize -> admit -> reserve
    ... relay.unary / relay.stream (relay.py) fill call.node, call.usage, call.delivered
    cost = await stages.settle(call, Outcome.OK)                               # ledger, then rate-limit correction
    trailing = stages.report(call, overhead_ms)                                # metadata and trailers

Each stage reads and fills the one `InferenceCall`; none knows gRPC (the servicer is the adapter).

* authenticate: the API key is looked up once per request (cached by the authenticator);
* normalize: the servicer's callable checks the request and builds the node-ready body once; the one
  estimate (ledger/estimate.py) is made from that body;
* admit: the rate limiter takes `estimate.tokens` (prompt plus the reserved output); a request that
  fails normalization still counts as a request, for 0 tokens (as at OpenAI);
* reserve: the ledger holds the estimate's cost (or a stack's units: the stack's node is then pinned);
  the node is told the output cap and held to it (`call.limits`, node_limits.py), ledger or not;
* settle: the ledger charges what was served (`Served`: node, checked usage, tokens delivered); the
  rate limiter's token charge is corrected to the same usage, in the background;
* report: `x-request-id`, `x-atoma-*`, `x-ratelimit-*` and `x-atoma-cost` as metadata.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from atoma_proxy.core import node_requests
from atoma_proxy.core.auth import Authenticator, Principal
from atoma_proxy.core.errors import (
    ModelNotFound,
    NodeFailed,
    NodeRejectedRequest,
    NodeTimeout,
    NoNodeAvailable,
    ProxyError,
    RateLimited,
)
from atoma_proxy.core.ledger.estimate import Estimate, Estimator, RequestKind
from atoma_proxy.core.ledger.metering import Meter, Served
from atoma_proxy.core.ledger.reservations import Outcome
from atoma_proxy.core.nodes.transport import RequestContext
from atoma_proxy.core.pipeline.call import InferenceCall, new_request_id
from atoma_proxy.core.ratelimit.admission import RateLimiter
from atoma_proxy.core.telemetry.metrics import TOO_MANY
from atoma_proxy.wire import metadata as keys

__all__ = ["Stages", "outcome_of", "used_tokens"]

log = logging.getLogger(__name__)


Metadata = Sequence[tuple[str, str | bytes]] | None


def outcome_of(error: BaseException) -> str:
    """The usage record's outcome for a request that ended with `error`."""
    if isinstance(error, NodeTimeout):
        return Outcome.NODE_TIMEOUT
    if isinstance(error, NodeRejectedRequest):
        return Outcome.NODE_REJECTED
    if isinstance(error, NodeFailed):
        return Outcome.NODE_FAILED
    if isinstance(error, NoNodeAvailable | ModelNotFound):
        return Outcome.NO_NODE
    return Outcome.ERROR


def used_tokens(call: InferenceCall, outcome: str) -> int:
    """The tokens a request used, as the rate limiter charges them: the node's usage when it reported one;
    nothing when no node served it (or the node refused it); else its prompt and the tokens delivered."""
    usage = call.usage
    if usage:
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        return int(usage.get("total_tokens") or prompt + completion)
    if call.node is None or outcome == Outcome.NODE_REJECTED or call.estimate is None:
        return 0
    return call.estimate.prompt_tokens + call.delivered


class Stages:
    """The stages of one core instance (see the module docstring)."""

    def __init__(
        self,
        authenticator: Authenticator,
        estimator: Estimator,
        *,
        limiter: RateLimiter | None = None,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = authenticator
        self.estimator = estimator
        self._limiter = limiter
        self.meter = meter  # also prices quotes; with the ledger off it holds and charges nothing
        self._clock = clock
        self._settling: set[asyncio.Task[None]] = set()

    # ---- authenticate --------------------------------------------------------------------------

    async def authenticate(self, metadata: Metadata) -> Principal:
        """Who asks (the RPCs that are not inference requests)."""
        return await self._auth.authenticate(tuple(metadata or ()))

    async def begin(self, metadata: Metadata, time_remaining: float | None, *, kind: str = "chat") -> InferenceCall:
        """Who asks (one key lookup), the request id, the deadline and the routing strategy asked for."""
        principal = await self._auth.authenticate(tuple(metadata or ()))
        request_id = strategy = None
        for key, value in metadata or ():
            if key == keys.REQUEST_ID:
                request_id = value if isinstance(value, str) else value.decode("ascii", "replace")
            elif key == keys.ROUTING_STRATEGY:
                strategy = value if isinstance(value, str) else value.decode("ascii", "replace")
        return InferenceCall(
            request_id=new_request_id(request_id),
            principal=principal,
            strategy=strategy,
            deadline=None if time_remaining is None else self._clock() + time_remaining,
            node_context=RequestContext(user_id=str(principal.user_id)),  # the ledger adds the stack paying
            kind=kind,
        )

    # ---- normalize -> admit -> reserve ---------------------------------------------------------

    async def prepare(
        self, call: InferenceCall, kind: RequestKind, model: str, normalize: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The node-ready body, admitted and reserved for; the node is told its output cap."""
        try:
            body = normalize()
            estimate = self.estimator.estimate(kind, model, body)
        except ProxyError:
            await self.admit(call, 0)  # a refused request still counts as a request (and may be refused as such)
            raise
        call.estimate = estimate
        await self.admit(call, estimate.tokens)
        await self.reserve(call, model, estimate)
        if kind is not RequestKind.IMAGES:
            call.limits = estimate.limits()
            if kind is not RequestKind.EMBEDDINGS:
                node_requests.put_output_cap(body, estimate.output_cap, chat=kind is RequestKind.CHAT)
        return body

    async def admit(self, call: InferenceCall, tokens: int) -> None:
        """Rate limits: admitted (its x-ratelimit-* headers go out with the routing facts) or RateLimited."""
        if self._limiter is None:
            return
        assert call.principal is not None
        try:
            admission = await self._limiter.admit(call.principal, tokens)
        except RateLimited:
            TOO_MANY.inc()
            raise
        call.admission = admission
        call.headers = tuple(admission.headers())

    async def reserve(self, call: InferenceCall, model: str, estimate: Estimate) -> None:
        """Hold what the estimate may cost (InsufficientFunds before any node is called)."""
        if self.meter is None:
            return
        assert call.principal is not None
        remaining = None if call.deadline is None else max(call.deadline - self._clock(), 0.0)
        metered = await self.meter.reserve(call.principal, call.request_id, model, estimate, deadline=remaining)
        if metered is None:
            return
        call.reservation = metered
        call.request_id = metered.request_id  # fresh when the caller's was seen before
        if metered.stack_context is not None:
            call.pinned_node_id = metered.hold.node_id
            call.node_context = metered.stack_context

    def count_answer(self, call: InferenceCall, model: str, answer: bytes) -> None:
        """A non-streamed answer without usage: its generated text is what was delivered."""
        if "completion_tokens" not in (call.usage or {}):
            call.delivered = self.estimator.generated(model, answer)

    # ---- settle --------------------------------------------------------------------------------

    async def settle(self, call: InferenceCall | None, outcome: str) -> int:
        """Charge what was served (once; later calls return the first result), then correct the rate
        limiter's token charge. Returns the micro-USD charged."""
        if call is None:
            return 0
        if call.settled:
            return call.cost
        call.settled = True
        reservation = call.reservation
        cost = 0
        if self.meter is not None and reservation is not None:
            served = Served(call.node, call.usage, call.delivered)
            cost = await self.meter.settle(reservation, outcome, served)
        self._correct_admission(call, outcome)
        return cost

    def _correct_admission(self, call: InferenceCall, outcome: str) -> None:
        admission = call.admission
        if admission is None or not admission.settles_tokens:
            return
        used = used_tokens(call, outcome)
        if used == admission.estimated_tokens:
            return
        task = asyncio.get_running_loop().create_task(admission.settle(used))  # no response waits for it
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def wait_settled(self) -> None:
        """Return when the rate-limit corrections under way are done."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def aclose(self) -> None:
        """Finish the corrections under way, then close the rate limiter."""
        await self.wait_settled()
        if self._limiter is not None:
            await self._limiter.aclose()

    # ---- report --------------------------------------------------------------------------------

    @staticmethod
    def report(call: InferenceCall, overhead_seconds: float | None = None) -> tuple[tuple[str, str], ...]:
        """A request's metadata: routing facts, rate-limit headers, its overhead, and its cost once settled."""
        metadata = call.metadata()
        if overhead_seconds is not None:
            metadata = (*metadata, (keys.OVERHEAD_MS, f"{overhead_seconds * 1000:.2f}"))
        reservation = call.reservation
        if reservation is not None and reservation.settled:
            return (*metadata, (keys.COST, str(reservation.cost)))
        return metadata
