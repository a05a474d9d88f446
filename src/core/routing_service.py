"""The RoutingService servicer: authenticate, check, translate, relay, report.

Each RPC is a short script over the domain: the `InferenceRelay` does the node work, the
authenticator says who is asking, `node_requests` builds the node's JSON. Domain errors end the
RPC with a google.rpc.Status (see status.py); routing facts go out as initial and trailing
metadata.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from atoma_proxy.core import node_requests, validation
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.errors import InternalError, ProxyError
from atoma_proxy.core.inference import InferenceCall, InferenceRelay, new_request_id, usage_proto
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

StreamResponse = TypeVar("StreamResponse", pb.ChatCompletionResponse, pb.CompletionResponse)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return new_request_id(value if isinstance(value, str) else value.decode())
    return new_request_id(None)


class RoutingService(pb_grpc.RoutingServiceServicer):
    def __init__(self, registry: NodeRegistry, relay: InferenceRelay, authenticator: ApiKeyAuthenticator) -> None:
        self._registry = registry
        self._relay = relay
        self._auth = authenticator

    async def _fail(self, context: grpc.aio.ServicerContext, error: Exception, call: InferenceCall | None) -> None:
        if not isinstance(error, ProxyError):
            log.exception("unexpected error", exc_info=error)
            error = InternalError("The proxy failed unexpectedly; the error was logged.")
        await context.abort_with_status(to_grpc_status(error, call.metadata() if call else ()))

    async def _authenticated(self, context: grpc.aio.ServicerContext) -> InferenceCall:
        await self._auth.authenticate(context.invocation_metadata())
        return InferenceCall(request_id=_request_id(context))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        try:
            await self._authenticated(context)
        except Exception as error:
            await self._fail(context, error, None)
        models = [
            pb.Model(id=name, object="model", created=created, owned_by="atoma")
            for name, created in sorted(self._registry.models().items())
        ]
        return pb.ListModelsResponse(object="list", data=models)

    async def ListNodes(self, request: pb.ListNodesRequest, context: grpc.aio.ServicerContext) -> pb.ListNodesResponse:
        try:
            await self._authenticated(context)
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
        check: Callable[[Any], None],
        build_body: Callable[[Any], dict[str, Any]],
    ) -> AsyncIterator[StreamResponse]:
        call: InferenceCall | None = None
        try:
            call = await self._authenticated(context)
            check(request)
            body = build_body(request)
            if request.stream:
                wants_usage = request.stream_options.include_usage
                chunks = self._relay.stream(call, request.model, path, body, client_wants_usage=wants_usage)
                async for chunk in chunks:
                    if not call.metadata_sent:
                        await self._send_metadata(context, call)
                    yield response(chunk=chunk.decode())
            else:
                raw = await self._relay.unary(call, request.model, path, body)
                await self._send_metadata(context, call)
                yield response(completion=raw.decode())
            context.set_trailing_metadata(call.metadata())
            yield response(end=call.end())
        except Exception as error:
            await self._fail(context, error, call)

    @staticmethod
    async def _send_metadata(context: grpc.aio.ServicerContext, call: InferenceCall) -> None:
        call.metadata_sent = True
        await context.send_initial_metadata(call.metadata())

    async def Embeddings(
        self, request: pb.EmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbeddingsResponse:
        call: InferenceCall | None = None
        try:
            call = await self._authenticated(context)
            validation.check_embeddings(request)
            raw = await self._relay.unary(call, request.model, "/v1/embeddings", node_requests.embeddings_body(request))
        except Exception as error:
            await self._fail(context, error, call)
        await self._send_metadata(context, call)
        context.set_trailing_metadata(call.metadata())
        result = pb.EmbeddingsResponse(response_json=raw.decode(), routing=call.routing())
        if call.usage:
            result.usage.CopyFrom(usage_proto(call.usage))
        return result

    async def GenerateImages(
        self, request: pb.GenerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateImagesResponse:
        call: InferenceCall | None = None
        try:
            call = await self._authenticated(context)
            validation.check_generate_images(request)
            body = node_requests.images_body(request)
            raw = await self._relay.unary(call, request.model, "/v1/images/generations", body)
        except Exception as error:
            await self._fail(context, error, call)
        await self._send_metadata(context, call)
        context.set_trailing_metadata(call.metadata())
        return pb.GenerateImagesResponse(response_json=raw.decode(), routing=call.routing())
