"""HTTP headers <-> gRPC metadata, the grpc-gateway way.

In: `Authorization`, `X-Request-Id` and `X-Atoma-Routing-Strategy` pass as metadata unchanged (the
core authenticates and routes, the facade never does); `Grpc-Metadata-<name>: v` becomes metadata
`<name>: v`; `Grpc-Timeout` ("10S", "500m", gRPC's wire format) sets the deadline, else
`settings.facade.request_timeout`, which also caps it: a client may shorten the operator's
deadline, not extend it.
Out: the routing facts and `x-ratelimit-*` the core sends as initial (or trailing) metadata become
response headers.
Header values that gRPC cannot carry are a 400 naming the header, not a 500 from grpc.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

import grpc

from atoma_proxy.facade.errors import ApiError, from_rpc_error, invalid_request

__all__ = ["RATE_LIMIT_PREFIX", "ROUTING_HEADERS", "call_metadata", "routing_headers", "rpc_error"]

# x-atoma-cost (micro-USD) is known at the end: a header of non-streamed responses only.
ROUTING_HEADERS = ("x-request-id", "x-atoma-node", "x-atoma-attempts", "x-atoma-cost")
RATE_LIMIT_PREFIX = "x-ratelimit-"

_FORWARDED = {
    b"authorization": "authorization",
    b"x-request-id": "x-request-id",
    b"x-atoma-routing-strategy": "x-atoma-routing-strategy",
}
_PREFIX = b"grpc-metadata-"
_VALID_KEY = re.compile(r"[0-9a-z_.\-]+")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
_SECONDS_PER_UNIT = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}

Metadata = tuple[tuple[str, str | bytes], ...]


def call_metadata(raw_headers: Iterable[tuple[bytes, bytes]], default_timeout: float) -> tuple[Metadata, float]:
    """The metadata and deadline (seconds) of the core call for these ASGI headers."""
    metadata: list[tuple[str, str | bytes]] = []
    timeout = default_timeout
    for name, value in raw_headers:
        key = _FORWARDED.get(name)
        if key is not None:
            metadata.append((key, _ascii_value(value, key)))
        elif name.startswith(_PREFIX):
            metadata.append(_gateway_metadata(name, value))
        elif name == b"grpc-timeout":
            timeout = min(_timeout(value), default_timeout)
    return tuple(metadata), timeout


def routing_headers(*metadatas: grpc.aio.Metadata | None) -> dict[str, str]:
    """The routing facts (`x-request-id`, `x-atoma-node`, `x-atoma-attempts`) and `x-ratelimit-*`, first found."""
    headers: dict[str, str] = {}
    for metadata in metadatas:
        if not metadata:
            continue
        for key, value in metadata:
            relayed = key in ROUTING_HEADERS or key.startswith(RATE_LIMIT_PREFIX)
            if relayed and key not in headers and isinstance(value, str):
                headers[key] = value
    return headers


def rpc_error(error: grpc.aio.AioRpcError) -> ApiError:
    """The HTTP error for a failed core call, with the routing facts the core had sent."""
    return from_rpc_error(error, routing_headers(error.initial_metadata(), error.trailing_metadata()))


def _gateway_metadata(name: bytes, value: bytes) -> tuple[str, str | bytes]:
    header = name.decode("latin-1")
    key = header[len(_PREFIX) :]
    # "grpc-" keys are reserved by gRPC itself.
    if not _VALID_KEY.fullmatch(key) or key.startswith("grpc-"):
        raise invalid_request(f"Header `{header}` does not name valid gRPC metadata.", param=header)
    if key.endswith("-bin"):
        try:
            return key, base64.b64decode(value, validate=True)
        except binascii.Error:
            raise invalid_request(f"Header `{header}` must be base64.", param=header) from None
    return key, _ascii_value(value, header)


def _ascii_value(value: bytes, header: str) -> str:
    # gRPC metadata values are printable ASCII (HTTP/2 header rules, no obs-text).
    if not _PRINTABLE.fullmatch(value):
        raise invalid_request(f"Header `{header}` must be printable ASCII.", param=header)
    return value.decode("ascii")


def _timeout(value: bytes) -> float:
    match = _TIMEOUT.fullmatch(value)
    if match is None:
        raise invalid_request("Header `Grpc-Timeout` must be 1-8 digits and a unit (H, M, S, m, u, n).", "grpc-timeout")
    return int(match[1]) * _SECONDS_PER_UNIT[match[2]]
