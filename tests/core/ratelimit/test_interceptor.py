"""The interceptor in a real grpc.aio server, in front of a stand-in RoutingService."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.core.auth import Principal, bearer_token
from atoma_proxy.core.errors import InvalidRequest, Unauthenticated
from atoma_proxy.core.inference import InferenceCall
from atoma_proxy.core.ratelimit import Limits, LocalRateLimiter, RateLimitInterceptor, StaticLimitPolicy
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.core.ratelimit.conftest import FakeClock

KEYS = {"alice": Principal(user_id=1, api_key_id=11)}
ALICE = (("authorization", "Bearer alice"),)
# "hi" is 1 token; max_tokens 100: the interceptor estimates 101 tokens.
CHAT = pb.ChatCompletionRequest(
    model="m", messages=[chat_pb2.ChatMessage(role="user", text="hi")], max_tokens=100, stream=True
)
ESTIMATE = 101


class KeyTable:
    def __init__(self) -> None:
        self.lookups = 0

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal:
        self.lookups += 1
        principal = KEYS.get(bearer_token(metadata))
        if principal is None:
            raise Unauthenticated("Incorrect API key provided.")
        return principal


class StandInService(pb_grpc.RoutingServiceServicer):
    """Reports routing facts through InferenceCall.metadata(), as RoutingService does; usage is `used`."""

    def __init__(self, keys: KeyTable) -> None:
        self.keys = keys
        self.calls = 0
        self.used = 10

    async def ChatCompletion(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionResponse]:
        self.calls += 1
        try:
            await self.keys.authenticate(context.invocation_metadata())
        except Unauthenticated as error:
            await context.abort_with_status(to_grpc_status(error))
        if request.model == "invalid":
            await context.abort_with_status(to_grpc_status(InvalidRequest("no such thing", param="model")))
        call = InferenceCall(request_id="r-1")
        await context.send_initial_metadata(call.metadata())
        yield pb.ChatCompletionResponse(chunk='{"choices":[]}')
        usage = common_pb2.Usage(prompt_tokens=1, completion_tokens=self.used - 1, total_tokens=self.used)
        yield pb.ChatCompletionResponse(end=common_pb2.StreamEnd(usage=usage))

    async def Embeddings(
        self, request: pb.EmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbeddingsResponse:
        self.calls += 1
        await context.send_initial_metadata(InferenceCall(request_id="r-2").metadata())
        return pb.EmbeddingsResponse(response_json="{}", usage=common_pb2.Usage(total_tokens=self.used))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(object="list")

    async def LockNode(self, request: cpb.LockNodeRequest, context: grpc.aio.ServicerContext) -> cpb.LockNodeResponse:
        self.calls += 1
        await context.send_initial_metadata(InferenceCall(request_id="r-3").metadata())
        return cpb.LockNodeResponse(node_id="n")


class Harness:
    def __init__(self, service: StandInService, interceptor: RateLimitInterceptor, stub: pb_grpc.RoutingServiceStub):
        self.service = service
        self.interceptor = interceptor
        self.stub = stub

    async def chat(
        self, request: pb.ChatCompletionRequest = CHAT, metadata: tuple[tuple[str, str], ...] = ALICE
    ) -> dict[str, str | bytes]:
        """The initial metadata of a successful ChatCompletion, after its settlement."""
        call = self.stub.ChatCompletion(request, metadata=metadata)
        [event async for event in call]
        await self.interceptor.wait_settled()
        return dict(await call.initial_metadata())


Serve = Callable[[Limits], Awaitable[Harness]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(limits: Limits) -> Harness:
        keys = KeyTable()
        service = StandInService(keys)
        interceptor = RateLimitInterceptor(LocalRateLimiter(StaticLimitPolicy(limits), clock=FakeClock()), keys)
        server = grpc.aio.server(interceptors=[interceptor])
        pb_grpc.add_RoutingServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return Harness(service, interceptor, pb_grpc.RoutingServiceStub(channel))

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


def _details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert isinstance(raw, bytes)
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(retry.DESCRIPTOR):
            detail.Unpack(retry)
    return info, retry


async def test_an_admitted_stream_sends_the_headers_with_the_routing_facts(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=2, key_tokens=1000))
    metadata = await harness.chat()
    assert metadata["x-request-id"] == "r-1"
    assert metadata["x-ratelimit-limit-requests"] == "2"
    assert metadata["x-ratelimit-remaining-requests"] == "1"
    assert metadata["x-ratelimit-reset-requests"] == "30s"
    assert metadata["x-ratelimit-limit-tokens"] == "1000"
    assert metadata["x-ratelimit-remaining-tokens"] == str(1000 - ESTIMATE)


async def test_a_refused_request_ends_before_the_servicer_with_headers_and_retry_info(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    await harness.chat()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.chat()
    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = _details(error)
    assert info.reason == "RATE_LIMITED"
    assert info.domain == "atoma.network"
    assert retry.retry_delay.seconds == 60
    trailing = dict(error.trailing_metadata() or ())
    assert trailing["x-ratelimit-limit-requests"] == "1"
    assert trailing["x-ratelimit-remaining-requests"] == "0"
    assert harness.service.calls == 1


async def test_the_reported_usage_replaces_the_estimate(serve: Serve) -> None:
    harness = await serve(Limits(key_tokens=1000))
    harness.service.used = 10
    await harness.chat()
    second = await harness.chat()
    # The first request was settled to its 10 tokens before the second was admitted.
    assert second["x-ratelimit-remaining-tokens"] == str(1000 - 10 - ESTIMATE)


async def test_a_request_refused_as_invalid_is_refunded_but_counted(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=10, key_tokens=1000))
    invalid = pb.ChatCompletionRequest()
    invalid.CopyFrom(CHAT)
    invalid.model = "invalid"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await harness.chat(invalid)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    metadata = await harness.chat()
    assert metadata["x-ratelimit-remaining-requests"] == "8"
    assert metadata["x-ratelimit-remaining-tokens"] == str(1000 - ESTIMATE)


async def test_an_unknown_key_is_left_to_the_servicer(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await harness.chat(metadata=(("authorization", "Bearer mallory"),))
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert harness.service.calls == 3
    assert (await harness.chat())["x-ratelimit-remaining-requests"] == "0"


async def test_embeddings_are_limited_and_settled(serve: Serve) -> None:
    harness = await serve(Limits(key_tokens=100))
    harness.service.used = 3
    request = pb.EmbeddingsRequest(model="m", input=["x" * 40])  # estimated at 10 tokens
    call = harness.stub.Embeddings(request, metadata=ALICE)
    await call
    assert dict(await call.initial_metadata())["x-ratelimit-remaining-tokens"] == "90"
    await harness.interceptor.wait_settled()
    call = harness.stub.Embeddings(request, metadata=ALICE)
    await call
    assert dict(await call.initial_metadata())["x-ratelimit-remaining-tokens"] == str(100 - 3 - 10)


async def test_other_methods_pass_untouched(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    for _ in range(3):
        await harness.stub.ListModels(pb.ListModelsRequest())
    assert harness.service.calls == 0
    assert (await harness.chat())["x-ratelimit-remaining-requests"] == "0"


async def test_confidential_locks_are_limited_by_the_tokens_they_hold(serve: Serve) -> None:
    harness = await serve(Limits(key_tokens=100))
    call = harness.stub.LockNode(cpb.LockNodeRequest(model="m", max_num_tokens=60), metadata=ALICE)
    await call
    assert dict(await call.initial_metadata())["x-ratelimit-remaining-tokens"] == "40"
    await harness.interceptor.wait_settled()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.LockNode(cpb.LockNodeRequest(model="m", max_num_tokens=60), metadata=ALICE)
    assert _details(refused.value)[0].reason == "RATE_LIMITED"
    assert harness.service.calls == 1
