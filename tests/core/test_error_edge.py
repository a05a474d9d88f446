"""The error edge in front of a tiny servicer that raises each kind of error, unary and streaming.

Every test runs twice: over a real grpc.aio server on loopback and over the in-process channel
(`LocalServer`), both behind the same interceptors, as CoreServer wires them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import exc as sa_exc

from atoma_proxy.core.error_edge import UNEXPECTED_MESSAGE, ErrorEdgeInterceptor
from atoma_proxy.core.errors import ModelNotFound, NoNodeAvailable, RateLimited
from atoma_proxy.core.malformed import MalformedRequestInterceptor
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.wire.status import decode_status
from tests.support.paths import PATHS, channel_to

ROUTING_FACTS = (("x-request-id", "r-7"), ("x-atoma-attempts", "2"))


@dataclass
class Observed:
    outcome: str | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)


def _raise(behaviour: str) -> None:
    """What the servicer raises for a `behaviour` metadata value."""
    if behaviour == "proxy-error":
        raise ModelNotFound("gpt-9")
    if behaviour == "rate-limited":
        raise RateLimited("Slow down.", retry_after=1.5, headers=(("x-ratelimit-remaining-requests", "0"),))
    if behaviour == "database-outage":
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    if behaviour == "bug":
        raise KeyError("a bug")


class Servicer(pb_grpc.RoutingServiceServicer):
    """Raises what the `behaviour` metadata names; `facts` sets trailing metadata first, as an inference RPC does."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        if "facts" in metadata:
            context.set_trailing_metadata(ROUTING_FACTS)
        if metadata.get("behaviour") == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "aborted by the servicer")
        if metadata.get("behaviour") == "hang":
            self.observed.started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.observed.outcome = "cancelled"
                raise
        _raise(str(metadata.get("behaviour", "")))
        return pb.ListModelsResponse(object="list")

    async def ChatCompletion(self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext) -> Any:
        yield pb.ChatCompletionResponse(chunk="first")
        context.set_trailing_metadata(ROUTING_FACTS)
        raise NoNodeAvailable(f"No node for `{request.model}` right now.")


@pytest.fixture(params=PATHS)
async def stub(request: pytest.FixtureRequest) -> AsyncIterator[tuple[pb_grpc.RoutingServiceStub, Observed]]:
    observed = Observed()
    interceptors = [MalformedRequestInterceptor(), ErrorEdgeInterceptor()]
    register = functools.partial(pb_grpc.add_RoutingServiceServicer_to_server, Servicer(observed))
    async with channel_to(request.param, interceptors, register) as channel:
        yield pb_grpc.RoutingServiceStub(channel), observed


async def _failure(stub: pb_grpc.RoutingServiceStub, *metadata: tuple[str, str]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(pb.ListModelsRequest(), metadata=metadata)
    return caught.value


@pytest.mark.parametrize(
    ("behaviour", "code", "reason", "message"),
    [
        (
            "proxy-error",
            grpc.StatusCode.NOT_FOUND,
            "MODEL_NOT_FOUND",
            "The model `gpt-9` does not exist or is not served.",
        ),
        ("rate-limited", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "Slow down."),
        (
            "database-outage",
            grpc.StatusCode.UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            "The proxy's database is unavailable right now; nothing was done. Retry shortly.",
        ),
        ("bug", grpc.StatusCode.INTERNAL, "INTERNAL", UNEXPECTED_MESSAGE),
    ],
)
async def test_what_a_servicer_raises_becomes_its_status(
    stub: Any, behaviour: str, code: grpc.StatusCode, reason: str, message: str
) -> None:
    stub, _ = stub
    error = await _failure(stub, ("behaviour", behaviour))

    status = decode_status(error.trailing_metadata())
    assert status is not None
    assert (error.code(), error.details()) == (code, message)
    assert (status.reason, status.domain, status.message) == (reason, "atoma.network", message)


async def test_a_domain_error_keeps_its_error_info_metadata(stub: Any) -> None:
    stub, _ = stub
    status = decode_status((await _failure(stub, ("behaviour", "proxy-error"))).trailing_metadata())

    assert status is not None and status.param == "model"


async def test_the_trailing_metadata_already_set_stays_and_the_errors_own_follows(stub: Any) -> None:
    stub, _ = stub
    error = await _failure(stub, ("behaviour", "rate-limited"), ("facts", "1"))

    trailing = list(error.trailing_metadata())
    status = decode_status(trailing)
    assert status is not None and status.retry_after == 1.5
    assert [pair for pair in trailing if pair[0].startswith("x-")] == [
        *ROUTING_FACTS,
        ("x-ratelimit-remaining-requests", "0"),
    ]


async def test_a_database_outage_says_when_to_retry(stub: Any) -> None:
    stub, _ = stub
    error = await _failure(stub, ("behaviour", "database-outage"))

    status = decode_status(error.trailing_metadata())
    assert status is not None and status.retry_after == 1.0
    assert ("grpc-retry-pushback-ms", "-1") in list(error.trailing_metadata())  # an answer: no retry elsewhere


async def test_a_bug_is_logged_with_its_traceback(stub: Any, caplog: pytest.LogCaptureFixture) -> None:
    stub, _ = stub
    with caplog.at_level(logging.ERROR, logger="atoma_proxy.core.error_edge"):
        await _failure(stub, ("behaviour", "bug"))

    [record] = [r for r in caplog.records if r.name == "atoma_proxy.core.error_edge"]
    assert "/atoma.routing.v1.RoutingService/ListModels" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


async def test_a_servicer_that_aborted_itself_passes_through(stub: Any) -> None:
    stub, _ = stub
    error = await _failure(stub, ("behaviour", "abort"))

    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, "aborted by the servicer")
    assert decode_status(error.trailing_metadata()) is None


async def test_cancellation_reaches_the_servicer_untouched(stub: Any) -> None:
    stub, observed = stub
    call = stub.ListModels(pb.ListModelsRequest(), metadata=(("behaviour", "hang"),))
    await asyncio.wait_for(observed.started.wait(), 10)
    call.cancel()

    for _ in range(200):
        if observed.outcome is not None:
            break
        await asyncio.sleep(0.01)
    assert observed.outcome == "cancelled"


async def test_a_stream_that_fails_after_a_message_ends_with_the_errors_status(stub: Any) -> None:
    stub, _ = stub
    call = stub.ChatCompletion(pb.ChatCompletionRequest(model="m"))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message.chunk)

    status = decode_status(caught.value.trailing_metadata())
    assert received == ["first"]
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert status is not None and (status.reason, status.message) == ("NO_NODE_AVAILABLE", "No node for `m` right now.")
    assert set(ROUTING_FACTS) <= set(caught.value.trailing_metadata())


async def test_a_handler_that_writes_with_context_write_still_streams() -> None:
    """health's Watch writes with `context.write` instead of yielding (grpc.aio only)."""
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await call.read()
            call.cancel()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
