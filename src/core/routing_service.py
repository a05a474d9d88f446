"""The RoutingService servicer: authenticate, check, price, relay, settle, report.

Each RPC is a short script over the domain: the `InferenceRelay` does the node work, the
authenticator says who is asking, `node_requests` builds the node's JSON, the `Meter` reserves the
most a request may cost before any node is called and settles what it used afterwards. Domain
errors end the RPC with a google.rpc.Status (see status.py); routing facts and the cost go out as
metadata (`x-atoma-cost`, micro-USD, in the trailing metadata) and in the response's `end`.

Settlement runs on every way out of an inference RPC: success, a domain error, and cancellation
(the client left or the deadline passed), in which case the `finally` settles what was generated
so far; the Meter shields it from the cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from atoma_proxy.core import images, node_requests, validation
from atoma_proxy.core.auth import ApiKeyAuthenticator, Principal
from atoma_proxy.core.catalog import ModelCatalog
from atoma_proxy.core.errors import (
    DatabaseUnavailable,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    NodeFailed,
    NodeRejectedRequest,
    NodeTimeout,
    NoNodeAvailable,
    ProxyError,
)
from atoma_proxy.core.inference import InferenceCall, InferenceRelay, new_request_id, routing_options, usage_proto
from atoma_proxy.core.ledger import Meter, MeteredRequest, Outcome, RequestKind, carries_generated_text
from atoma_proxy.core.ledger.quotes import quote
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.transport import RequestContext
from atoma_proxy.core.persistence.outage import is_database_outage
from atoma_proxy.core.responses import passthrough
from atoma_proxy.core.responses import service as responses
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.core.telemetry.requests import RequestObservation
from atoma_proxy.core.usage_cost import is_usage_chunk, with_cost
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

StreamResponse = TypeVar("StreamResponse", pb.ChatCompletionResponse, pb.CompletionResponse)

COST_KEY = "x-atoma-cost"
OVERHEAD_KEY = "x-atoma-overhead-ms"  # the core's own time not spent waiting on nodes


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return new_request_id(value if isinstance(value, str) else value.decode())
    return new_request_id(None)


def _outcome(error: BaseException) -> str:
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


def _cancelled_outcome(context: grpc.aio.ServicerContext) -> str:
    remaining = context.time_remaining()
    return Outcome.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else Outcome.CLIENT_CANCELLED


# EstimateCost's request field -> the request kind, its checks and its node body, as the inference RPCs use them.
_QUOTED: dict[str, tuple[RequestKind, Callable[[Any], None], Callable[[Any], dict[str, Any]]]] = {
    "chat_completion": (RequestKind.CHAT, validation.check_chat_completion, node_requests.chat_completion_body),
    "completion": (RequestKind.COMPLETION, validation.check_completion, node_requests.completion_body),
    "embeddings": (RequestKind.EMBEDDINGS, validation.check_embeddings, node_requests.embeddings_body),
    "generate_images": (RequestKind.IMAGES, validation.check_generate_images, node_requests.images_body),
}


class RoutingService(pb_grpc.RoutingServiceServicer):
    def __init__(
        self,
        registry: NodeRegistry,
        relay: InferenceRelay,
        authenticator: ApiKeyAuthenticator,
        meter: Meter | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self._registry = registry
        self._relay = relay
        self._auth = authenticator
        self._meter = meter
        self._catalog = catalog or ModelCatalog(registry)

    async def _fail(
        self,
        context: grpc.aio.ServicerContext,
        error: Exception,
        call: InferenceCall | None,
        metered: MeteredRequest | None = None,
    ) -> None:
        if isinstance(error, ProxyError):
            pass
        elif is_database_outage(error):
            log.warning("database unavailable: %s", error)
            error = DatabaseUnavailable()
        else:
            log.exception("unexpected error", exc_info=error)
            error = InternalError("The proxy failed unexpectedly; the error was logged.")
        await context.abort_with_status(to_grpc_status(error, self._trailing(call, metered) if call else ()))

    async def _authenticated(
        self, context: grpc.aio.ServicerContext, observation: RequestObservation | None = None
    ) -> tuple[Principal, InferenceCall]:
        principal = await self._auth.authenticate(context.invocation_metadata())
        call = InferenceCall(request_id=_request_id(context), **routing_options(context))
        call.node_context = RequestContext(user_id=str(principal.user_id))  # the ledger adds the stack paying
        if observation is not None:
            call.kind, call.span = observation.kind, observation.span
        return principal, call

    async def _reserve(
        self,
        context: grpc.aio.ServicerContext,
        principal: Principal,
        call: InferenceCall,
        kind: RequestKind,
        model: str,
        body: dict[str, Any],
    ) -> MeteredRequest | None:
        """Reserve, then hold the node to what was reserved: the output cap in the body, the limits on the call."""
        if self._meter is None:
            return None
        metered = await self._meter.reserve(principal, call, kind, model, body, deadline=context.time_remaining())
        if metered is not None and kind is not RequestKind.IMAGES:
            estimate = metered.estimate
            if kind is not RequestKind.EMBEDDINGS:
                node_requests.put_output_cap(body, estimate.output_cap, chat=kind is RequestKind.CHAT)
            call.limits = estimate.limits()
        return metered

    async def _settle(self, metered: MeteredRequest | None, call: InferenceCall | None, outcome: str) -> int:
        if self._meter is None or metered is None:
            return 0
        return await self._meter.settle(metered, call, outcome)

    async def _settle_abandoned(
        self, context: grpc.aio.ServicerContext, metered: MeteredRequest | None, call: InferenceCall | None
    ) -> None:
        """In `finally`: settle a request that neither completed nor failed (it was cancelled)."""
        if metered is not None and not metered.settled:
            try:
                await self._settle(metered, call, _cancelled_outcome(context))
            except asyncio.CancelledError:
                pass  # cancelled again while waiting: the settlement itself runs on (see Meter.settle)

    @staticmethod
    def _trailing(
        call: InferenceCall, metered: MeteredRequest | None, observation: RequestObservation | None = None
    ) -> tuple[tuple[str, str], ...]:
        metadata = call.metadata()
        if observation is not None:
            metadata = (*metadata, (OVERHEAD_KEY, f"{observation.overhead_seconds(call) * 1000:.2f}"))
        if metered is not None and metered.settled:
            return (*metadata, (COST_KEY, str(metered.cost)))
        return metadata

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        try:
            await self._auth.authenticate(context.invocation_metadata())
        except Exception as error:
            await self._fail(context, error, None)
        return pb.ListModelsResponse(object="list", data=self._catalog.models())

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.GetModelResponse:
        try:
            await self._auth.authenticate(context.invocation_metadata())
            validation.require_model(request.model)
            return pb.GetModelResponse(model=self._catalog.model(request.model))
        except Exception as error:
            await self._fail(context, error, None)
            raise  # unreachable: _fail aborts the RPC

    async def EstimateCost(
        self, request: pb.EstimateCostRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateCostResponse:
        try:
            principal = await self._auth.authenticate(context.invocation_metadata())
            which = request.WhichOneof("request")
            if which is None:
                raise InvalidRequest("Name the request to price: `chat_completion`, `completion`, ...", param="request")
            inner = getattr(request, which)
            kind, check, build_body = _QUOTED[which]
            check(inner)
            self._catalog.check_kind(inner.model, kind)
            if self._meter is None:
                raise InternalError("This core has no ledger to price requests with.")
            priced = await quote(self._meter, principal.user_id, kind, inner.model, build_body(inner))
        except Exception as error:
            await self._fail(context, error, None)
            raise  # unreachable: _fail aborts the RPC
        estimate = priced.estimate
        return pb.EstimateCostResponse(
            model=inner.model,
            kind=kind.value,
            prompt_tokens=estimate.prompt_tokens,
            prompt_tokens_exact=estimate.prompt_exact,
            max_completion_tokens=estimate.output_cap,
            reserved_completion_tokens=estimate.completion_tokens,
            images=estimate.images,
            min_cost_micro_usd=priced.min_cost,
            max_cost_micro_usd=priced.max_cost,
            reserved_micro_usd=priced.reserved,
            user_price=priced.user_price,
            nodes=[pb.NodeQuote(node_id=n.node_id, healthy=n.healthy, cost_micro_usd=n.cost) for n in priced.nodes],
        )

    async def ListNodes(self, request: pb.ListNodesRequest, context: grpc.aio.ServicerContext) -> pb.ListNodesResponse:
        try:
            await self._auth.authenticate(context.invocation_metadata())
        except Exception as error:
            await self._fail(context, error, None)
        return pb.ListNodesResponse(
            nodes=[
                pb.NodeStatus(
                    node_id=n.id,
                    models=sorted(n.models),
                    healthy=n.healthy,
                    in_flight=n.in_flight,
                    input_price_per_million=n.input_price_per_million,
                    output_price_per_million=n.output_price_per_million,
                )
                for n in self._registry.nodes()
            ]
        )

    async def ChatCompletion(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionResponse]:
        # grpc.aio serves a streaming RPC only from an async generator function.
        events = self._generate(
            request,
            context,
            pb.ChatCompletionResponse,
            "/v1/chat/completions",
            RequestKind.CHAT,
            validation.check_chat_completion,
            node_requests.chat_completion_body,
        )
        async for event in events:
            yield event

    async def Completion(
        self, request: pb.CompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompletionResponse]:
        events = self._generate(
            request,
            context,
            pb.CompletionResponse,
            "/v1/completions",
            RequestKind.COMPLETION,
            validation.check_completion,
            node_requests.completion_body,
        )
        async for event in events:
            yield event

    async def _generate(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        response: type[StreamResponse],
        path: str,
        kind: RequestKind,
        check: Callable[[Any], None],
        build_body: Callable[[Any], dict[str, Any]],
    ) -> AsyncIterator[StreamResponse]:
        call: InferenceCall | None = None
        metered: MeteredRequest | None = None
        observation = RequestObservation(kind.value, request.model)
        try:
            principal, call = await self._authenticated(context, observation)
            check(request)
            self._catalog.check_kind(request.model, kind)
            body = build_body(request)
            metered = await self._reserve(context, principal, call, kind, request.model, body)
            usage_chunk: bytes | None = None  # held back until settled: it carries the cost (usage_cost.py)
            raw = b""
            if request.stream:
                wants_usage = request.stream_options.include_usage
                batches = self._relay.stream(call, request.model, path, body, client_wants_usage=wants_usage)
                async for relayed in batches:
                    if metered is not None:
                        metered.generated += sum(1 for chunk in relayed if carries_generated_text(chunk))
                    if not call.metadata_sent:
                        await self._send_metadata(context, call)
                    out: list[bytes] = list(relayed)
                    if usage_chunk is not None:
                        out.insert(0, usage_chunk)
                    usage_chunk = out.pop() if wants_usage and is_usage_chunk(out[-1]) else None
                    if len(out) == 1:
                        yield response(chunk=out[0].decode())
                    elif out:
                        yield response(chunks=common_pb2.Chunks(chunks=[chunk.decode() for chunk in out]))
            else:
                raw = await self._relay.unary(call, request.model, path, body)
                if self._meter is not None and metered is not None and "completion_tokens" not in (call.usage or {}):
                    metered.generated = self._meter.count_generated(request.model, raw)  # the node said nothing
            end = call.end()
            end.cost_micro_usd = await self._settle(metered, call, Outcome.OK)
            if usage_chunk is not None:
                yield response(chunk=with_cost(usage_chunk, end.cost_micro_usd).decode())
            if not request.stream:
                # The routing facts go in the trailing metadata only: an initial send costs a round of its own.
                yield response(completion=with_cost(raw, end.cost_micro_usd).decode())
            context.set_trailing_metadata(self._trailing(call, metered, observation))
            observation.finish(call, end.cost_micro_usd, ok=True)
            yield response(end=end)
        except Exception as error:
            observation.finish(call, await self._settle(metered, call, _outcome(error)), error, ok=False)
            await self._fail(context, error, call, metered)
        finally:
            await self._settle_abandoned(context, metered, call)
            observation.finish(call, metered.cost if metered is not None else 0, ok=False)  # cancelled

    async def CreateResponse(
        self, request: pb.CreateResponseRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CreateResponseResponse]:
        """The Responses API: passed through to nodes that serve it, else translated to chat (passthrough.py);
        routed, metered and settled like chat."""
        call: InferenceCall | None = None
        metered: MeteredRequest | None = None
        observation = RequestObservation(RequestKind.CHAT.value, "")
        try:
            principal, call = await self._authenticated(context, observation)
            wanted = responses.read_request(request)
            observation.model = wanted.model
            body = wanted.chat
            metered = await self._reserve(context, principal, call, RequestKind.CHAT, wanted.model, body)
            translator = responses.ResponseStream(wanted)
            relayed: passthrough.Relayed | None = None
            last_event: bytes | None = None  # a passed-through stream's last event: it gets the cost
            if wanted.stream:
                async for relayed in passthrough.stream(self._relay, call, wanted):
                    if metered is not None:
                        metered.generated += responses.generated_tokens(relayed)
                    if not call.metadata_sent:
                        await self._send_metadata(context, call)
                    if relayed.passed_through:
                        events = [*([last_event] if last_event is not None else []), *relayed.data]
                        last_event = events.pop()
                        for event in events:
                            yield pb.CreateResponseResponse(stream_event=event.decode())
                    else:
                        for event in responses.batch_events(translator, relayed.data):
                            yield event
            else:
                relayed = await passthrough.unary(self._relay, call, wanted)
                if self._meter is not None and metered is not None and "completion_tokens" not in (call.usage or {}):
                    metered.generated = responses.count_unary(self._meter, wanted.model, relayed)
            end = call.end()
            end.cost_micro_usd = await self._settle(metered, call, Outcome.OK)
            if last_event is not None:
                closing = [responses.passed_event(last_event, end.cost_micro_usd)]
            elif wanted.stream:
                closing = responses.closing_events(translator, end.cost_micro_usd)
            else:
                assert relayed is not None
                closing = [responses.whole_response(wanted, relayed, end.cost_micro_usd)]
            for event in closing:
                yield event
            context.set_trailing_metadata(self._trailing(call, metered, observation))
            observation.finish(call, end.cost_micro_usd, ok=True)
            yield pb.CreateResponseResponse(end=end)
        except Exception as error:
            observation.finish(call, await self._settle(metered, call, _outcome(error)), error, ok=False)
            await self._fail(context, error, call, metered)
        finally:
            await self._settle_abandoned(context, metered, call)
            observation.finish(call, metered.cost if metered is not None else 0, ok=False)  # cancelled

    @staticmethod
    async def _send_metadata(context: grpc.aio.ServicerContext, call: InferenceCall) -> None:
        call.metadata_sent = True
        await context.send_initial_metadata(call.metadata())

    async def _unary(
        self,
        context: grpc.aio.ServicerContext,
        kind: RequestKind,
        request: Any,
        path: str,
        check: Callable[[Any], None],
        build_body: Callable[[Any], dict[str, Any]],
        check_answer: Callable[[Node, dict[str, Any]], None] | None = None,
    ) -> tuple[InferenceCall, bytes, int]:
        """Embeddings and images: the node's answer and the cost, or the RPC ends with the error."""
        call: InferenceCall | None = None
        metered: MeteredRequest | None = None
        observation = RequestObservation(kind.value, request.model)
        settled = False
        try:
            principal, call = await self._authenticated(context, observation)
            check(request)
            self._catalog.check_kind(request.model, kind)
            body = build_body(request)
            metered = await self._reserve(context, principal, call, kind, request.model, body)
            raw = await self._relay.unary(call, request.model, path, body, check_answer)
            cost = await self._settle(metered, call, Outcome.OK)
            settled = True
        except Exception as error:
            observation.finish(call, await self._settle(metered, call, _outcome(error)), error, ok=False)
            await self._fail(context, error, call, metered)
            raise  # unreachable: _fail aborts the RPC
        finally:
            await self._settle_abandoned(context, metered, call)
            if not settled:
                observation.finish(call, metered.cost if metered is not None else 0, ok=False)  # cancelled
        context.set_trailing_metadata(self._trailing(call, metered, observation))
        observation.finish(call, cost, ok=True)
        return call, raw, cost

    async def Embeddings(
        self, request: pb.EmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbeddingsResponse:
        call, raw, cost = await self._unary(
            context,
            RequestKind.EMBEDDINGS,
            request,
            "/v1/embeddings",
            validation.check_embeddings,
            node_requests.embeddings_body,
        )
        result = pb.EmbeddingsResponse(response_json=raw.decode(), routing=call.routing(), cost_micro_usd=cost)
        if call.usage:
            result.usage.CopyFrom(usage_proto(call.usage))
        return result

    async def GenerateImages(
        self, request: pb.GenerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateImagesResponse:
        def build_body(request: pb.GenerateImagesRequest) -> dict[str, Any]:
            return {**node_requests.images_body(request), "response_format": "b64_json"}  # see images.py

        call, raw, cost = await self._unary(
            context,
            RequestKind.IMAGES,
            request,
            "/v1/images/generations",
            validation.check_generate_images,
            build_body,
            images.check_node_answer,
        )
        answer = images.client_answer(raw, request.response_format or "url")
        return pb.GenerateImagesResponse(response_json=answer.decode(), routing=call.routing(), cost_micro_usd=cost)
