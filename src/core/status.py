"""Domain errors as gRPC statuses: google.rpc.Status with a google.rpc.ErrorInfo detail."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atoma_proxy.core.errors import ERROR_DOMAIN, ProxyError


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, str | bytes], ...]):
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def to_grpc_status(error: ProxyError, trailing: Sequence[tuple[str, str]] = ()) -> grpc.Status:
    """The status a failed RPC ends with; clients read `reason` from its ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = rpc_status.to_status(status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail]))
    return _Status(status.code, status.details, (*status.trailing_metadata, *trailing))
