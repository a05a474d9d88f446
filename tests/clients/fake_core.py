"""A scripted in-process RoutingService for client tests.

It records every call (request, metadata, deadline), answers from its attributes, fails with real
google.rpc.Status + ErrorInfo when `error` is set, and records when a stream is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

# Spaced the way json.dumps spaces it, so that a client re-serialising the text would show.
CHAT_CHUNKS = (
    '{"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}',
    '{"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "lo"}}]}',
)
CHAT_COMPLETION = (
    '{"id": "chatcmpl-2", "object": "chat.completion",'
    ' "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}]}'
)
TEXT_CHUNKS = ('{"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": "Hi"}]}',)
TEXT_COMPLETION = '{"id": "cmpl-2", "object": "text_completion", "choices": [{"index": 0, "text": "Hi there"}]}'
EMBEDDINGS = '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}]}'
IMAGES = '{"created": 1700000000, "data": [{"url": "https://images.example/1.png"}]}'

USAGE = common_pb2.Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
ROUTING = common_pb2.RoutingInfo(node_id="node-a", attempts=2, request_id="req-body")
ROUTING_METADATA = {"x-atoma-node": "node-meta", "x-atoma-attempts": "3", "x-request-id": "req-meta"}


@dataclass
class FakeError:
    """How the next calls fail. Without `reason` the status carries no details at all."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: int | None = None
    trailing_metadata: dict[str, str] = field(default_factory=dict)
    after_events: int = 0
    """For streams: events sent before failing."""


@dataclass
class RecordedCall:
    method: str
    request: Message
    metadata: dict[str, str]
    time_remaining: float | None


class FakeRoutingService(pb_grpc.RoutingServiceServicer):
    def __init__(self) -> None:
        self.target = ""
        self.calls: list[RecordedCall] = []
        self.error: FakeError | None = None
        self.routing_in_body = True
        self.response_metadata = dict(ROUTING_METADATA)
        self.hang_after_first_event = False
        self.batch_chunks = False  # send the chunks as one `chunks` event, as the core does for a fast node
        self.stream_cancelled = asyncio.Event()

    async def ListModels(self, request, context):
        await self._start("ListModels", request, context)
        return pb.ListModelsResponse(
            object="list",
            data=[
                pb.Model(id="llama-3", object="model", created=1686935002, owned_by="atoma"),
                pb.Model(id="qwen-2", object="model", created=1686935003, owned_by="atoma"),
            ],
        )

    async def ChatCompletion(self, request, context):
        await self._start("ChatCompletion", request, context)
        chunks = CHAT_CHUNKS if request.stream else ()
        async for message in self._events(pb.ChatCompletionResponse, chunks, CHAT_COMPLETION, request, context):
            yield message

    async def Completion(self, request, context):
        await self._start("Completion", request, context)
        chunks = TEXT_CHUNKS if request.stream else ()
        async for message in self._events(pb.CompletionResponse, chunks, TEXT_COMPLETION, request, context):
            yield message

    async def Embeddings(self, request, context):
        await self._start("Embeddings", request, context)
        context.set_trailing_metadata(tuple(self.response_metadata.items()))
        return pb.EmbeddingsResponse(response_json=EMBEDDINGS, usage=USAGE, routing=self._body_routing())

    async def GenerateImages(self, request, context):
        await self._start("GenerateImages", request, context)
        context.set_trailing_metadata(tuple(self.response_metadata.items()))
        return pb.GenerateImagesResponse(response_json=IMAGES, routing=self._body_routing())

    async def GetModel(self, request, context):
        await self._start("GetModel", request, context)
        return pb.GetModelResponse(model=pb.Model(id=request.model, object="model", kind="chat", nodes=["node-a"]))

    async def EstimateCost(self, request, context):
        await self._start("EstimateCost", request, context)
        return pb.EstimateCostResponse(kind="chat", prompt_tokens=3, min_cost_micro_usd=7, max_cost_micro_usd=9)

    async def ListNodes(self, request, context):
        await self._start("ListNodes", request, context)
        return pb.ListNodesResponse(
            nodes=[
                pb.NodeStatus(
                    node_id="node-a",
                    models=["llama-3", "qwen-2"],
                    healthy=True,
                    in_flight=3,
                    input_price_per_million=150_000,
                    output_price_per_million=600_000,
                ),
                pb.NodeStatus(node_id="node-b", models=["llama-3"], healthy=False),
            ]
        )

    # The confidential RPCs: recorded and answered with empty messages (their behaviour is tested end to end).
    async def LockNode(self, request, context):
        await self._start("LockNode", request, context)
        return cpb.LockNodeResponse(node_id="node-a")

    async def ConfidentialChatCompletion(self, request, context):
        await self._start("ConfidentialChatCompletion", request, context)
        yield cpb.ConfidentialChatCompletionResponse(end=common_pb2.StreamEnd(routing=self._body_routing()))

    async def ConfidentialCompletion(self, request, context):
        await self._start("ConfidentialCompletion", request, context)
        yield cpb.ConfidentialCompletionResponse(end=common_pb2.StreamEnd(routing=self._body_routing()))

    async def ConfidentialEmbeddings(self, request, context):
        await self._start("ConfidentialEmbeddings", request, context)
        return cpb.ConfidentialEmbeddingsResponse()

    async def ConfidentialGenerateImages(self, request, context):
        await self._start("ConfidentialGenerateImages", request, context)
        return cpb.ConfidentialGenerateImagesResponse()

    async def RegisterNodeKey(self, request, context):
        await self._start("RegisterNodeKey", request, context)
        return cpb.RegisterNodeKeyResponse()

    async def GetNodeAttestation(self, request, context):
        await self._start("GetNodeAttestation", request, context)
        return cpb.GetNodeAttestationResponse(node_id=request.node_id)

    async def CreateResponse(self, request, context):
        await self._start("CreateResponse", request, context)
        yield pb.CreateResponseResponse(response='{"object": "response"}')
        yield pb.CreateResponseResponse(end=common_pb2.StreamEnd(routing=self._body_routing()))

    async def _start(self, method: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        self.calls.append(RecordedCall(method, request, metadata, context.time_remaining()))
        if self.error is not None and self.error.after_events == 0:
            await _abort(context, self.error)

    async def _events(self, response_type, chunks, completion, request, context):
        """The events of a ChatCompletion or Completion stream, failing or hanging where scripted."""
        events = [response_type(chunk=chunk) for chunk in chunks] or [response_type(completion=completion)]
        if self.batch_chunks and chunks:
            events = [response_type(chunks=common_pb2.Chunks(chunks=chunks))]
        end = common_pb2.StreamEnd(routing=self._body_routing())
        if not request.stream or request.stream_options.include_usage:
            end.usage.CopyFrom(USAGE)
        events.append(response_type(end=end))
        for sent, event in enumerate(events):
            if self.error is not None and sent == self.error.after_events:
                await _abort(context, self.error)
            if self.hang_after_first_event and sent == 1:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.stream_cancelled.set()
                    raise
            if sent == len(events) - 1:
                context.set_trailing_metadata(tuple(self.response_metadata.items()))
            yield event

    def _body_routing(self) -> common_pb2.RoutingInfo | None:
        return ROUTING if self.routing_in_body else None


async def _abort(context: grpc.aio.ServicerContext, error: FakeError) -> None:
    if error.reason is None:
        await context.abort(error.code, error.message, tuple(error.trailing_metadata.items()))
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain="atoma.network", metadata=error.metadata))]
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration(seconds=error.retry_after_seconds)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = rpc_status.to_status(status_pb2.Status(code=error.code.value[0], message=error.message, details=details))
    # to_status sends only the details trailer; the core adds its routing entries next to it.
    status = status._replace(trailing_metadata=status.trailing_metadata + tuple(error.trailing_metadata.items()))
    await context.abort_with_status(status)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@asynccontextmanager
async def serve_fake_core() -> AsyncIterator[FakeRoutingService]:
    """A FakeRoutingService on 127.0.0.1 and a free port, its `target` set; stopped on exit."""
    service = FakeRoutingService()
    server = grpc.aio.server()
    pb_grpc.add_RoutingServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    service.target = f"127.0.0.1:{port}"
    try:
        yield service
    finally:
        await server.stop(grace=None)
