"""The errors a RoutingClient raises: one family, chosen by gRPC code and ErrorInfo reason.

    RoutingError                    (base; raised itself for codes with no class below)
    ├── InvalidRequestError         INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
    ├── AuthenticationError         UNAUTHENTICATED, PERMISSION_DENIED
    ├── NotFoundError               NOT_FOUND
    ├── RateLimitError              RESOURCE_EXHAUSTED
    ├── InsufficientFundsError      reason INSUFFICIENT_FUNDS (sent with RESOURCE_EXHAUSTED)
    ├── UnavailableError            UNAVAILABLE
    ├── DeadlineExceededError       DEADLINE_EXCEEDED
    ├── RequestCancelledError       CANCELLED
    └── InternalError               INTERNAL, UNKNOWN, DATA_LOSS

The core sends a google.rpc.Status in the `grpc-status-details-bin` trailer whose google.rpc.ErrorInfo
carries a stable UPPER_SNAKE `reason` and string `metadata` (e.g. `{"param": "model"}`); branch on
`reason`, never on `message`. Failures that never reached the core (connection refused, a local
deadline) have no ErrorInfo: `reason` is None and the class follows the code alone.

InsufficientFundsError is deliberately not a RateLimitError although both travel as
RESOURCE_EXHAUSTED: the usual answer to a rate limit is to wait and retry, which never helps an
empty balance, so `except RateLimitError` retry loops must not catch it. A reason with its own
class wins over the code, so the class stays right if the core moves the reason to another code.

Cancelling the caller's own task is not an error of this family: it raises asyncio.CancelledError
as usual. RequestCancelledError means the server (or a proxy in between) cancelled the RPC.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from atoma_proxy.clients._models import RoutingInfo
from atoma_proxy.clients._responses import metadata_to_dict, routing_info
from atoma_proxy.wire.reasons import ErrorReason, reason_name
from atoma_proxy.wire.status import StatusDetails, decode_status


class RoutingError(Exception):
    """A failed RoutingService call.

    Attributes:
        code: the gRPC status code the RPC ended with.
        message: the status message, for people; not a contract.
        reason: ErrorInfo.reason (stable UPPER_SNAKE), or None when the status carried no ErrorInfo.
        domain: ErrorInfo.domain (`atoma.network` for the core), or None.
        metadata: ErrorInfo.metadata, e.g. `{"param": "messages"}`; empty when absent.
        retry_after: seconds from a google.rpc.RetryInfo detail, or None.
        routing: node, attempts and request id from the response metadata; fields are None when not sent.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        routing: RoutingInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.routing = routing or RoutingInfo()

    def __str__(self) -> str:
        label = self.code.name if self.reason is None else f"{self.code.name}/{self.reason}"
        return f"{label}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"


class InvalidRequestError(RoutingError):
    """The request was rejected as malformed, by the core or by the node; `metadata["param"]` names the field."""


class AuthenticationError(RoutingError):
    """The API key is missing, unknown or revoked, or does not allow this call."""


class NotFoundError(RoutingError):
    """The named thing (usually the model) does not exist."""


class RateLimitError(RoutingError):
    """Too many requests or tokens for now; retry later (`retry_after` when the server says when)."""


class InsufficientFundsError(RoutingError):
    """The account's balance cannot cover the request; retrying does not help until it is topped up."""


class UnavailableError(RoutingError):
    """No node could serve the request, a node failed, or the core itself is unreachable."""


class DeadlineExceededError(RoutingError):
    """The call's deadline passed (`reason` None) or the node timed out (`reason` NODE_TIMEOUT)."""


class RequestCancelledError(RoutingError):
    """The server side cancelled the RPC (e.g. the core shutting down)."""


class InternalError(RoutingError):
    """A bug or unexpected state in the core, or a response that breaks the RoutingService contract."""


_CLASS_BY_CODE: dict[grpc.StatusCode, type[RoutingError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: RequestCancelledError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}

# Reasons whose meaning is more specific than their status code.
_CLASS_BY_REASON: dict[str, type[RoutingError]] = {
    reason_name(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS): InsufficientFundsError,
}


def error_class(code: grpc.StatusCode, reason: str | None) -> type[RoutingError]:
    """The RoutingError subclass for a status code and ErrorInfo reason."""
    if reason is not None and reason in _CLASS_BY_REASON:
        return _CLASS_BY_REASON[reason]
    return _CLASS_BY_CODE.get(code, RoutingError)


def from_rpc_error(err: grpc.aio.AioRpcError) -> RoutingError:
    """Turn a failed call into the RoutingError subclass its code and ErrorInfo reason select."""
    code = err.code()
    trailing = err.trailing_metadata() or ()
    status = decode_status(trailing)
    message = (status.message if status is not None else None) or err.details() or code.name
    response_metadata = metadata_to_dict(err.initial_metadata() or ()) | metadata_to_dict(trailing)
    if status is None:
        status = StatusDetails(message)
    return error_class(code, status.reason)(
        message,
        code=code,
        reason=status.reason,
        domain=status.domain,
        metadata=status.metadata,
        retry_after=status.retry_after,
        routing=routing_info(None, response_metadata),
    )
