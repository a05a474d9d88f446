"""Generated stubs against the running core: RPCs, errors with ErrorInfo, deadlines, reflection, health."""

from __future__ import annotations

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import CHAT, EMBED, SLOW_CHAT, Stack


def _metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.api_key}"),)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def _chat(**fields) -> pb.ChatCompletionRequest:  # type: ignore[no-untyped-def]
    return pb.ChatCompletionRequest(messages=[chat_pb2.ChatMessage(role="user", text="hello there")], **fields)


async def test_streaming_chat_over_grpc(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        call = stub.ChatCompletion(_chat(model=CHAT, max_tokens=4, stream=True), metadata=_metadata(stack))
        events = [event async for event in call]
        initial = dict(await call.initial_metadata())
        trailing = dict(await call.trailing_metadata())
    assert {e.WhichOneof("event") for e in events[:-1]} <= {"chunk", "chunks"}
    end = events[-1].end
    assert end.usage.completion_tokens == 4
    assert end.routing.node_id in {"fast", "steady"}
    assert end.routing.attempts == 1
    texts = [t for e in events[:-1] for t in ([e.chunk] if e.WhichOneof("event") == "chunk" else e.chunks.chunks)]
    chunks = [orjson.loads(t) for t in texts]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 4
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c.get("usage") is None for c in chunks)
    assert initial["x-atoma-node"] == trailing["x-atoma-node"] == end.routing.node_id
    assert initial["x-request-id"] == end.routing.request_id


async def test_non_streaming_chat_and_embeddings_over_grpc(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        events = [e async for e in stub.ChatCompletion(_chat(model=CHAT, max_tokens=2), metadata=_metadata(stack))]
        embeddings = await stub.Embeddings(
            pb.EmbeddingsRequest(model=EMBED, input=["a b c"]), metadata=_metadata(stack)
        )
        models = await stub.ListModels(pb.ListModelsRequest(), metadata=_metadata(stack))
        nodes = await stub.ListNodes(pb.ListNodesRequest(), metadata=_metadata(stack))
    assert [e.WhichOneof("event") for e in events] == ["completion", "end"]
    assert orjson.loads(events[0].completion)["usage"]["completion_tokens"] == 2
    assert embeddings.usage.prompt_tokens == orjson.loads(embeddings.response_json)["usage"]["prompt_tokens"] > 0
    assert CHAT in {m.id for m in models.data}
    assert {n.node_id for n in nodes.nodes} == {"fast", "steady", "slow", "broken"}
    assert all(n.healthy for n in nodes.nodes)


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (_chat(model="no/such-model"), grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        (_chat(model=""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (_chat(model=CHAT, temperature=7), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (pb.ChatCompletionRequest(model=CHAT), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ],
)
async def test_errors_carry_error_info(stack: Stack, request_, code, reason) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [e async for e in stub.ChatCompletion(request_, metadata=_metadata(stack))]
    assert caught.value.code() == code
    info = _error_info(caught.value)
    assert info.reason == reason
    assert info.domain == "atoma.network"


async def test_missing_and_wrong_keys_are_unauthenticated(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ListModels(pb.ListModelsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.ListModels(pb.ListModelsRequest(), metadata=(("authorization", "Bearer sk-atoma-nope"),))
    assert missing.value.code() == wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _error_info(missing.value).reason == "MISSING_API_KEY"
    assert _error_info(wrong.value).reason == "INVALID_API_KEY"


async def test_deadline_is_honoured_and_cancels_the_node(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        call = stub.ChatCompletion(_chat(model=SLOW_CHAT, stream=True), metadata=_metadata(stack), timeout=0.5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [e async for e in call]
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_reflection_lists_the_services(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
        described = reflection_pb2.ServerReflectionRequest(file_containing_symbol="atoma.routing.v1.RoutingService")
        files = [r async for r in stub.ServerReflectionInfo(iter([described]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"atoma.routing.v1.RoutingService", "grpc.health.v1.Health"} <= names
    assert files[0].file_descriptor_response.file_descriptor_proto


async def test_health_is_serving(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest())
        routing = await stub.Check(health_pb2.HealthCheckRequest(service="atoma.routing.v1.RoutingService"))
    assert overall.status == routing.status == health_pb2.HealthCheckResponse.SERVING
