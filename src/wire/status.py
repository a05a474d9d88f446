"""Reading the google.rpc.Status of a failed RPC, in one place for the facade and the clients.

The core ends a failed RPC with a google.rpc.Status serialized in the `grpc-status-details-bin` trailer:
its message, a google.rpc.ErrorInfo (the stable `reason`, domain `atoma.network`, string `metadata` such as
`{"param": "model"}`), and sometimes a RetryInfo (when a retry may succeed) and a QuotaFailure:

    details = decode_status(error.trailing_metadata())
    if details is None:   # no Status: the failure came from gRPC itself (core unreachable, deadline...)
        ...
    else:
        details.reason, details.param, details.retry_after

grpc_status's own `from_call()` wants a live call (an AioRpcError is not one) and raises when the code or
message disagree with the trailer; this never raises: a garbled trailer reads as no Status, a garbled detail
as absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf import duration_pb2, message
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.wire.metadata import STATUS_DETAILS

__all__ = ["StatusDetails", "decode_status"]

Metadata = Iterable[tuple[str, str | bytes]]
Detail = TypeVar("Detail", bound=message.Message)


@dataclass(frozen=True, slots=True)
class StatusDetails:
    """What a google.rpc.Status says; each detail is None (or empty) when the Status did not carry it.

    Attributes:
        message: the status message, for people; not a contract.
        reason: ErrorInfo.reason (stable UPPER_SNAKE, an ErrorReason of wire/reasons.py from the core).
        domain: ErrorInfo.domain (`atoma.network` for the core).
        metadata: ErrorInfo.metadata.
        retry_delay: RetryInfo.retry_delay, exactly as sent.
        quota_violations: QuotaFailure's (subject, description) pairs.
        status: the decoded google.rpc.Status itself, for details not read here.
    """

    message: str
    reason: str | None = None
    domain: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    retry_delay: duration_pb2.Duration | None = None
    quota_violations: tuple[tuple[str, str], ...] = ()
    status: status_pb2.Status = field(default_factory=status_pb2.Status)

    @property
    def param(self) -> str | None:
        """The offending request field (`metadata["param"]`), when the core named one."""
        return self.metadata.get("param") or None

    @property
    def retry_after(self) -> float | None:
        """Seconds after which a retry may succeed (RetryInfo), or None."""
        return None if self.retry_delay is None else self.retry_delay.ToTimedelta().total_seconds()

    @property
    def retry_after_ms(self) -> int | None:
        """RetryInfo's delay in milliseconds, rounded up (never 0 for a delay under a millisecond), or None."""
        if self.retry_delay is None:
            return None
        return self.retry_delay.seconds * 1000 - (-self.retry_delay.nanos // 1_000_000)


def decode_status(trailing: Metadata | None) -> StatusDetails | None:
    """The Status in the `grpc-status-details-bin` entry of `trailing`, or None when there is none (or garbage)."""
    status = _status(trailing or ())
    if status is None:
        return None
    error_info = _first(status, error_details_pb2.ErrorInfo)
    retry_info = _first(status, error_details_pb2.RetryInfo)
    quota = _first(status, error_details_pb2.QuotaFailure)
    return StatusDetails(
        message=status.message,
        reason=(error_info.reason or None) if error_info is not None else None,
        domain=(error_info.domain or None) if error_info is not None else None,
        metadata=dict(error_info.metadata) if error_info is not None else {},
        retry_delay=retry_info.retry_delay if retry_info is not None else None,
        quota_violations=tuple((v.subject, v.description) for v in quota.violations) if quota is not None else (),
        status=status,
    )


def _status(trailing: Metadata) -> status_pb2.Status | None:
    for key, value in trailing:
        if key == STATUS_DETAILS and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the error itself
                return None
    return None


def _first(status: status_pb2.Status, kind: type[Detail]) -> Detail | None:
    """The first detail of type `kind` that decodes."""
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            decoded = kind()
            try:
                detail.Unpack(decoded)
            except Exception:
                continue
            return decoded
    return None
