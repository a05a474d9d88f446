"""Requests that are not valid protobuf end as INVALID_ARGUMENT with ErrorInfo, on every service.

grpc.aio deserializes a request before any handler runs; when that fails it ends the RPC with
UNKNOWN "Unexpected <class DecodeError>", which names a library class and tells the client neither
that the fault is theirs nor that retrying is useless. This interceptor wraps the deserializer of
every unary-request handler: a message that cannot be parsed becomes a `_Malformed` marker, and the
wrapped handler ends the RPC with INVALID_REQUEST (INVALID_ARGUMENT, google.rpc.ErrorInfo) before the
servicer is reached. Wrapped handlers are cached per method, so an RPC costs one dict lookup more.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import grpc

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.status import to_grpc_status

__all__ = ["MalformedRequestInterceptor"]

Deserializer = Callable[[bytes], Any]


class _Malformed:
    """What the wrapped deserializer returns for bytes that are not a valid request message."""


_MALFORMED = _Malformed()
_ERROR = InvalidRequest("The request is not a valid protobuf message of this method's request type.")


def _tolerant(deserialize: Deserializer | None) -> Deserializer | None:
    if deserialize is None:
        return None
    inner = deserialize

    def parse(data: bytes) -> Any:
        try:
            return inner(data)
        except Exception:  # DecodeError, or anything a custom deserializer raises on garbage
            return _MALFORMED

    return parse


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, _wrap(handler))
            self._wrapped[method] = cached
        return cached[1]


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is _MALFORMED:
                await context.abort_with_status(to_grpc_status(_ERROR))
            responses = inner_stream(request, context)
            if inspect.isawaitable(responses):  # a handler that writes with context.write (health's Watch)
                await responses
                return
            # Closing this generator closes the servicer's at once (its `finally` settles the request).
            async with aclosing(responses):
                async for response in responses:
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=deserializer, response_serializer=handler.response_serializer
        )
    inner_unary = handler.unary_unary

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is _MALFORMED:
            await context.abort_with_status(to_grpc_status(_ERROR))
        return await inner_unary(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=deserializer, response_serializer=handler.response_serializer
    )
