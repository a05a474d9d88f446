"""The RoutingService servicer: a thin adapter from gRPC to the inference pipeline.

Each inference RPC runs the stages of `pipeline/stages.py` around the relay (`pipeline/relay.py`):
authenticate -> normalize -> admit -> reserve -> route and relay -> settle -> report. This module
only translates: the request message to the node-ready body (`node_requests`), the relayed chunks to
response messages, the call's facts to metadata (`x-atoma-cost`, micro-USD, in the trailing
metadata) and the response's `end`. Domain errors end the RPC with a google.rpc.Status (status.py).

Settlement runs on every way out of an inference RPC: success, a domain error, and cancellation
(the client left or the deadline passed), in which case `_inference_call` settles what was delivered
so far; the Meter shields it from the cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc

from atoma_proxy.core import images, node_requests, validation
from atoma_proxy.core.catalog import ModelCatalog
from atoma_proxy.core.errors import InternalError, InvalidRequest
from atoma_proxy.core.ledger import Outcome, RequestKind
from atoma_proxy.core.ledger.quotes import quote
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.pipeline.call import InferenceCall, usage_proto
from atoma_proxy.core.pipeline.relay import InferenceRelay, stream_body
from atoma_proxy.core.pipeline.stages import Stages, outcome_of
from atoma_proxy.core.responses import passthrough
from atoma_proxy.core.responses import service as responses
from atoma_proxy.core.telemetry.requests import RequestObservation
from atoma_proxy.core.usage_cost import with_cost
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

__all__ = ["RoutingService"]

log = logging.getLogger(__name__)

StreamResponse = TypeVar("StreamResponse", pb.ChatCompletionResponse, pb.CompletionResponse)


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


def _images_body(request: pb.GenerateImagesRequest) -> dict[str, Any]:
    return {**node_requests.images_body(request), "response_format": "b64_json"}  # see images.py


class RoutingService(pb_grpc.RoutingServiceServicer):
    def __init__(
        self, registry: NodeRegistry, relay: InferenceRelay, stages: Stages, catalog: ModelCatalog | None = None
    ) -> None:
        self._registry = registry
        self._relay = relay
        self._stages = stages
        self._catalog = catalog or ModelCatalog(registry)

    @asynccontextmanager
    async def _inference_call(
        self, context: grpc.aio.ServicerContext, observation: RequestObservation
    ) -> AsyncIterator[InferenceCall]:
        """An inference RPC's call, begun here, then settled, reported and observed on every way out of the block.

        The block settles, reports and finishes `observation` itself when it succeeds; the ways out below then
        find nothing left to do (settle and finish act once). An error, authentication's included, settles with
        its outcome and its routing facts go out with it (error_edge.py ends the RPC). Cancellation (the client
        left, the deadline passed) and a stream closed early (GeneratorExit) are no Exception: the `finally`
        settles what was delivered so far, as cancelled.
        """
        stages = self._stages
        call: InferenceCall | None = None
        try:
            call = await stages.begin(context.invocation_metadata(), context.time_remaining(), kind=observation.kind)
            call.span = observation.span
            yield call
        except Exception as error:
            observation.finish(call, await stages.settle(call, outcome_of(error)), error, ok=False)
            if call is not None:
                context.set_trailing_metadata(stages.report(call))
            raise
        finally:
            if call is not None and not call.settled:  # neither completed nor failed: cancelled
                try:
                    await stages.settle(call, _cancelled_outcome(context))
                except asyncio.CancelledError:
                    pass  # cancelled again while waiting: the settlement itself runs on (see Meter.settle)
            observation.finish(call, call.cost if call is not None else 0, ok=False)  # cancelled

    def _normalizer(
        self,
        request: Any,
        kind: RequestKind,
        check: Callable[[Any], None],
        build_body: Callable[[Any], dict[str, Any]],
    ) -> Callable[[], dict[str, Any]]:
        def normalize() -> dict[str, Any]:
            check(request)
            self._catalog.check_kind(request.model, kind)
            return build_body(request)

        return normalize

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        await self._stages.authenticate(context.invocation_metadata())
        return pb.ListModelsResponse(object="list", data=self._catalog.models())

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.GetModelResponse:
        await self._stages.authenticate(context.invocation_metadata())
        validation.require_model(request.model)
        return pb.GetModelResponse(model=self._catalog.model(request.model))

    async def EstimateCost(
        self, request: pb.EstimateCostRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateCostResponse:
        principal = await self._stages.authenticate(context.invocation_metadata())
        which = request.WhichOneof("request")
        if which is None:
            raise InvalidRequest("Name the request to price: `chat_completion`, `completion`, ...", param="request")
        inner = getattr(request, which)
        kind, check, build_body = _QUOTED[which]
        check(inner)
        self._catalog.check_kind(inner.model, kind)
        meter = self._stages.meter
        if meter is None:
            raise InternalError("This core has no ledger to price requests with.")
        priced = await quote(meter, principal.user_id, kind, inner.model, build_body(inner))
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
        await self._stages.authenticate(context.invocation_metadata())
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
        observation = RequestObservation(kind.value, request.model)
        async with self._inference_call(context, observation) as call:
            normalize = self._normalizer(request, kind, check, build_body)
            body = await self._stages.prepare(call, kind, request.model, normalize)
            raw = b""
            if request.stream:
                wants_usage = request.stream_options.include_usage
                route = self._relay.same_for_every_node(path, stream_body(body), client_wants_usage=wants_usage)
                async for out in self._relay.stream(call, request.model, route):
                    if not call.metadata_sent:
                        await self._send_metadata(context, call)
                    if len(out) == 1:
                        yield response(chunk=out[0].decode())
                    else:
                        yield response(chunks=common_pb2.Chunks(chunks=[chunk.decode() for chunk in out]))
            else:
                raw = await self._relay.unary(call, request.model, self._relay.same_for_every_node(path, body))
                self._stages.count_answer(call, request.model, raw)  # when the node said nothing
            end = call.end()
            end.cost_micro_usd = await self._stages.settle(call, Outcome.OK)
            if call.usage_chunk is not None:
                yield response(chunk=with_cost(call.usage_chunk, end.cost_micro_usd).decode())
            if not request.stream:
                # The routing facts go in the trailing metadata only: an initial send costs a round of its own.
                yield response(completion=with_cost(raw, end.cost_micro_usd).decode())
            context.set_trailing_metadata(self._stages.report(call, observation.overhead_seconds(call)))
            observation.finish(call, end.cost_micro_usd, ok=True)
            yield response(end=end)

    async def CreateResponse(
        self, request: pb.CreateResponseRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CreateResponseResponse]:
        """The Responses API: passed through to nodes that serve it, else translated to chat (passthrough.py);
        routed, metered and settled like chat."""
        observation = RequestObservation(RequestKind.CHAT.value, "")
        async with self._inference_call(context, observation) as call:
            wanted = responses.read_request(request)
            observation.model = wanted.model
            wanted.chat = await self._stages.prepare(call, RequestKind.CHAT, wanted.model, lambda: wanted.chat)
            translator = responses.ResponseStream(wanted)
            relayed: passthrough.Relayed | None = None
            last_event: bytes | None = None  # a passed-through stream's last event: it gets the cost
            if wanted.stream:
                async for relayed in passthrough.stream(self._relay, call, wanted):
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
                if call.usage_chunk is not None:  # a translated stream's usage: the translator reads it
                    for event in responses.batch_events(translator, [call.usage_chunk]):
                        yield event
            else:
                relayed = await passthrough.unary(self._relay, call, wanted)
                self._stages.count_answer(call, wanted.model, responses.countable_answer(relayed))
            end = call.end()
            end.cost_micro_usd = await self._stages.settle(call, Outcome.OK)
            if last_event is not None:
                closing = [responses.passed_event(last_event, end.cost_micro_usd)]
            elif wanted.stream:
                closing = responses.closing_events(translator, end.cost_micro_usd)
            else:
                assert relayed is not None
                closing = [responses.whole_response(wanted, relayed, end.cost_micro_usd)]
            for event in closing:
                yield event
            context.set_trailing_metadata(self._stages.report(call, observation.overhead_seconds(call)))
            observation.finish(call, end.cost_micro_usd, ok=True)
            yield pb.CreateResponseResponse(end=end)

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
        observation = RequestObservation(kind.value, request.model)
        async with self._inference_call(context, observation) as call:
            body = await self._stages.prepare(
                call, kind, request.model, self._normalizer(request, kind, check, build_body)
            )
            route = self._relay.same_for_every_node(path, body, check_answer=check_answer)
            raw = await self._relay.unary(call, request.model, route)
            cost = await self._stages.settle(call, Outcome.OK)
            context.set_trailing_metadata(self._stages.report(call, observation.overhead_seconds(call)))
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
        call, raw, cost = await self._unary(
            context,
            RequestKind.IMAGES,
            request,
            "/v1/images/generations",
            validation.check_generate_images,
            _images_body,
            images.check_node_answer,
        )
        answer = images.client_answer(raw, request.response_format or "url")
        return pb.GenerateImagesResponse(response_json=answer.decode(), routing=call.routing(), cost_micro_usd=cost)
