"""Rate limits in front of the inference RPCs, as a grpc.aio server interceptor.

For ChatCompletion, Completion, CreateResponse, Embeddings, GenerateImages and LockNode it authenticates the caller with
the servicer's own `ApiKeyAuthenticator` (whose cache makes the servicer's lookup free),
estimates the request's tokens (estimate.py) and admits it, or ends the RPC with RATE_LIMITED,
the x-ratelimit-* headers as trailing metadata, before the servicer (and any node) is reached.
An admitted request's headers reach the servicer's initial metadata through
`context.extra_initial_metadata`. A caller that fails authentication is passed through: the
servicer refuses it with its usual error.

Afterwards the token charge is settled, in the background so no response waits for it:
- usage reported (the stream's `end` event, the embeddings response): charged exactly;
- the request was refused before generation (INVALID_ARGUMENT, NOT_FOUND, insufficient funds...):
  refunded to 0 tokens (the request itself still counts, as at OpenAI);
- otherwise (client gone, node failed mid-way, images): the estimate stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import InternalError, RateLimited
from atoma_proxy.core.ratelimit import estimate
from atoma_proxy.core.ratelimit.admission import Admission, RateLimiter
from atoma_proxy.core.ratelimit.context import extra_initial_metadata
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.core.telemetry.metrics import TOO_MANY
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = ["GUARDED_METHODS", "Authenticator", "RateLimitInterceptor"]

log = logging.getLogger(__name__)

# Failures that mean the request was refused before anything was generated (RESOURCE_EXHAUSTED:
# INSUFFICIENT_FUNDS, the ledger's refusal before any node is called).
_NOTHING_GENERATED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def _total(usage: common_pb2.Usage) -> int:
    return usage.total_tokens or usage.prompt_tokens + usage.completion_tokens


def _stream_end_usage(response: Any) -> int | None:
    if response.WhichOneof("event") == "end" and response.end.HasField("usage"):
        return _total(response.end.usage)
    return None


def _response_usage(response: Any) -> int | None:
    return _total(response.usage) if response.HasField("usage") else None


def _no_usage(response: Any) -> int | None:
    return None


def _locked_tokens(request: Any) -> int:
    """A confidential lock counts the tokens it holds (the proxy cannot read the request that follows)."""
    return request.max_num_tokens if request.HasField("max_num_tokens") else _DEFAULT_LOCKED_TOKENS


_DEFAULT_LOCKED_TOKENS = 4096  # confidential.default_max_num_tokens' default


@dataclass(frozen=True, slots=True)
class _Guard:
    estimate: Callable[[Any], int]
    used_tokens: Callable[[Any], int | None]  # from one response message; None when it does not say


_SERVICE = pb.DESCRIPTOR.services_by_name["RoutingService"].full_name
GUARDED_METHODS: dict[str, _Guard] = {
    f"/{_SERVICE}/ChatCompletion": _Guard(estimate.chat_completion_tokens, _stream_end_usage),
    f"/{_SERVICE}/Completion": _Guard(estimate.completion_tokens, _stream_end_usage),
    f"/{_SERVICE}/Embeddings": _Guard(estimate.embeddings_tokens, _response_usage),
    f"/{_SERVICE}/GenerateImages": _Guard(estimate.image_tokens, _no_usage),
    # Confidential requests are admitted at their lock, by the tokens it holds (README "Confidential inference").
    f"/{_SERVICE}/LockNode": _Guard(_locked_tokens, _no_usage),
    f"/{_SERVICE}/CreateResponse": _Guard(estimate.response_tokens, _stream_end_usage),
}


class Authenticator(Protocol):
    """Who is calling (`ApiKeyAuthenticator`: pass the servicer's own, so its cache serves both)."""

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal: ...


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, limiter: RateLimiter, authenticator: Authenticator) -> None:
        self._limiter = limiter
        self._auth = authenticator
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._settling: set[asyncio.Task[None]] = set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        guard = GUARDED_METHODS.get(method)
        if guard is None or handler is None:
            return handler
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler, guard))
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler, guard: _Guard) -> grpc.RpcMethodHandler:
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            # grpc.aio serves a streaming RPC only from an async generator function.
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                admission = await self._admit(request, context, guard)
                used: int | None = None
                try:
                    async for response in inner_stream(request, context):
                        if admission is not None and used is None:
                            used = guard.used_tokens(response)
                        yield response
                finally:
                    self._settle(admission, used, context)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        inner_unary = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            admission = await self._admit(request, context, guard)
            used: int | None = None
            try:
                response = await inner_unary(request, context)
                if admission is not None:
                    used = guard.used_tokens(response)
                return response
            finally:
                self._settle(admission, used, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext, guard: _Guard) -> Admission | None:
        try:
            principal = await self._auth.authenticate(context.invocation_metadata())
        except Exception:
            return None  # the servicer refuses (or fails) it with its own error
        try:
            admission = await self._limiter.admit(principal, guard.estimate(request))
        except RateLimited as refused:
            TOO_MANY.inc()
            await context.abort_with_status(to_grpc_status(refused, refused.headers))
        except Exception:
            log.exception("rate limiter failed")
            error = InternalError("The proxy failed unexpectedly; the error was logged.")
            await context.abort_with_status(to_grpc_status(error))
        extra_initial_metadata.set(tuple(admission.headers()))
        return admission

    def _settle(self, admission: Admission | None, used: int | None, context: grpc.aio.ServicerContext) -> None:
        if admission is None or not admission.settles_tokens:
            return
        if used is None:
            if context.code() not in _NOTHING_GENERATED:
                return  # the estimate stands
            used = 0
        if used == admission.estimated_tokens:
            return
        task = asyncio.get_running_loop().create_task(admission.settle(used))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def wait_settled(self) -> None:
        """Return when the settlements under way are done."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def aclose(self) -> None:
        """Finish the settlements under way, then close the limiter."""
        await self.wait_settled()
        await self._limiter.aclose()
