"""An in-process RoutingService whose behaviour each test scripts, and which records what it saw.

It speaks the core's side of the facade contract: routing facts as initial and trailing
metadata, `completion`/`chunk` events then `end`, errors as google.rpc.Status with ErrorInfo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_status import rpc_status

from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.facade.fake_accounts import add_fake_account_services
from tests.facade.fake_node_admin import add_fake_node_admin_service

ROUTING_METADATA = (("x-request-id", "req-123"), ("x-atoma-node", "node-a"), ("x-atoma-attempts", "1"))

CHAT_COMPLETION = (
    '{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m1",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'
)
TEXT_COMPLETION = (
    '{"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"m1",'
    '"choices":[{"index":0,"text":"Hello!","finish_reason":"stop","logprobs":null}],'
    '"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'
)
EMBEDDINGS = (
    '{"object":"list","model":"m1","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],'
    '"usage":{"prompt_tokens":3,"total_tokens":3}}'
)
IMAGES = '{"created":1700000000,"data":[{"url":"https://images.example/1.png"}]}'


def chat_chunk(content: str | None = None, *, usage: bool = False) -> str:
    if usage:
        return (
            '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m1","choices":[],'
            '"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'
        )
    delta = f'{{"content":"{content}"}}'
    return (
        '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m1",'
        f'"choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}'
    )


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str] | None = None, *, quota: bool = False
) -> grpc.Status:
    """A status like the core's: ErrorInfo in domain atoma.network, plus QuotaFailure if asked."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="atoma.network", metadata=metadata or {}))
    details.append(info)
    if quota:
        failure = any_pb2.Any()
        failure.Pack(
            error_details_pb2.QuotaFailure(
                violations=[error_details_pb2.QuotaFailure.Violation(subject="key:1", description="balance is 0")]
            )
        )
        details.append(failure)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=details))


@dataclass
class Script:
    """What the next calls do. `error` aborts after `chunks_before_error` chunks were sent:
    a rich status, or (code, details) for a plain one without google.rpc.Status."""

    completion: str | None = None
    chunks: list[str] = field(default_factory=lambda: [chat_chunk("Hel"), chat_chunk("lo")])
    error: grpc.Status | tuple[grpc.StatusCode, str] | None = None
    chunks_before_error: int = 0
    hang_after_chunks: bool = False
    batched: bool = False  # all chunks in one `chunks` event, as the core relays a fast node
    send_end: bool = True
    initial_metadata: tuple[tuple[str, str], ...] = ROUTING_METADATA
    nodes: list[pb.NodeStatus] = field(default_factory=list)


class FakeCore(pb_grpc.RoutingServiceServicer):
    """The scripted servicer; `reset()` between tests."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.script = Script()
        self.requests: list[Any] = []
        self.metadata: list[dict[str, str | bytes]] = []
        self.time_remaining: list[float | None] = []
        self.received = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def _begin(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))
        self.time_remaining.append(context.time_remaining())
        self.received.set()
        if self.script.initial_metadata:
            await context.send_initial_metadata(self.script.initial_metadata)
        context.set_trailing_metadata(self.script.initial_metadata)

    async def _fail(self, context: grpc.aio.ServicerContext) -> None:
        error = self.script.error
        if isinstance(error, tuple):
            await context.abort(*error)
        assert error is not None
        await context.abort_with_status(error)

    async def _inference(self, request: Any, context: grpc.aio.ServicerContext, completion: str) -> Any:
        await self._begin(request, context)
        script = self.script
        try:
            if script.error is not None and script.chunks_before_error == 0:
                await self._fail(context)
            if request.stream and script.batched:
                yield {"chunks": common_pb2.Chunks(chunks=script.chunks)}
            elif request.stream:
                for i, chunk in enumerate(script.chunks):
                    if script.error is not None and i == script.chunks_before_error:
                        await self._fail(context)
                    yield {"chunk": chunk}
                if script.error is not None:
                    await self._fail(context)
                if script.hang_after_chunks:
                    await asyncio.Event().wait()
            else:
                if script.hang_after_chunks:
                    await asyncio.Event().wait()
                yield {"completion": script.completion or completion}
                if script.error is not None and script.chunks_before_error > 0:  # after the completion
                    await self._fail(context)
            if script.send_end:
                yield {"end": common_pb2.StreamEnd(routing=common_pb2.RoutingInfo(node_id="node-a", attempts=1))}
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def ChatCompletion(self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext) -> Any:
        async for event in self._inference(request, context, CHAT_COMPLETION):
            yield pb.ChatCompletionResponse(**event)

    async def Completion(self, request: pb.CompletionRequest, context: grpc.aio.ServicerContext) -> Any:
        async for event in self._inference(request, context, TEXT_COMPLETION):
            yield pb.CompletionResponse(**event)

    async def CreateResponse(self, request: pb.CreateResponseRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._begin(request, context)
        if self.script.error is not None:
            await self._fail(context)
        if b'"stream":true' in request.request_json.encode():
            yield pb.CreateResponseResponse(stream_event='{"type":"response.created","sequence_number":0}')
        else:
            yield pb.CreateResponseResponse(response='{"object":"response"}')
        yield pb.CreateResponseResponse(end=common_pb2.StreamEnd())

    async def _unary(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        await self._begin(request, context)
        if self.script.error is not None:
            await self._fail(context)

    async def Embeddings(self, request: pb.EmbeddingsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return pb.EmbeddingsResponse(response_json=EMBEDDINGS)

    async def GenerateImages(self, request: pb.GenerateImagesRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return pb.GenerateImagesResponse(response_json=IMAGES)

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        models = [pb.Model(id="m1", object="model", created=1686935002, owned_by="atoma")]
        return pb.ListModelsResponse(object="list", data=models)

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return pb.GetModelResponse(model=pb.Model(id=request.model, object="model", created=1686935002))

    async def EstimateCost(self, request: pb.EstimateCostRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return pb.EstimateCostResponse(kind=request.WhichOneof("request") or "", min_cost_micro_usd=1_500_000)

    async def ListNodes(self, request: pb.ListNodesRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return pb.ListNodesResponse(nodes=self.script.nodes)

    # The confidential RPCs answer empty messages: the facade's part is translation (tests/e2e/confidential).
    async def LockNode(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return cpb.LockNodeResponse(node_id="node-a", public_key=bytes(32), node_signing_key=bytes(32))

    async def ConfidentialChatCompletion(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        yield cpb.ConfidentialChatCompletionResponse(answer=cpb.SealedResponse(final=True))

    async def ConfidentialCompletion(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        yield cpb.ConfidentialCompletionResponse(answer=cpb.SealedResponse(final=True))

    async def ConfidentialEmbeddings(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return cpb.ConfidentialEmbeddingsResponse()

    async def ConfidentialGenerateImages(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return cpb.ConfidentialGenerateImagesResponse()

    async def RegisterNodeKey(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return cpb.RegisterNodeKeyResponse()

    async def GetNodeAttestation(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._unary(request, context)
        return cpb.GetNodeAttestationResponse(node_id=request.node_id)


@dataclass
class RunningCore:
    server: grpc.aio.Server
    core: FakeCore
    health: health_aio.HealthServicer
    target: str


async def start_fake_core() -> RunningCore:
    server = grpc.aio.server()
    core = FakeCore()
    health = health_aio.HealthServicer()
    pb_grpc.add_RoutingServiceServicer_to_server(core, server)
    add_fake_account_services(server)
    add_fake_node_admin_service(server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    return RunningCore(server, core, health, f"127.0.0.1:{port}")
