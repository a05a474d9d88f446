"""The routing core's errors: one family, each with a gRPC code and a stable reason.

    ProxyError                      (base; never raised itself)
    ├── InvalidRequest              INVALID_ARGUMENT     INVALID_REQUEST
    ├── Unauthenticated             UNAUTHENTICATED      MISSING_API_KEY, INVALID_API_KEY, MISSING_CREDENTIALS,
    │                                                    INVALID_CREDENTIALS, INVALID_TOKEN, TOKEN_EXPIRED,
    │                                                    TOKEN_REVOKED
    ├── PermissionDenied            PERMISSION_DENIED    PERMISSION_DENIED; Sui: WALLET_CHALLENGE_EXPIRED,
    │                                                    INVALID_WALLET_PROOF, WALLET_NOT_LINKED, DEPOSIT_*,
    │                                                    INVALID_NODE_SIGNATURE, NODE_REGISTRATION_REPLAYED
    ├── AlreadyExists               ALREADY_EXISTS       EMAIL_TAKEN, IDEMPOTENCY_KEY_REUSED, NODE_ALREADY_EXISTS,
    │                                                    WALLET_ADDRESS_TAKEN, DEPOSIT_ALREADY_CLAIMED
    ├── NotFound                    NOT_FOUND            USER_NOT_FOUND, API_KEY_NOT_FOUND, NODE_NOT_FOUND,
    │                                                    WALLET_CHALLENGE_NOT_FOUND, DEPOSIT_NOT_FOUND
    ├── FeatureDisabled             UNIMPLEMENTED        ACCOUNTS_DISABLED, ADMIN_DISABLED, SUI_DISABLED
    ├── ModelNotFound               NOT_FOUND            MODEL_NOT_FOUND
    ├── NoNodeAvailable             UNAVAILABLE          NO_NODE_AVAILABLE
    ├── DatabaseUnavailable         UNAVAILABLE          DATABASE_UNAVAILABLE   (+ RetryInfo; nothing was served)
    ├── NodeRejectedRequest         INVALID_ARGUMENT     NODE_REJECTED_REQUEST  (node answered 4xx)
    ├── NodeFailed                  UNAVAILABLE          NODE_FAILED            (5xx, 429, connection lost,
    │                                                    a bad Atoma signature), SUI_RPC_FAILED,
    │                                                    STACK_PURCHASE_FAILED
    ├── NodeTimeout                 DEADLINE_EXCEEDED    NODE_TIMEOUT
    ├── RateLimited                 RESOURCE_EXHAUSTED   RATE_LIMITED           (+ RetryInfo when retrying helps)
    ├── InsufficientFunds           RESOURCE_EXHAUSTED   INSUFFICIENT_FUNDS     (+ QuotaFailure; before any node call)
    └── InternalError               INTERNAL             INTERNAL

The reason is the contract: clients branch on `ErrorInfo.reason`, never on the message. Every reason
is a value of the ErrorReason proto enum (protos/atoma/routing/v1/error_reason.proto), sent as its
name without the `ERROR_REASON_` prefix; the classes here take their reasons from it (`reason_name`).
`status.py` turns these into google.rpc.Status with ErrorInfo (domain `atoma.network`); the error
edge (error_edge.py) does it for every service, and the facade maps that once more to OpenAI's error
envelope. Reasons are never renamed or reused.
"""

from __future__ import annotations

import grpc

from atoma_proxy.wire.reasons import ErrorReason, reason_name

__all__ = [
    "ERROR_DOMAIN",
    "QUOTE_LIMIT",
    "REASONS",
    "AlreadyExists",
    "DatabaseUnavailable",
    "FeatureDisabled",
    "InsufficientFunds",
    "InternalError",
    "InvalidRequest",
    "ModelNotFound",
    "NoNodeAvailable",
    "NodeFailed",
    "NodeRejectedRequest",
    "NodeTimeout",
    "NotFound",
    "PermissionDenied",
    "ProxyError",
    "RateLimited",
    "Unauthenticated",
    "excerpt",
]

ERROR_DOMAIN = "atoma.network"
# Client text quoted in an error message is cut to this many characters: a message travels in gRPC
# trailers (8 KiB at most, or the client sees RESOURCE_EXHAUSTED, which SDKs retry), and echoing a
# 10,000-character name helps nobody.
QUOTE_LIMIT = 64


def excerpt(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` for quoting in a message: whole when short, else its first `limit` characters and "..."."""
    return text if len(text) <= limit else f"{text[:limit]}..."


class ProxyError(Exception):
    """A failure the proxy reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = reason_name(ErrorReason.ERROR_REASON_INTERNAL)
    # Seconds after which a retry may succeed; status.py sends it as a google.rpc.RetryInfo detail.
    retry_after: float | None = None
    # (subject, description) pairs; status.py sends them as a google.rpc.QuotaFailure detail.
    quota_violations: tuple[tuple[str, str], ...] = ()
    # Metadata pairs the failed RPC sends in its trailers besides the status (RateLimited: x-ratelimit-*).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = metadata or {}


class InvalidRequest(ProxyError):
    """The request is malformed; `metadata["param"]` names the offending field when known."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = reason_name(ErrorReason.ERROR_REASON_INVALID_REQUEST)

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, metadata={"param": param} if param else None)


class Unauthenticated(ProxyError):
    """No API key, or one that is unknown or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = reason_name(ErrorReason.ERROR_REASON_INVALID_API_KEY)


class PermissionDenied(ProxyError):
    """The caller is authenticated but may not do this (e.g. an API key where an access token is needed)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = reason_name(ErrorReason.ERROR_REASON_PERMISSION_DENIED)


class AlreadyExists(ProxyError):
    """What the request would create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = reason_name(ErrorReason.ERROR_REASON_EMAIL_TAKEN)


class NotFound(ProxyError):
    """A user, key or node named by the request does not exist (or is not the caller's); `reason` says which."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, message: str, *, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)


class FeatureDisabled(ProxyError):
    """A service the configuration leaves off (no `accounts.jwt_secret`, no `accounts.admin_token`)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = reason_name(ErrorReason.ERROR_REASON_ACCOUNTS_DISABLED)


class ModelNotFound(ProxyError):
    """No configured node serves the model."""

    code = grpc.StatusCode.NOT_FOUND
    reason = reason_name(ErrorReason.ERROR_REASON_MODEL_NOT_FOUND)

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{excerpt(model)}` does not exist or is not served.", metadata={"param": "model"})


class NoNodeAvailable(ProxyError):
    """Nodes serve the model but none is healthy right now."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(ErrorReason.ERROR_REASON_NO_NODE_AVAILABLE)


class DatabaseUnavailable(ProxyError):
    """The database cannot be reached (or did not answer in time): nothing was served, retry shortly."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(ErrorReason.ERROR_REASON_DATABASE_UNAVAILABLE)
    retry_after = 1.0

    def __init__(self) -> None:
        super().__init__("The proxy's database is unavailable right now; nothing was done. Retry shortly.")


class NodeRejectedRequest(ProxyError):
    """The node refused the request as invalid (HTTP 4xx other than 408/429)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = reason_name(ErrorReason.ERROR_REASON_NODE_REJECTED_REQUEST)


class NodeFailed(ProxyError):
    """The node failed: 5xx, 429, connection refused or lost."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(ErrorReason.ERROR_REASON_NODE_FAILED)


class NodeTimeout(ProxyError):
    """The node did not answer in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = reason_name(ErrorReason.ERROR_REASON_NODE_TIMEOUT)


class RateLimited(ProxyError):
    """Over a requests- or tokens-per-minute limit of the API key or its user.

    `headers` are the `x-ratelimit-*` pairs sent as trailing metadata; `retry_after` is None when
    waiting cannot help (a single request larger than the tokens-per-minute limit).
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = reason_name(ErrorReason.ERROR_REASON_RATE_LIMITED)

    def __init__(
        self, message: str, *, retry_after: float | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers


class InsufficientFunds(ProxyError):
    """The balance (or stack) cannot cover the most this request may cost; no node was called."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = reason_name(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS)

    def __init__(self, *, user_id: int, required: int, available: int | None = None) -> None:
        shown = "" if available is None else f" of the {available} available"
        super().__init__(
            f"Insufficient funds: this request may cost up to {required} micro-USD{shown}. Add credit and retry.",
            metadata={"required_micro_usd": str(required)},
        )
        self.quota_violations = ((f"user:{user_id}", f"balance cannot cover {required} micro-USD"),)


class InternalError(ProxyError):
    """A bug or an unexpected state inside the proxy."""


# Every reason the core can send, with its gRPC code: the documented contract (README "Errors"), one entry
# per ErrorReason value (tests/core/test_error_reasons.py holds the two together).
REASONS: dict[str, grpc.StatusCode] = {
    reason_name(value): code
    for value, code in (
        (ErrorReason.ERROR_REASON_INVALID_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_MISSING_API_KEY, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_INVALID_API_KEY, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_MISSING_CREDENTIALS, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_INVALID_CREDENTIALS, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_INVALID_TOKEN, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_TOKEN_EXPIRED, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_TOKEN_REVOKED, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorReason.ERROR_REASON_PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_EMAIL_TAKEN, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.ERROR_REASON_NODE_ALREADY_EXISTS, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.ERROR_REASON_USER_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_API_KEY_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_NODE_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_ACCOUNTS_DISABLED, grpc.StatusCode.UNIMPLEMENTED),
        (ErrorReason.ERROR_REASON_ADMIN_DISABLED, grpc.StatusCode.UNIMPLEMENTED),
        (ErrorReason.ERROR_REASON_MODEL_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_NO_NODE_AVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_DATABASE_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_NODE_REJECTED_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_NODE_FAILED, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_NODE_TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ErrorReason.ERROR_REASON_RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorReason.ERROR_REASON_INTERNAL, grpc.StatusCode.INTERNAL),
        (ErrorReason.ERROR_REASON_WALLET_CHALLENGE_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_WALLET_CHALLENGE_EXPIRED, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_INVALID_WALLET_PROOF, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_WALLET_ADDRESS_TAKEN, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.ERROR_REASON_WALLET_NOT_LINKED, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_DEPOSIT_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_DEPOSIT_TRANSACTION_FAILED, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_DEPOSIT_NOT_A_TRANSFER, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_DEPOSIT_SENDER_MISMATCH, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_DEPOSIT_RECEIVER_MISMATCH, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_DEPOSIT_ALREADY_CLAIMED, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.ERROR_REASON_INVALID_NODE_SIGNATURE, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_NODE_REGISTRATION_REPLAYED, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_SUI_DISABLED, grpc.StatusCode.UNIMPLEMENTED),
        (ErrorReason.ERROR_REASON_SUI_RPC_FAILED, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_STACK_PURCHASE_FAILED, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_STALE_NODE_KEY, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.ERROR_REASON_LOCK_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorReason.ERROR_REASON_LOCK_ALREADY_USED, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.ERROR_REASON_LOCK_EXPIRED, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.ERROR_REASON_LOCK_OF_ANOTHER_USER, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_LOCK_MISMATCH, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_PLAINTEXT_HASH_MISMATCH, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_CONFIDENTIAL_DECRYPTION_FAILED, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_INVALID_PLAINTEXT, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_INVALID_CONFIDENTIAL_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.ERROR_REASON_NO_CONFIDENTIAL_NODE, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_NODE_SIGNATURE_INVALID, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_NODE_STREAM_INVALID, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.ERROR_REASON_KEY_SIGNATURE_INVALID, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_ATTESTATION_INVALID, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_ROTATION_NOT_NEWER, grpc.StatusCode.PERMISSION_DENIED),
        (ErrorReason.ERROR_REASON_NOT_A_CONFIDENTIAL_NODE, grpc.StatusCode.PERMISSION_DENIED),
    )
}
