"""The routing core's errors: one family, each with a gRPC code and a stable reason.

    ProxyError                      (base; never raised itself)
    ├── InvalidRequest              INVALID_ARGUMENT     INVALID_REQUEST
    ├── Unauthenticated             UNAUTHENTICATED      MISSING_API_KEY, INVALID_API_KEY
    ├── ModelNotFound               NOT_FOUND            MODEL_NOT_FOUND
    ├── NoNodeAvailable             UNAVAILABLE          NO_NODE_AVAILABLE
    ├── NodeRejectedRequest         INVALID_ARGUMENT     NODE_REJECTED_REQUEST  (node answered 4xx)
    ├── NodeFailed                  UNAVAILABLE          NODE_FAILED            (5xx, 429, connection lost)
    ├── NodeTimeout                 DEADLINE_EXCEEDED    NODE_TIMEOUT
    └── InternalError               INTERNAL             INTERNAL

The reason is the contract: clients branch on `ErrorInfo.reason`, never on the message.
`status.py` turns these into google.rpc.Status with ErrorInfo (domain `atoma.network`); the
facade maps that once more to OpenAI's error envelope. Reasons are never renamed or reused.
"""

from __future__ import annotations

import grpc

ERROR_DOMAIN = "atoma.network"


class ProxyError(Exception):
    """A failure the proxy reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = metadata or {}


class InvalidRequest(ProxyError):
    """The request is malformed; `metadata["param"]` names the offending field when known."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, metadata={"param": param} if param else None)


class Unauthenticated(ProxyError):
    """No API key, or one that is unknown or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "INVALID_API_KEY"


class ModelNotFound(ProxyError):
    """No configured node serves the model."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "MODEL_NOT_FOUND"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or is not served.", metadata={"param": "model"})


class NoNodeAvailable(ProxyError):
    """Nodes serve the model but none is healthy right now."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "NO_NODE_AVAILABLE"


class NodeRejectedRequest(ProxyError):
    """The node refused the request as invalid (HTTP 4xx other than 408/429)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "NODE_REJECTED_REQUEST"


class NodeFailed(ProxyError):
    """The node failed: 5xx, 429, connection refused or lost."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "NODE_FAILED"


class NodeTimeout(ProxyError):
    """The node did not answer in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "NODE_TIMEOUT"


class InternalError(ProxyError):
    """A bug or an unexpected state inside the proxy."""


# Every reason the core can send, with its gRPC code: the documented contract (README "Errors").
REASONS: dict[str, grpc.StatusCode] = {
    "INVALID_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "MISSING_API_KEY": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_API_KEY": grpc.StatusCode.UNAUTHENTICATED,
    "MODEL_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "NO_NODE_AVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "NODE_REJECTED_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "NODE_FAILED": grpc.StatusCode.UNAVAILABLE,
    "NODE_TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}
