"""The shape of the core's handler-wrapping server interceptors (malformed.py, error_edge.py), written once.

A `UnaryInterceptor` wraps the handler of every unary-request method, unary-unary and unary-stream alike
(client-streaming handlers, server reflection's, pass untouched), around three hooks:

    deserializer(handler)           the request deserializer to use (default: the handler's own)
    before(request, context)        runs before the servicer; may end the RPC (default: nothing)
    failed(error, context, method)  what an exception of the servicer becomes (default: raised as it is)

A `grpc.aio.AbortError` (the RPC was ended already) and `asyncio.CancelledError` never reach `failed`.
Wrapped handlers are cached per method, so an RPC costs one dict lookup more; a stream costs one
generator step more per message.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, NoReturn

import grpc

__all__ = ["Deserializer", "UnaryInterceptor"]

Deserializer = Callable[[bytes], Any]


class UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-request handler in `before` and `failed` (module docstring); subclasses override them."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def deserializer(self, handler: grpc.RpcMethodHandler) -> Deserializer | None:
        """The request deserializer of the wrapped handler."""
        return handler.request_deserializer  # type: ignore[no-any-return]

    async def before(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Runs before the servicer is called."""

    async def failed(self, error: Exception, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
        """Called with what the servicer raised; ends the RPC (abort), or raises."""
        raise error

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
            cached = (handler, self._wrap(handler, method))
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        deserializer = self.deserializer(handler)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            # grpc.aio serves a streaming RPC only from an async generator function.
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    await self.before(request, context)
                    responses = inner_stream(request, context)
                    if inspect.isawaitable(responses):  # a handler that writes with context.write (health's Watch)
                        await responses
                        return
                    # Closing this generator closes the servicer's at once (its `finally` settles the request).
                    async with aclosing(responses):
                        async for response in responses:
                            yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await self.failed(error, context, method)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=deserializer, response_serializer=handler.response_serializer
            )
        inner_unary = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                await self.before(request, context)
                return await inner_unary(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self.failed(error, context, method)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=deserializer, response_serializer=handler.response_serializer
        )
