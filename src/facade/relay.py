"""Calling the core for one HTTP request and turning the outcome into a response.

Both shapes wait for the core's first answer before any HTTP byte is sent, so an error before
the first chunk gets a real status and envelope (grpc-gateway's rule). While waiting, a client that
disconnects has the gRPC call cancelled at once (disconnect.py; a non-streaming completion can take
minutes, and the node should stop as soon as nobody waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import Request
from starlette.responses import Response

from atoma_proxy.facade.disconnect import watch_disconnect
from atoma_proxy.facade.errors import ApiError, connection_lost
from atoma_proxy.facade.metadata import Metadata, call_metadata, routing_headers, rpc_error
from atoma_proxy.facade.sse import EventStreamResponse

__all__ = ["call_options", "call_unary", "relay_inference"]


def call_options(request: Request) -> dict[str, Any]:
    """`metadata` and `timeout` keyword arguments for a stub call made for this request."""
    metadata: Metadata
    client = request.scope.get("client")
    metadata, timeout = call_metadata(
        request.scope["headers"], request.app.state.settings.facade.request_timeout, client[0] if client else None
    )
    return {"metadata": metadata, "timeout": timeout}


async def call_unary(request: Request, method: Callable[..., Any], message: Any) -> tuple[Any, dict[str, str]]:
    """The response of a unary call and the routing headers to copy, or the mapped ApiError."""
    call = method(message, **call_options(request))
    async with _cancel_on_disconnect(request, call):
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from None
        headers = routing_headers(await call.initial_metadata(), await call.trailing_metadata())
    return response, headers


async def relay_inference(
    request: Request,
    call: grpc.aio.UnaryStreamCall,
    *,
    stream: bool,
    whole: str = "completion",
    events: Callable[[grpc.aio.UnaryStreamCall, Any], AsyncGenerator[bytes, None]] | None = None,
) -> Response:
    """The response for a ChatCompletion/Completion/CreateResponse call: the JSON of its `whole` event,
    or an event stream (framed by `events`, OpenAI's chat framing by default)."""
    async with _cancel_on_disconnect(request, call):
        try:
            first = await call.read()
            if first is grpc.aio.EOF:
                raise ApiError(502, "The routing core ended the call without an answer.", code="bad_gateway")
            if stream:
                return EventStreamResponse(call, first, routing_headers(await call.initial_metadata()), events)
            completion = await _completion(call, first, whole)
            headers = routing_headers(await call.initial_metadata(), await call.trailing_metadata())
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from None
    return Response(completion, media_type="application/json", headers=headers)


async def _completion(call: grpc.aio.UnaryStreamCall, event: Any, whole: str) -> str:
    # Read to the end: the status is only known then, and the core's error after the completion wins.
    # A core that died after sending the whole completion (its connection lost: UNAVAILABLE without a
    # google.rpc.Status) does not take the answer with it: it is charged at most once (README "Crashes").
    completion: str | None = None
    try:
        while event is not grpc.aio.EOF:
            if event.WhichOneof("event") == whole:
                completion = getattr(event, whole)
            event = await call.read()
    except grpc.aio.AioRpcError as error:
        if completion is None or not connection_lost(error):
            raise
    if completion is None:
        raise ApiError(502, "The routing core ended the call without a completion.", code="bad_gateway")
    return completion


@asynccontextmanager
async def _cancel_on_disconnect(request: Request, call: grpc.aio.Call) -> AsyncIterator[None]:
    async with watch_disconnect(request.scope, request.receive, call) as disconnected:
        try:
            yield
        except asyncio.CancelledError:
            if not disconnected.is_set():
                raise
            # Our own cancellation of the call: answer 499 (nobody reads it) instead of crashing the task.
            raise ApiError(499, "The client closed the request.", code="client_closed_request") from None
