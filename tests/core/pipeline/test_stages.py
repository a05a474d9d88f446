"""The stages around the relay, in a real grpc.aio server with the real RoutingService and relay: what the
rate limiter and the ledger see of one request, and what the client is told."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.core import node_requests
from atoma_proxy.core.auth import Principal, bearer_token
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.errors import InvalidRequest, RateLimited, Unauthenticated
from atoma_proxy.core.ledger import Estimate, Estimator, Outcome, RequestKind, Tokenizers
from atoma_proxy.core.ledger.token_counting import SimWordsCounter
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.nodes.selection import StrategySelector
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay
from atoma_proxy.core.pipeline.stages import Stages, used_tokens
from atoma_proxy.core.ratelimit import Admission, Limits, LocalRateLimiter, StaticLimitPolicy
from atoma_proxy.core.routing_service import RoutingService
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.core.nodes.support import DONE, FINISH, ROLE, TOKEN, ScriptedTransport, make_node
from tests.core.ratelimit.conftest import FakeClock

KEYS = {"alice": Principal(user_id=1, api_key_id=11)}
ALICE = (("authorization", "Bearer alice"),)
CHAT = pb.ChatCompletionRequest(
    model="m", messages=[chat_pb2.ChatMessage(role="user", text="hi")], max_tokens=100, stream=True
)
ESTIMATOR = Estimator(Tokenizers({"m": SimWordsCounter()}), default_max_completion_tokens=4096)
# The one estimate: "hi" is 7 prompt tokens under the simulator's rule, plus the 100 reserved for output.
ESTIMATE = ESTIMATOR.estimate(RequestKind.CHAT, "m", node_requests.chat_completion_body(CHAT)).tokens
USED = 10
USAGE = b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":9,"total_tokens":10}}'
EMBEDDING = b'{"object":"list","data":[{"embedding":[0.5]}],"usage":{"prompt_tokens":3,"total_tokens":3}}'


class KeyTable:
    """The authenticator, counting its lookups."""

    def __init__(self) -> None:
        self.lookups = 0

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal:
        self.lookups += 1
        principal = KEYS.get(bearer_token(metadata))
        if principal is None:
            raise Unauthenticated("Incorrect API key provided.")
        return principal


class Harness:
    def __init__(self, keys: KeyTable, stages: Stages, stub: pb_grpc.RoutingServiceStub) -> None:
        self.keys = keys
        self.stages = stages
        self.stub = stub

    async def chat(
        self, request: pb.ChatCompletionRequest = CHAT, metadata: tuple[tuple[str, str], ...] = ALICE
    ) -> dict[str, str | bytes]:
        """The initial metadata of a successful ChatCompletion, after its settlement."""
        call = self.stub.ChatCompletion(request, metadata=metadata)
        [event async for event in call]
        await self.stages.wait_settled()
        return dict(await call.initial_metadata())


Serve = Callable[[Limits], Awaitable[Harness]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(limits: Limits) -> Harness:
        keys = KeyTable()
        registry = NodeRegistry([make_node("a")])
        transport = ScriptedTransport(posts={"a": [EMBEDDING]}, streams={"a": [[ROLE, TOKEN, FINISH, USAGE, DONE]]})
        relay = InferenceRelay(registry, StrategySelector("round_robin"), transport)
        limiter = LocalRateLimiter(StaticLimitPolicy(limits), clock=FakeClock())
        stages = Stages(keys, ESTIMATOR, limiter=limiter)
        server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])  # as the core serves it
        pb_grpc.add_RoutingServiceServicer_to_server(RoutingService(registry, relay, stages), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return Harness(keys, stages, pb_grpc.RoutingServiceStub(channel))

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


async def test_one_key_lookup_per_request(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=100, key_tokens=10_000))
    await harness.chat()
    assert harness.keys.lookups == 1
    await harness.stub.Embeddings(pb.EmbeddingsRequest(model="m", input=["x"]), metadata=ALICE)
    assert harness.keys.lookups == 2


async def test_an_admitted_stream_sends_the_headers_with_the_routing_facts(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=2, key_tokens=1000))
    metadata = await harness.chat(metadata=(*ALICE, ("x-request-id", "r-1")))
    assert metadata["x-request-id"] == "r-1"
    assert metadata["x-atoma-node"] == "a"
    assert metadata["x-ratelimit-limit-requests"] == "2"
    assert metadata["x-ratelimit-remaining-requests"] == "1"
    assert metadata["x-ratelimit-reset-requests"] == "30s"
    assert metadata["x-ratelimit-limit-tokens"] == "1000"
    assert metadata["x-ratelimit-remaining-tokens"] == str(1000 - ESTIMATE)


async def test_a_refused_request_ends_before_any_node_with_headers_and_retry_info(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    await harness.chat()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.chat()
    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = _details(error)
    assert (info.reason, info.domain) == ("RATE_LIMITED", "atoma.network")
    assert retry.retry_delay.seconds == 60
    trailing = dict(error.trailing_metadata() or ())
    assert trailing["x-ratelimit-limit-requests"] == "1"
    assert trailing["x-ratelimit-remaining-requests"] == "0"


async def test_the_reported_usage_replaces_the_estimate(serve: Serve) -> None:
    harness = await serve(Limits(key_tokens=1000))
    await harness.chat()
    second = await harness.chat()
    # The first request was settled to its 10 tokens before the second was admitted.
    assert second["x-ratelimit-remaining-tokens"] == str(1000 - USED - ESTIMATE)


async def test_a_request_refused_as_invalid_is_refunded_but_counted(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=10, key_tokens=1000))
    invalid = pb.ChatCompletionRequest()
    invalid.CopyFrom(CHAT)
    invalid.ClearField("messages")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await harness.chat(invalid)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    metadata = await harness.chat()
    assert metadata["x-ratelimit-remaining-requests"] == "8"
    assert metadata["x-ratelimit-remaining-tokens"] == str(1000 - ESTIMATE)


async def test_an_unknown_key_is_refused_and_not_counted(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await harness.chat(metadata=(("authorization", "Bearer mallory"),))
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await harness.chat())["x-ratelimit-remaining-requests"] == "0"


async def test_embeddings_are_limited_and_settled(serve: Serve) -> None:
    harness = await serve(Limits(key_tokens=100))
    request = pb.EmbeddingsRequest(model="m", input=["one two three four"])
    estimate = ESTIMATOR.estimate(RequestKind.EMBEDDINGS, "m", node_requests.embeddings_body(request)).tokens
    call = harness.stub.Embeddings(request, metadata=ALICE)
    await call
    assert dict(await call.trailing_metadata())["x-ratelimit-remaining-tokens"] == str(100 - estimate)
    await harness.stages.wait_settled()
    call = harness.stub.Embeddings(request, metadata=ALICE)
    await call
    assert dict(await call.trailing_metadata())["x-ratelimit-remaining-tokens"] == str(100 - 3 - estimate)


async def test_other_methods_are_not_limited(serve: Serve) -> None:
    harness = await serve(Limits(key_requests=1))
    for _ in range(3):
        await harness.stub.ListModels(pb.ListModelsRequest(), metadata=ALICE)
    assert (await harness.chat())["x-ratelimit-remaining-requests"] == "0"


class RecordingLimiter:
    def __init__(self) -> None:
        self.admitted: list[int] = []

    async def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        self.admitted.append(estimated_tokens)
        return Admission(estimated_tokens=estimated_tokens)

    async def aclose(self) -> None:
        pass


class RecordingMeter:
    """Stands in for the ledger: records the estimate it is asked to reserve for."""

    enabled = True

    def __init__(self) -> None:
        self.reserved: list[Estimate] = []

    async def reserve(self, principal: Principal, request_id: str, model: str, estimate: Estimate, **_: Any) -> None:
        self.reserved.append(estimate)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (RequestKind.CHAT, node_requests.chat_completion_body(CHAT)),
        (RequestKind.COMPLETION, {"model": "m", "prompt": ["a b", "c"], "n": 2, "max_tokens": 5}),
        (RequestKind.EMBEDDINGS, {"model": "m", "input": ["a b c"]}),
        (RequestKind.IMAGES, {"model": "m", "prompt": "a cat", "n": 2}),
    ],
)
async def test_the_rate_limiter_and_the_ledger_receive_the_same_estimate(kind: RequestKind, body: dict) -> None:
    limiter, meter = RecordingLimiter(), RecordingMeter()
    stages = Stages(KeyTable(), ESTIMATOR, limiter=limiter, meter=meter)  # type: ignore[arg-type]
    call = await stages.begin(ALICE, None)
    await stages.prepare(call, kind, "m", lambda: dict(body))
    assert meter.reserved == [call.estimate]
    assert call.estimate is not None and limiter.admitted == [call.estimate.tokens]
    assert call.estimate == ESTIMATOR.estimate(kind, "m", body)


async def test_a_request_that_fails_normalization_is_admitted_for_nothing_and_never_reserved() -> None:
    limiter, meter = RecordingLimiter(), RecordingMeter()
    stages = Stages(KeyTable(), ESTIMATOR, limiter=limiter, meter=meter)  # type: ignore[arg-type]
    call = await stages.begin(ALICE, None)

    def refuse() -> dict[str, Any]:
        raise InvalidRequest("no", param="messages")

    with pytest.raises(InvalidRequest):
        await stages.prepare(call, RequestKind.CHAT, "m", refuse)
    assert limiter.admitted == [0] and meter.reserved == []


async def test_a_rate_limited_request_is_never_reserved() -> None:
    meter = RecordingMeter()
    limiter = LocalRateLimiter(StaticLimitPolicy(Limits(key_requests=1)), clock=FakeClock())
    stages = Stages(KeyTable(), ESTIMATOR, limiter=limiter, meter=meter)  # type: ignore[arg-type]
    body = node_requests.chat_completion_body(CHAT)
    await stages.prepare(await stages.begin(ALICE, None), RequestKind.CHAT, "m", lambda: dict(body))
    with pytest.raises(RateLimited):
        await stages.prepare(await stages.begin(ALICE, None), RequestKind.CHAT, "m", lambda: dict(body))
    assert len(meter.reserved) == 1


async def test_the_node_is_told_the_output_cap_of_the_estimate_ledger_or_not() -> None:
    stages = Stages(KeyTable(), ESTIMATOR)
    call = await stages.begin(ALICE, None)
    body = await stages.prepare(call, RequestKind.CHAT, "m", lambda: {"model": "m", "messages": []})
    assert body["max_tokens"] == body["max_completion_tokens"] == 4096
    assert call.limits is not None and call.limits.output_cap == 4096


def test_the_tokens_a_request_used_as_the_rate_limiter_counts_them() -> None:
    estimate = Estimate(RequestKind.CHAT, prompt_tokens=7, prompt_exact=True, completion_tokens=100, output_cap=100)
    node = make_node("a")
    reported = InferenceCall("r", estimate=estimate, node=node, usage={"prompt_tokens": 2, "completion_tokens": 3})
    assert used_tokens(reported, Outcome.OK) == 5
    cut = InferenceCall("r", estimate=estimate, node=node, delivered=4)
    assert used_tokens(cut, Outcome.CLIENT_CANCELLED) == 7 + 4
    assert used_tokens(InferenceCall("r", estimate=estimate), Outcome.NO_NODE) == 0  # no node served it
    assert used_tokens(InferenceCall("r", estimate=estimate, node=node), Outcome.NODE_REJECTED) == 0
