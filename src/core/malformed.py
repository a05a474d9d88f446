"""Requests that are not valid protobuf end as INVALID_ARGUMENT with ErrorInfo, on every service.

grpc.aio deserializes a request before any handler runs; when that fails it ends the RPC with
UNKNOWN "Unexpected <class DecodeError>", which names a library class and tells the client neither
that the fault is theirs nor that retrying is useless. This interceptor wraps the deserializer of
every unary-request handler: a message that cannot be parsed becomes a `_Malformed` marker, and the
wrapped handler ends the RPC with INVALID_REQUEST (INVALID_ARGUMENT, google.rpc.ErrorInfo) before the
servicer is reached. Wrapped handlers are cached per method, so an RPC costs one dict lookup more.
"""

from __future__ import annotations

from typing import Any

import grpc

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.core.unary_interceptor import Deserializer, UnaryInterceptor

__all__ = ["MalformedRequestInterceptor"]


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


class MalformedRequestInterceptor(UnaryInterceptor):
    def deserializer(self, handler: grpc.RpcMethodHandler) -> Deserializer | None:
        return _tolerant(handler.request_deserializer)

    async def before(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        if request is _MALFORMED:
            await context.abort_with_status(to_grpc_status(_ERROR))
