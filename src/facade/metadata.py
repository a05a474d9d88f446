"""HTTP headers <-> gRPC metadata, the grpc-gateway way.

In: `Authorization`, `X-Request-Id` and `X-Atoma-Routing-Strategy` pass as metadata unchanged (the
core authenticates and routes, the facade never does); `Grpc-Metadata-<name>: v` becomes metadata
`<name>: v`, except for the keys only the facade sets: credentials come from `Authorization` alone
(`Grpc-Metadata-Authorization` is ignored: proxies, firewalls and log redaction watch `Authorization`),
and `x-atoma-client-address` is the HTTP client's address, added by `call_metadata`, never a client's
claim. Values are bounded (README "Limits"): gRPC refuses metadata over 8 KiB with RESOURCE_EXHAUSTED,
which clients would see as a retryable 429, so longer headers are a 400 here.
`Grpc-Timeout` ("10S", "500m", gRPC's wire format) sets the deadline, else
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
from atoma_proxy.wire.metadata import (
    ATTEMPTS,
    AUTHORIZATION,
    CLIENT_ADDRESS,
    COST,
    GRPC_TIMEOUT,
    NODE,
    NODE_MS,
    RATE_LIMIT_PREFIX,
    REQUEST_ID,
    ROUTING_STRATEGY,
)

__all__ = ["RATE_LIMIT_PREFIX", "ROUTING_HEADERS", "call_metadata", "routing_headers", "rpc_error"]

# x-atoma-cost (micro-USD) is known at the end: a header of non-streamed responses only.
# x-atoma-node-ms: the time the core waited on nodes, from which the facade's x-atoma-overhead-ms is computed.
ROUTING_HEADERS = (REQUEST_ID, NODE, ATTEMPTS, COST, NODE_MS)

_FORWARDED = {key.encode(): key for key in (AUTHORIZATION, REQUEST_ID, ROUTING_STRATEGY)}
_PREFIX = b"grpc-metadata-"
_TIMEOUT_HEADER = GRPC_TIMEOUT.encode()
# Metadata keys a `Grpc-Metadata-` header may not set (ignored): credentials and facts the facade vouches for.
_RESERVED = frozenset({AUTHORIZATION, CLIENT_ADDRESS})
# Bytes of one forwarded value, of a routing strategy name, and of all forwarded metadata together
# (gRPC's default limit is 8 KiB, its own headers and the status details need the rest).
MAX_HEADER_BYTES = 4096
MAX_STRATEGY_BYTES = 64
MAX_METADATA_BYTES = 6144
_LIMITS = {ROUTING_STRATEGY: MAX_STRATEGY_BYTES}
_VALID_KEY = re.compile(r"[0-9a-z_.\-]+")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
_SECONDS_PER_UNIT = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}

Metadata = tuple[tuple[str, str | bytes], ...]


def call_metadata(
    raw_headers: Iterable[tuple[bytes, bytes]], default_timeout: float, client_address: str | None = None
) -> tuple[Metadata, float]:
    """The metadata and deadline (seconds) of the core call for these ASGI headers.

    `client_address` (the HTTP client's, as the server saw it) goes to the core as `x-atoma-client-address`.
    """
    metadata: list[tuple[str, str | bytes]] = []
    timeout = default_timeout
    size = 0
    for name, value in raw_headers:
        key = _FORWARDED.get(name)
        if key is not None:
            _check_size(value, key, _LIMITS.get(key, MAX_HEADER_BYTES))
            metadata.append((key, _ascii_value(value, key)))
        elif name.startswith(_PREFIX):
            _check_size(value, name.decode("latin-1"), MAX_HEADER_BYTES)
            entry = _gateway_metadata(name, value)
            if entry is None:
                continue
            metadata.append(entry)
        elif name == _TIMEOUT_HEADER:
            timeout = min(_timeout(value), default_timeout)
            continue
        else:
            continue
        size += len(name) + len(value)
        if size > MAX_METADATA_BYTES:
            raise invalid_request(
                f"The forwarded headers (`Authorization`, `X-Request-Id`, `X-Atoma-Routing-Strategy`, "
                f"`Grpc-Metadata-*`) exceed {MAX_METADATA_BYTES} bytes together.",
                code="header_too_large",
            )
    if client_address:
        metadata.append((CLIENT_ADDRESS, client_address))
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


def _check_size(value: bytes, header: str, limit: int) -> None:
    if len(value) > limit:
        raise invalid_request(
            f"Header `{header[:64]}` is too long: at most {limit} bytes.", param=header[:64], code="header_too_large"
        )


def _gateway_metadata(name: bytes, value: bytes) -> tuple[str, str | bytes] | None:
    """The metadata of a `Grpc-Metadata-` header; None for a key only the facade sets (ignored)."""
    header = name.decode("latin-1")
    key = header[len(_PREFIX) :]
    # "grpc-" keys are reserved by gRPC itself.
    if not _VALID_KEY.fullmatch(key) or key.startswith("grpc-"):
        raise invalid_request(f"Header `{header[:64]}` does not name valid gRPC metadata.", param=header[:64])
    if key in _RESERVED:
        return None
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
        raise invalid_request("Header `Grpc-Timeout` must be 1-8 digits and a unit (H, M, S, m, u, n).", GRPC_TIMEOUT)
    return int(match[1]) * _SECONDS_PER_UNIT[match[2]]
