"""The in-process channel behaves as a grpc.aio channel to the same servicer and interceptors.

Every test runs twice: over a real grpc.aio server on loopback, and over `LocalServer.channel()`
registered next to it; the same assertions hold on both paths.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.core.errors import ModelNotFound, NoNodeAvailable, RateLimited
from atoma_proxy.core.malformed import MalformedRequestInterceptor
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.support.paths import PATHS, channel_to


@dataclass
class Observed:
    """What the servicer saw."""

    metadata: dict[str, Any] = field(default_factory=dict)
    time_remaining: float | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: str | None = None
    message: Any = None


class Servicer(pb_grpc.RoutingServiceServicer):
    def __init__(self, observed: Observed) -> None:
        self.observed = observed

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> Any:
        self.observed.metadata = dict(context.invocation_metadata() or ())
        self.observed.time_remaining = context.time_remaining()
        behaviour = self.observed.metadata.get("behaviour", "ok")
        if behaviour == "rate-limited":
            error = RateLimited("Slow down.", retry_after=1.5, headers=(("x-ratelimit-remaining-requests", "0"),))
            await context.abort_with_status(to_grpc_status(error, error.headers))
        if behaviour == "crash":
            raise RuntimeError("boom")
        if behaviour == "hang":
            self.observed.started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.observed.outcome = "cancelled"
                raise
            finally:
                self.observed.finished.set()
        context.set_trailing_metadata((("x-atoma-cost", "42"),))
        self.observed.message = pb.ListModelsResponse(object="list", data=[pb.Model(id="m")])
        return self.observed.message

    async def ChatCompletion(self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext) -> Any:
        self.observed.metadata = dict(context.invocation_metadata() or ())
        await context.send_initial_metadata((("x-atoma-node", "node-1"),))
        try:
            for index in range(1000):
                yield pb.ChatCompletionResponse(chunk=f"chunk {index}")
                if request.model == "fails-after-one":
                    await context.abort_with_status(to_grpc_status(NoNodeAvailable("gone")))
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.observed.outcome = "cancelled"
            raise
        finally:
            self.observed.finished.set()


class DenyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls that carry `deny` metadata before the servicer runs, as the rate limiter does."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        inner = handler.unary_unary
        if inner is None:
            return handler

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if any(key == "deny" for key, _ in context.invocation_metadata() or ()):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied by the interceptor")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@pytest.fixture(params=PATHS)
async def routing(request: pytest.FixtureRequest) -> AsyncIterator[tuple[pb_grpc.RoutingServiceStub, Observed, str]]:
    observed = Observed()
    interceptors = [MalformedRequestInterceptor(), DenyInterceptor()]
    servicer = Servicer(observed)
    register = functools.partial(pb_grpc.add_RoutingServiceServicer_to_server, servicer)
    async with channel_to(request.param, interceptors, register) as channel:
        yield pb_grpc.RoutingServiceStub(channel), observed, request.param


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no grpc-status-details-bin")


async def test_unary_metadata_in_and_out(routing: Any) -> None:
    stub, observed, path = routing
    call = stub.ListModels(
        pb.ListModelsRequest(), metadata=(("x-request-id", "r-1"), ("trace-bin", b"\x00\x01")), timeout=30
    )
    response = await call
    assert [m.id for m in response.data] == ["m"]
    assert observed.metadata["x-request-id"] == "r-1"
    assert observed.metadata["trace-bin"] == b"\x00\x01"
    assert observed.time_remaining is not None and 0 < observed.time_remaining <= 30
    assert ("x-atoma-cost", "42") in list(await call.trailing_metadata())
    assert await call.code() is grpc.StatusCode.OK
    if path == "in-process":  # nothing serialized: the servicer's own message
        assert response is observed.message


async def test_abort_status_details_reach_the_caller(routing: Any) -> None:
    stub, _, _ = routing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(pb.ListModelsRequest(), metadata=(("behaviour", "rate-limited"),))
    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "Slow down."
    assert ("x-ratelimit-remaining-requests", "0") in list(error.trailing_metadata())
    status = _status(error)
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
    assert status.details[1].Unpack(retry) and retry.retry_delay.ToMilliseconds() == 1500


async def test_an_exception_in_the_servicer_is_unknown(routing: Any) -> None:
    stub, _, _ = routing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(pb.ListModelsRequest(), metadata=(("behaviour", "crash"),))
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    assert "RuntimeError" in (caught.value.details() or "")


async def test_server_interceptors_apply(routing: Any) -> None:
    stub, observed, _ = routing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(pb.ListModelsRequest(), metadata=(("deny", "1"),))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "denied by the interceptor"
    assert observed.metadata == {}  # the servicer never ran


async def test_deadline_cancels_the_servicer(routing: Any) -> None:
    stub, observed, _ = routing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(pb.ListModelsRequest(), metadata=(("behaviour", "hang"),), timeout=0.2)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(observed.finished.wait(), 10)
    assert observed.outcome == "cancelled"


async def test_stream_initial_metadata_messages_and_cancel(routing: Any) -> None:
    stub, observed, _ = routing
    call = stub.ChatCompletion(pb.ChatCompletionRequest(model="m"), metadata=(("x-request-id", "s-1"),), timeout=30)
    assert ("x-atoma-node", "node-1") in list(await call.initial_metadata())
    assert (await call.read()).chunk == "chunk 0"
    assert (await call.read()).chunk == "chunk 1"
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.read()
    await asyncio.wait_for(observed.finished.wait(), 10)
    assert observed.outcome == "cancelled"
    assert observed.metadata["x-request-id"] == "s-1"


async def test_stream_error_after_a_message(routing: Any) -> None:
    stub, _, _ = routing
    call = stub.ChatCompletion(pb.ChatCompletionRequest(model="fails-after-one"), timeout=30)
    assert (await call.read()).chunk == "chunk 0"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_details_pb2.ErrorInfo()
    assert _status(caught.value).details[0].Unpack(info) and info.reason == "NO_NODE_AVAILABLE"
    assert ("x-atoma-node", "node-1") in list(caught.value.initial_metadata())


async def test_cancelling_the_awaiting_task_cancels_the_call(routing: Any) -> None:
    stub, observed, _ = routing
    waiting = asyncio.ensure_future(stub.ListModels(pb.ListModelsRequest(), metadata=(("behaviour", "hang"),)))
    await asyncio.wait_for(observed.started.wait(), 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(observed.finished.wait(), 10)
    assert observed.outcome == "cancelled"


async def test_unknown_method_is_unimplemented(routing: Any) -> None:
    stub, _, _ = routing
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the generated base servicer's answer
        await stub.ListNodes(pb.ListNodesRequest())
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_only_the_cores_unavailable_tells_retry_policies_not_to_retry() -> None:
    # The core's own UNAVAILABLE says "do not retry" to a facade's retry policy; other codes need not.
    assert ("grpc-retry-pushback-ms", "-1") in to_grpc_status(NoNodeAvailable("x")).trailing_metadata
    assert ("grpc-retry-pushback-ms", "-1") not in to_grpc_status(ModelNotFound("x")).trailing_metadata
