"""gRPC as a person with grpcurl uses it: proto JSON requests with OpenAI's `content`, a structured
`extra`, reflection v1 (grpcurl's first choice) as well as v1alpha, health for every service."""

from __future__ import annotations

import grpc
import orjson
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import CHAT, Stack

SERVICES = (
    "atoma.routing.v1.RoutingService",
    "atoma.accounts.v1.AccountService",
    "atoma.accounts.v1.AccountAdminService",
    "atoma.routing.v1.NodeAdminService",
)


async def _completion(stack: Stack, request: dict[str, object]) -> dict[str, object]:
    """A non-streamed ChatCompletion from proto JSON, as `grpcurl -d '<json>'` sends it."""
    message = json_format.ParseDict(request, pb.ChatCompletionRequest())
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        metadata = (("authorization", f"Bearer {stack.api_key}"),)
        events = [event async for event in stub.ChatCompletion(message, metadata=metadata)]
    completion = orjson.loads(events[0].completion)
    assert isinstance(completion, dict)
    return completion


async def test_content_is_accepted_where_text_is_and_gives_the_same_answer(stack: Stack) -> None:
    common = {"model": CHAT, "seed": 7, "maxTokens": 6}
    by_text = await _completion(stack, {**common, "messages": [{"role": "user", "text": "hello grpc"}]})
    by_content = await _completion(stack, {**common, "messages": [{"role": "user", "content_value": "hello grpc"}]})
    by_parts = await _completion(
        stack, {**common, "messages": [{"role": "user", "content_value": [{"type": "text", "text": "hello grpc"}]}]}
    )
    answers = [c["choices"][0]["message"]["content"] for c in (by_text, by_content, by_parts)]  # type: ignore[index]
    assert answers[0] and answers[0] == answers[1]  # the same request: the simulator's same reply
    assert len(answers[2].split()) == 6
    assert by_parts["usage"]["prompt_tokens"] == by_text["usage"]["prompt_tokens"]  # type: ignore[index]


async def test_structured_extra_reaches_the_node(stack: Stack) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    completion = await _completion(
        stack,
        {
            "model": CHAT,
            "maxTokens": 5,
            "messages": [{"role": "user", "content_value": "find it"}],
            "extra": {"tools": [tool], "tool_choice": "required"},
        },
    )
    [call] = completion["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert call["function"]["name"] == "lookup"


async def test_structured_extra_cannot_set_what_is_metered(stack: Stack) -> None:
    request = {"model": CHAT, "messages": [{"role": "user", "content_value": "hi"}], "extra": {"max_tokens": 9}}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _completion(stack, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "extra" in (caught.value.details() or "")


async def test_reflection_v1_and_v1alpha_both_answer(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        for version in ("v1", "v1alpha"):
            method = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="atoma.routing.v1.RoutingService"),
            ]
            listed, v1_file, routing_file = [r async for r in method(iter(requests))]
            names = {s.name for s in listed.list_services_response.service}
            assert {
                *SERVICES,
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= names
            assert v1_file.file_descriptor_response.file_descriptor_proto, version
            assert routing_file.file_descriptor_response.file_descriptor_proto, version


async def test_health_knows_every_service(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *SERVICES):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
