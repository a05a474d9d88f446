"""Domain errors as gRPC statuses: google.rpc.Status with a google.rpc.ErrorInfo detail."""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2, message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atoma_proxy.core.errors import ERROR_DOMAIN, ProxyError
from atoma_proxy.wire.metadata import RETRY_PUSHBACK_MS

__all__ = ["NO_RETRY", "quota_failure", "retry_info", "to_grpc_status"]

# A status message travels twice in the trailers (grpc-message and the Status detail) and gRPC refuses
# trailers over 8 KiB: a longer message would reach the client as RESOURCE_EXHAUSTED instead.
_MAX_MESSAGE = 1024
# The core's own UNAVAILABLE is an answer, not a lost connection: a facade's gRPC retry policy
# (src/facade/core_targets.py) must not try it on another core. A negative pushback says so (gRFC A6).
NO_RETRY = (RETRY_PUSHBACK_MS, "-1")


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, str | bytes], ...]):
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def to_grpc_status(
    error: ProxyError, trailing: Sequence[tuple[str, str]] = (), details: Sequence[message.Message] = ()
) -> grpc.Status:
    """The status a failed RPC ends with; clients read `reason` from its ErrorInfo.

    `details` are further google.rpc detail messages; a RetryInfo is added when `error.retry_after` is set,
    a QuotaFailure when `error.quota_violations` is not empty.
    """
    extra = list(details)
    if error.retry_after is not None:
        extra.append(retry_info(error.retry_after))
    if error.quota_violations:
        extra.append(quota_failure(error.quota_violations))
    message_text = error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE] + "..."
    packed = []
    for detail_message in (
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata),
        *extra,
    ):
        detail = any_pb2.Any()
        detail.Pack(detail_message)
        packed.append(detail)
    status = rpc_status.to_status(status_pb2.Status(code=error.code.value[0], message=message_text, details=packed))
    no_retry = (NO_RETRY,) if status.code is grpc.StatusCode.UNAVAILABLE else ()
    return _Status(status.code, status.details, (*status.trailing_metadata, *no_retry, *trailing))


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    """google.rpc.RetryInfo for a delay, rounded up to the millisecond (never 0 when waiting is needed)."""
    millis = max(0, math.ceil(seconds * 1000))
    delay = duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)
    return error_details_pb2.RetryInfo(retry_delay=delay)


def quota_failure(violations: Sequence[tuple[str, str]]) -> error_details_pb2.QuotaFailure:
    """google.rpc.QuotaFailure with one violation per (subject, description)."""
    return error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject=s, description=d) for s, d in violations]
    )
