"""The one decoder of a failed RPC's google.rpc.Status (src/wire/status.py), as the facade and the clients read it."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.core.errors import InsufficientFunds, InvalidRequest, RateLimited
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.wire.metadata import STATUS_DETAILS
from atoma_proxy.wire.status import StatusDetails, decode_status


def _trailer(*details: object, message: str = "m") -> tuple[tuple[str, bytes], ...]:
    packed = []
    for detail in details:
        if isinstance(detail, any_pb2.Any):
            packed.append(detail)
        else:
            wrapped = any_pb2.Any()
            wrapped.Pack(detail)  # type: ignore[arg-type]
            packed.append(wrapped)
    status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=message, details=packed)
    return ((STATUS_DETAILS, status.SerializeToString()),)


def _retry(seconds: int, nanos: int) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos))


@pytest.mark.parametrize(
    "trailing",
    [
        None,
        (),
        (("x-request-id", "r-1"),),
        ((STATUS_DETAILS, b"\xff\xff not a Status"),),
        ((STATUS_DETAILS, "text, not bytes"),),
    ],
)
def test_no_status_reads_as_none(trailing: object) -> None:
    assert decode_status(trailing) is None  # type: ignore[arg-type]


def test_the_core_status_of_a_domain_error_reads_back_whole() -> None:
    error = InsufficientFunds(user_id=7, required=1200, available=3)
    status = decode_status(to_grpc_status(error, (("x-request-id", "r-1"),)).trailing_metadata)

    assert status is not None
    assert (status.message, status.reason, status.domain) == (error.message, "INSUFFICIENT_FUNDS", "atoma.network")
    assert dict(status.metadata) == {"required_micro_usd": "1200"}
    assert status.quota_violations == (("user:7", "balance cannot cover 1200 micro-USD"),)
    assert (status.retry_delay, status.retry_after, status.retry_after_ms, status.param) == (None, None, None, None)


def test_param_and_retry_delay() -> None:
    status = decode_status(to_grpc_status(InvalidRequest("bad", param="messages")).trailing_metadata)
    limited = decode_status(to_grpc_status(RateLimited("slow", retry_after=1.5)).trailing_metadata)

    assert status is not None and status.param == "messages"
    assert limited is not None and (limited.retry_after, limited.retry_after_ms) == (1.5, 1500)


@pytest.mark.parametrize(
    ("seconds", "nanos", "millis"),
    [(0, 1, 1), (2, 500_000_001, 2501), (2, 500_000_000, 2500), (0, 0, 0)],
)
def test_retry_after_ms_rounds_up(seconds: int, nanos: int, millis: int) -> None:
    status = decode_status(_trailer(_retry(seconds, nanos)))

    assert status is not None and status.retry_after_ms == millis


def test_the_first_detail_of_each_kind_that_decodes_wins() -> None:
    garbled = any_pb2.Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=b"\xff\xff\xff")
    status = decode_status(
        _trailer(
            garbled,
            error_details_pb2.ErrorInfo(reason="FIRST", domain="d"),
            error_details_pb2.ErrorInfo(reason="SECOND"),
            _retry(3, 0),
            _retry(9, 0),
        )
    )

    assert status is not None
    assert (status.reason, status.domain, status.retry_after) == ("FIRST", "d", 3.0)
    assert len(status.status.details) == 5  # the whole Status stays reachable


def test_a_status_without_error_info_has_no_reason() -> None:
    status = decode_status(_trailer(message="plain"))

    assert status == StatusDetails("plain", status=status_pb2.Status(code=14, message="plain"))
    assert (status.reason, status.domain, dict(status.metadata)) == (None, None, {})
