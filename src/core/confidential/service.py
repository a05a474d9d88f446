"""The confidential RPCs of RoutingService: LockNode, the four relays, RegisterNodeKey, GetNodeAttestation.

A relay is: authenticate -> check the envelope's shape -> take the lock -> check the node's key is
still the one locked -> pass the envelope to the node unchanged -> verify every answer's and chunk's
signature (and chunk order) -> settle exactly the signed usage. A failed relay charges nothing (its
reservation is released); a client that leaves mid-stream is charged the usage the node had signed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from atoma_proxy.confidential import envelope, signing, wire
from atoma_proxy.config import Settings
from atoma_proxy.core.auth import ApiKeyAuthenticator, Principal
from atoma_proxy.core.confidential.errors import LockExpired, NoConfidentialNode, NodeAnswerInvalid, StaleNodeKey
from atoma_proxy.core.confidential.keys import AuthorityVerifier, KeyRegistry, NodeKey, RejectAll, decode_key
from atoma_proxy.core.confidential.locks import Lock, LockRecord, LockTable
from atoma_proxy.core.confidential.node_client import ConfidentialNodeClient
from atoma_proxy.core.errors import (
    InvalidRequest,
    ModelNotFound,
    NodeFailed,
    NodeTimeout,
    NoNodeAvailable,
    NotFound,
)
from atoma_proxy.core.ledger import Estimate, Estimator, Meter, Outcome, RequestKind, Served
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.nodes.selection import NodeSelector, SelectionRequest, eligible_nodes
from atoma_proxy.core.persistence import session_factory
from atoma_proxy.core.persistence.models import utcnow
from atoma_proxy.core.pipeline.call import InferenceCall, new_request_id, usage_proto
from atoma_proxy.core.pipeline.stages import Stages
from atoma_proxy.core.sui.identity import proxy_keypair
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.sui.crypto import normalize_address

__all__ = ["ConfidentialService", "RoutingWithConfidential", "build_confidential_service"]

log = logging.getLogger(__name__)

ENDPOINTS = {
    cpb.CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS: "chat/completions",
    cpb.CONFIDENTIAL_ENDPOINT_COMPLETIONS: "completions",
    cpb.CONFIDENTIAL_ENDPOINT_EMBEDDINGS: "embeddings",
    cpb.CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS: "images/generations",
}
KINDS = {
    "chat/completions": RequestKind.CHAT,
    "completions": RequestKind.COMPLETION,
    "embeddings": RequestKind.EMBEDDINGS,
    "images/generations": RequestKind.IMAGES,
}
STREAMABLE = ("chat/completions", "completions")
CONFIDENTIAL_RPCS = (
    "LockNode",
    "ConfidentialChatCompletion",
    "ConfidentialCompletion",
    "ConfidentialEmbeddings",
    "ConfidentialGenerateImages",
    "RegisterNodeKey",
    "GetNodeAttestation",
)


def lock_estimate(kind: RequestKind, units: int) -> Estimate:
    """The most a locked request may cost, not knowing its body: `units` tokens at the input price plus
    `units` at the output price (the split is unknown until the node answers); images: `units` images."""
    if kind is RequestKind.IMAGES:
        return Estimate(kind, prompt_tokens=0, prompt_exact=True, images=units)
    if kind is RequestKind.EMBEDDINGS:
        return Estimate(kind, prompt_tokens=units, prompt_exact=False)
    return Estimate(kind, prompt_tokens=units, prompt_exact=False, completion_tokens=units, output_cap=units)


def _envelope(message: cpb.ConfidentialEnvelope) -> envelope.ConfidentialRequest:
    try:
        return wire.envelope_from_proto(message)
    except envelope.EnvelopeError as error:
        raise InvalidRequest(f"Invalid confidential request: {error}.") from None


def _verified(
    event: Any, request: envelope.ConfidentialRequest, key: bytes, *, chunk: bool
) -> envelope.ConfidentialResponse:
    try:
        response = envelope.ConfidentialResponse.from_json(event, chunk=chunk)
    except envelope.EnvelopeError as error:
        raise NodeAnswerInvalid(f"The node's answer is malformed: {error}.", reason="NODE_STREAM_INVALID") from None
    try:
        response.verify(request, key)
    except signing.SignatureInvalid:
        raise NodeAnswerInvalid("The node's signature over its answer and usage does not verify.") from None
    return response


class ConfidentialService:
    def __init__(
        self,
        settings: Settings,
        registry: NodeRegistry,
        selector: NodeSelector,
        authenticator: ApiKeyAuthenticator,
        meter: Meter | None,
        keys: KeyRegistry,
        engine: AsyncEngine,
        *,
        stages: Stages | None = None,
        client: ConfidentialNodeClient | None = None,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings.confidential
        self._registry = registry
        self._selector = selector
        self._auth = authenticator
        self._stages = stages or Stages(authenticator, meter.estimator if meter is not None else Estimator())
        self._meter = meter if meter is not None and meter.enabled else None
        self.keys = keys
        sessions = session_factory(engine, timeout=settings.database.statement_timeout)
        self.locks = LockTable(sessions, sweep_interval=settings.ledger.sweep_interval, clock=wall_clock)
        self._client = client or ConfidentialNodeClient(settings.core, proxy_keypair(settings.sui))
        self._wall = wall_clock

    def start(self) -> None:
        """Start the periodic release of expired unused locks (any instance's)."""
        self.locks.start()

    async def aclose(self) -> None:
        await self.locks.aclose()
        await self._client.aclose()

    # ---- keys ---------------------------------------------------------------------------------

    async def RegisterNodeKey(
        self, request: cpb.RegisterNodeKeyRequest, context: grpc.aio.ServicerContext
    ) -> cpb.RegisterNodeKeyResponse:
        key = await self.keys.register(
            node_id=request.node_id,
            rotation_counter=request.rotation_counter,
            rotation_nonce=request.rotation_nonce,
            public_key=request.public_key,
            evidence=request.evidence,
            signature=request.signature,
            signing_key=request.signing_key,
        )
        log.info("node %s registered confidential key rotation %d", key.node_id, key.rotation_counter)
        return cpb.RegisterNodeKeyResponse(rotation_counter=key.rotation_counter, valid_until=key.valid_until)

    async def GetNodeAttestation(
        self, request: cpb.GetNodeAttestationRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetNodeAttestationResponse:
        await self._auth.authenticate(context.invocation_metadata())
        key = await self.keys.latest(request.node_id)
        if key is None:
            raise NotFound(f"Node `{request.node_id}` has no confidential key.", reason="NODE_NOT_FOUND")
        return cpb.GetNodeAttestationResponse(
            node_id=key.node_id,
            rotation_counter=key.rotation_counter,
            rotation_nonce=key.rotation_nonce,
            public_key=key.public_key,
            evidence=key.evidence,
            verified=True,  # only verified registrations are stored
            valid_until=key.valid_until,
            node_signing_key=key.signing_key,
        )

    # ---- locks --------------------------------------------------------------------------------

    async def LockNode(self, request: cpb.LockNodeRequest, context: grpc.aio.ServicerContext) -> cpb.LockNodeResponse:
        call: InferenceCall | None = None
        try:
            principal = await self._auth.authenticate(context.invocation_metadata())
            call = InferenceCall(request_id=new_request_id(None), principal=principal)
            # Admitted by the tokens the lock holds (the proxy cannot read the request that follows).
            await self._stages.admit(call, self._lock_units(request))
            lock, key = await self._lock(principal, request, call)
        except Exception:
            if call is not None:
                await self._stages.settle(call, Outcome.NO_NODE)  # refused: its tokens are refunded
                context.set_trailing_metadata(call.metadata())
            raise
        context.set_trailing_metadata(lock.call.metadata())  # x-request-id, and x-ratelimit-* when limits apply
        return cpb.LockNodeResponse(
            public_key=key.public_key,
            node_id=lock.node.id,
            node_small_id=signing.node_small_id(lock.node.id),
            stack_small_id=lock.id,
            expires_at=lock.record.expires_at.timestamp(),
            node_signing_key=key.signing_key,
            rotation_counter=key.rotation_counter,
            max_num_tokens=lock.max_num_tokens,
        )

    def _lock_units(self, request: cpb.LockNodeRequest) -> int:
        if request.HasField("max_num_tokens"):
            return request.max_num_tokens
        return (
            1
            if request.endpoint == cpb.CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS
            else self._settings.default_max_num_tokens
        )

    async def _lock(
        self, principal: Principal, request: cpb.LockNodeRequest, call: InferenceCall
    ) -> tuple[Lock, NodeKey]:
        settings = self._settings
        model = request.model.strip()
        if not model:
            raise InvalidRequest("`model` is required.", param="model")
        endpoint_value = (
            request.endpoint if request.HasField("endpoint") else cpb.CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS
        )
        endpoint = ENDPOINTS.get(endpoint_value)
        if endpoint is None:
            raise InvalidRequest("`endpoint` must name one of the four confidential endpoints.", param="endpoint")
        kind = KINDS[endpoint]
        default_units = 1 if kind is RequestKind.IMAGES else settings.default_max_num_tokens
        units = request.max_num_tokens if request.HasField("max_num_tokens") else default_units
        if not 1 <= units <= settings.max_num_tokens:
            raise InvalidRequest(f"`max_num_tokens` must be 1 to {settings.max_num_tokens}.", param="max_num_tokens")
        timeout = request.timeout if request.HasField("timeout") else settings.default_lock_timeout
        if not 0 < timeout <= settings.max_lock_timeout:
            raise InvalidRequest(f"`timeout` must be above 0 and at most {settings.max_lock_timeout}.", param="timeout")
        confidential = [n for n in self._registry.candidates(model) if await self.keys.current(n.id) is not None]
        if not confidential:
            raise NoConfidentialNode(f"No node with a valid confidential key serves `{model}` right now.")
        excluded = set(request.exclude_node_ids)
        preferred = [n for n in confidential if n.id not in excluded]
        try:  # the nodes the client did not exclude, when one of them can serve now
            eligible_nodes(model, preferred, SelectionRequest())
            confidential = preferred
        except (NoNodeAvailable, NodeFailed, ModelNotFound):
            eligible_nodes(model, confidential, SelectionRequest())  # none can: refused before anything is held
        metered = None
        if self._meter is not None:
            estimate = lock_estimate(kind, units)
            deadline = timeout + settings.max_request_seconds
            metered = await self._meter.reserve(principal, call.request_id, model, estimate, deadline=deadline)
            if metered is not None:
                call.request_id = metered.request_id
                if metered.stack_context is not None:
                    call.pinned_node_id = metered.hold.node_id
        try:
            node = self._selector.select(model, confidential, SelectionRequest(pinned_node_id=call.pinned_node_id))
            key = await self.keys.current(node.id)
            if key is None:  # pragma: no cover - filtered above
                raise NoConfidentialNode(f"Node `{node.id}` has no valid key.")
            record = LockRecord(
                id=self.locks.new_id(),
                user_id=principal.user_id,
                node_id=node.id,
                model=model,
                endpoint=endpoint,
                max_num_tokens=units,
                rotation_counter=key.rotation_counter,
                request_id=call.request_id,
                metered=metered is not None,
                expires_at=self._wall() + timedelta(seconds=timeout),
            )
            await self.locks.add(record)
        except BaseException:
            if self._meter is not None and metered is not None:
                await self._meter.settle(metered, Outcome.NO_NODE, Served())
            raise
        return Lock(record, node, key, call, metered), key

    # ---- relays -------------------------------------------------------------------------------

    async def ConfidentialChatCompletion(
        self, request: cpb.ConfidentialChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.ConfidentialChatCompletionResponse]:
        async for name, payload in self._guarded(request.envelope, context, "chat/completions"):
            yield cpb.ConfidentialChatCompletionResponse(**{name: payload})

    async def ConfidentialCompletion(
        self, request: cpb.ConfidentialCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.ConfidentialCompletionResponse]:
        async for name, payload in self._guarded(request.envelope, context, "completions"):
            yield cpb.ConfidentialCompletionResponse(**{name: payload})

    async def ConfidentialEmbeddings(
        self, request: cpb.ConfidentialEmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ConfidentialEmbeddingsResponse:
        answer, end = await self._unary(request.envelope, context, "embeddings")
        return cpb.ConfidentialEmbeddingsResponse(answer=answer, routing=end.routing, cost_micro_usd=end.cost_micro_usd)

    async def ConfidentialGenerateImages(
        self, request: cpb.ConfidentialGenerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ConfidentialGenerateImagesResponse:
        answer, end = await self._unary(request.envelope, context, "images/generations")
        return cpb.ConfidentialGenerateImagesResponse(
            answer=answer, routing=end.routing, cost_micro_usd=end.cost_micro_usd
        )

    async def _unary(
        self, message: cpb.ConfidentialEnvelope, context: grpc.aio.ServicerContext, endpoint: str
    ) -> tuple[cpb.SealedResponse, common_pb2.StreamEnd]:
        answer, end = cpb.SealedResponse(), common_pb2.StreamEnd()
        async for name, payload in self._guarded(message, context, endpoint):
            if name == "answer":
                answer = payload
            else:
                end = payload
        return answer, end

    async def _guarded(
        self, message: cpb.ConfidentialEnvelope, context: grpc.aio.ServicerContext, endpoint: str
    ) -> AsyncIterator[tuple[str, Any]]:
        state = _Relay()
        try:
            async for event in self._relay(message, context, endpoint, state):
                yield event
        except Exception as error:
            state.usage = None  # a failed relay charges nothing, whatever the node signed before failing
            await self._settle(state, _outcome(error))
            if state.lock is not None:
                context.set_trailing_metadata(state.lock.call.metadata())
            raise
        finally:
            if state.lock is not None and state.lock.metered is not None and not state.lock.metered.settled:
                await self._settle(state, Outcome.CLIENT_CANCELLED)

    async def _relay(
        self, message: cpb.ConfidentialEnvelope, context: grpc.aio.ServicerContext, endpoint: str, state: _Relay
    ) -> AsyncIterator[tuple[str, Any]]:
        principal = await self._auth.authenticate(context.invocation_metadata())
        sealed = _envelope(message)
        if sealed.stream and endpoint not in STREAMABLE:
            raise InvalidRequest(f"/{endpoint} does not stream.", param="stream")
        lock, key = await self._take(sealed, principal, endpoint, state)
        node, call = lock.node, lock.call
        call.node, call.attempts = node, 1
        document = sealed.to_json()
        document.setdefault("num_compute_units", lock.max_num_tokens)
        user_id = str(principal.user_id)
        node.in_flight += 1
        dispatch, verdict = node.breaker.dispatch(), None  # the node's answers feed its circuit breaker
        try:
            if sealed.stream:
                expected, final = 0, False
                events = self._client.stream(node, endpoint, document, request_id=call.request_id, user_id=user_id)
                async for event in events:
                    chunk = _verified(event, sealed, key.signing_key, chunk=True)
                    if chunk.chunk_index != expected:
                        raise NodeAnswerInvalid(
                            f"The node sent chunk {chunk.chunk_index} where {expected} was due.",
                            reason="NODE_STREAM_INVALID",
                        )
                    expected += 1
                    if chunk.usage is not None:
                        state.usage = chunk.usage
                    yield "chunk", wire.sealed_to_proto(chunk)
                    if chunk.final:
                        final = True
                        break
                if not final:
                    raise NodeFailed(f"Node {node.id} ended the stream before its final chunk.")
            else:
                answer = _verified(
                    await self._client.post(node, endpoint, document, request_id=call.request_id, user_id=user_id),
                    sealed,
                    key.signing_key,
                    chunk=False,
                )
                state.usage = answer.usage
                yield "answer", wire.sealed_to_proto(answer)
            verdict = True
        except (NodeFailed, NodeTimeout, NodeAnswerInvalid):
            verdict = False
            raise
        finally:
            node.in_flight -= 1
            if verdict is True:
                node.breaker.record_success(dispatch)
            elif verdict is False:
                node.breaker.record_failure(dispatch)
            else:  # the client left, or the request itself was refused: no verdict on the node
                node.breaker.record_abandoned(dispatch)
        end = common_pb2.StreamEnd(routing=call.routing())
        end.cost_micro_usd = await self._settle(state, Outcome.OK)
        if state.usage and "prompt_tokens" in state.usage:
            end.usage.CopyFrom(usage_proto(state.usage))
        context.set_trailing_metadata((*call.metadata(), ("x-atoma-cost", str(end.cost_micro_usd))))
        yield "end", end

    async def _take(
        self, sealed: envelope.ConfidentialRequest, principal: Principal, endpoint: str, state: _Relay
    ) -> tuple[Lock, NodeKey]:
        """The lock of this request, consumed (through whichever instance granted it), with its reservation."""
        record = await self.locks.check(
            sealed.stack_small_id, principal, model=sealed.model_name, endpoint=endpoint, units=sealed.num_compute_units
        )
        node = self._registry.get(record.node_id)
        if node is None:  # not consumed: an instance that knows the node can still serve it
            raise NoConfidentialNode(f"Node `{record.node_id}` is not known to this proxy instance: lock again.")
        await self.locks.take(record)
        metered = None
        if record.metered and self._meter is not None:
            hold = await self.locks.held(record)
            if hold is None:  # swept by the ledger: nothing is held for it any more
                raise LockExpired("This lock's reservation expired before it was used: lock again.")
            override = await self._meter.user_price(hold.user_id, record.model)
            metered = self._meter.resume(hold, lock_estimate(KINDS[endpoint], record.max_num_tokens), override)
        call = InferenceCall(request_id=record.request_id)
        if metered is not None and metered.hold.stack_id is not None:
            call.pinned_node_id = metered.hold.node_id
        state.lock = lock = Lock(record, node, None, call, metered)  # settled by the relay, whatever happens next
        key = await self.keys.current(node.id)
        if key is None or key.public_key != sealed.node_dh_public_key:
            key = await self.keys.current(node.id, fresh=True)  # a cached key may be older than the lock
        if key is None or key.public_key != sealed.node_dh_public_key:
            raise StaleNodeKey(f"Node {node.id} rotated its key after the lock: lock again.")
        lock.key = key
        return lock, key

    async def _settle(self, state: _Relay, outcome: str) -> int:
        """Charges exactly the usage the node signed (nothing when it signed none)."""
        lock = state.lock
        if lock is None or lock.metered is None or self._meter is None:
            return 0
        metered, call = lock.metered, lock.call
        usage = state.usage or {}
        if metered.estimate.kind is RequestKind.IMAGES:
            metered.estimate = dataclasses.replace(metered.estimate, images=int(usage.get("images", 0)))
        call.usage = {
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
        }
        return await self._meter.settle(metered, outcome, Served(call.node, call.usage))


@dataclasses.dataclass
class _Relay:
    lock: Lock | None = None
    usage: dict[str, int] | None = None  # the latest usage the node signed


def _outcome(error: BaseException) -> str:
    if isinstance(error, NodeFailed):
        return Outcome.NODE_FAILED
    return Outcome.ERROR


def build_confidential_service(
    settings: Settings,
    registry: NodeRegistry,
    selector: NodeSelector,
    authenticator: ApiKeyAuthenticator,
    meter: Meter | None,
    engine: AsyncEngine,
    stages: Stages | None = None,
) -> ConfidentialService:
    signing_keys = {
        node.id: decode_key(node.confidential_signing_key, f"node {node.id}'s confidential_signing_key")
        for node in settings.nodes
        if node.confidential_signing_key
    }
    authority = settings.confidential.attestation_authority_key
    verifier = AuthorityVerifier(decode_key(authority, "attestation_authority_key")) if authority else RejectAll()
    sui_addresses = {node.id: normalize_address(node.sui_address) for node in settings.nodes if node.sui_address}
    small_ids = {node.id: node.node_small_id for node in settings.nodes if node.node_small_id is not None}
    keys = KeyRegistry(
        signing_keys,
        verifier,
        session_factory(engine, timeout=settings.database.statement_timeout),
        lifetime=settings.confidential.key_lifetime,
        sui_addresses=sui_addresses,
        small_ids=small_ids,
    )
    return ConfidentialService(settings, registry, selector, authenticator, meter, keys, engine, stages=stages)


class RoutingWithConfidential:
    """RoutingService as one servicer: the plain RPCs of `plain`, the confidential ones of `confidential`."""

    def __init__(self, plain: object, confidential: ConfidentialService) -> None:
        for method in pb.DESCRIPTOR.services_by_name["RoutingService"].methods:
            source = confidential if method.name in CONFIDENTIAL_RPCS else plain
            setattr(self, method.name, getattr(source, method.name))
