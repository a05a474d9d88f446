"""gRPC failures become the RoutingError family, with reason, metadata and routing decoded."""

import asyncio

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.clients import (
    AuthenticationError,
    DeadlineExceededError,
    InsufficientFundsError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RoutingError,
    RoutingInfo,
    UnavailableError,
    from_rpc_error,
)
from tests.clients.fake_core import FakeError

HI = [{"role": "user", "content": "hi"}]
S = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "reason", "metadata", "expected"),
    [
        (S.INVALID_ARGUMENT, "INVALID_REQUEST", {"param": "messages"}, InvalidRequestError),
        (S.INVALID_ARGUMENT, "NODE_REJECTED_REQUEST", {}, InvalidRequestError),
        (S.UNAUTHENTICATED, "INVALID_API_KEY", {}, AuthenticationError),
        (S.NOT_FOUND, "MODEL_NOT_FOUND", {"param": "model"}, NotFoundError),
        (S.RESOURCE_EXHAUSTED, "RATE_LIMITED", {"limit": "60/min"}, RateLimitError),
        (S.RESOURCE_EXHAUSTED, "INSUFFICIENT_FUNDS", {"balance": "0"}, InsufficientFundsError),
        (S.UNAVAILABLE, "NO_NODE_AVAILABLE", {}, UnavailableError),
        (S.UNAVAILABLE, "NODE_FAILED", {}, UnavailableError),
        (S.DEADLINE_EXCEEDED, "NODE_TIMEOUT", {}, DeadlineExceededError),
        (S.CANCELLED, "SHUTTING_DOWN", {}, RequestCancelledError),
        (S.INTERNAL, "INTERNAL", {}, InternalError),
    ],
)
async def test_status_with_error_info_maps_to_its_class(client, core, code, reason, metadata, expected):
    core.error = FakeError(code, f"failed with {reason}", reason=reason, metadata=metadata)

    with pytest.raises(RoutingError) as caught:
        await client.list_models()

    error = caught.value
    assert type(error) is expected
    assert (error.code, error.reason, error.metadata) == (code, reason, metadata)
    assert (error.message, error.domain) == (f"failed with {reason}", "atoma.network")


async def test_insufficient_funds_is_not_a_rate_limit(client, core):
    core.error = FakeError(S.RESOURCE_EXHAUSTED, "balance too low", reason="INSUFFICIENT_FUNDS")

    with pytest.raises(RoutingError) as caught:
        await client.embeddings(model="embed", input="a")

    assert not isinstance(caught.value, RateLimitError)


async def test_retry_info_and_routing_trailers_are_decoded(client, core):
    core.error = FakeError(
        S.RESOURCE_EXHAUSTED,
        "slow down",
        reason="RATE_LIMITED",
        retry_after_seconds=12,
        trailing_metadata={"x-request-id": "req-9", "x-atoma-node": "node-c"},
    )

    with pytest.raises(RateLimitError) as caught:
        await client.generate_images(model="flux", prompt="a cat")

    assert caught.value.retry_after == 12
    assert caught.value.routing == RoutingInfo(node_id="node-c", attempts=None, request_id="req-9")


async def test_status_without_details_maps_by_code_alone(client, core):
    core.error = FakeError(S.NOT_FOUND, "no such thing")

    with pytest.raises(NotFoundError) as caught:
        await client.list_nodes()

    error = caught.value
    assert (error.reason, error.domain, error.metadata, error.message) == (None, None, {}, "no such thing")


async def test_error_before_the_first_event_raises_on_iteration(client, core):
    core.error = FakeError(S.NOT_FOUND, "unknown model", reason="MODEL_NOT_FOUND", metadata={"param": "model"})

    with pytest.raises(NotFoundError) as caught:
        async for _ in client.chat_completion(model="nope", messages=HI, stream=True):
            pass

    assert caught.value.metadata == {"param": "model"}


async def test_error_mid_stream_comes_after_the_events_already_sent(client, core):
    core.error = FakeError(S.UNAVAILABLE, "node went away", reason="NODE_FAILED", after_events=1)
    received = []

    with pytest.raises(UnavailableError) as caught:
        async for event in client.chat_completion(model="llama-3", messages=HI, stream=True):
            received.append(event)

    assert len(received) == 1
    assert caught.value.reason == "NODE_FAILED"


async def test_create_helper_raises_the_family_too(client, core):
    core.error = FakeError(S.UNAUTHENTICATED, "no key", reason="MISSING_API_KEY")

    with pytest.raises(AuthenticationError):
        await client.completion_create(model="llama-3", prompt="hi")


async def test_local_deadline_raises_deadline_exceeded_without_reason(client, core):
    core.hang_after_first_event = True

    with pytest.raises(DeadlineExceededError) as caught:
        async for _ in client.chat_completion(model="llama-3", messages=HI, stream=True, timeout=0.2):
            pass

    assert caught.value.reason is None
    await asyncio.wait_for(core.stream_cancelled.wait(), 30)


def _rpc_error(code: grpc.StatusCode, details: str, trailing: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details)


def _status_trailer(*details) -> tuple[str, bytes]:
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    return (
        "grpc-status-details-bin",
        status_pb2.Status(code=8, message="from status", details=packed).SerializeToString(),
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (S.FAILED_PRECONDITION, InvalidRequestError),
        (S.OUT_OF_RANGE, InvalidRequestError),
        (S.PERMISSION_DENIED, AuthenticationError),
        (S.UNKNOWN, InternalError),
        (S.DATA_LOSS, InternalError),
        (S.UNIMPLEMENTED, RoutingError),
        (S.ALREADY_EXISTS, RoutingError),
        (S.ABORTED, RoutingError),
    ],
)
def test_codes_the_core_does_not_send_still_map_into_the_family(code, expected):
    error = from_rpc_error(_rpc_error(code, "details"))

    assert type(error) is expected
    assert (error.code, error.message, error.reason) == (code, "details", None)


def test_a_reason_with_its_own_class_wins_over_the_code():
    info = error_details_pb2.ErrorInfo(reason="INSUFFICIENT_FUNDS", domain="atoma.network")

    error = from_rpc_error(_rpc_error(S.FAILED_PRECONDITION, "x", (_status_trailer(info),)))

    assert type(error) is InsufficientFundsError
    assert error.code == S.FAILED_PRECONDITION
    assert error.message == "from status"


def test_a_garbled_status_trailer_still_gives_a_typed_error():
    error = from_rpc_error(_rpc_error(S.UNAVAILABLE, "down", (("grpc-status-details-bin", b"\xff\xff"),)))

    assert type(error) is UnavailableError
    assert (error.reason, error.message) == (None, "down")


def test_str_shows_code_reason_and_message():
    info = error_details_pb2.ErrorInfo(reason="RATE_LIMITED")

    error = from_rpc_error(_rpc_error(S.RESOURCE_EXHAUSTED, "x", (_status_trailer(info),)))

    assert str(error) == "RESOURCE_EXHAUSTED/RATE_LIMITED: from status"
