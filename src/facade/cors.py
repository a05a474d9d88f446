"""CORS for browser clients: allowed origins from `facade.cors_origins` (empty: CORS off).

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin is
answered here with 204, whatever the path; other responses to an allowed origin get
`Access-Control-Allow-Origin` and expose the headers clients read: `x-request-id`, `x-atoma-*`,
`x-ratelimit-*`, `retry-after`. Credentials travel in `Authorization`, never cookies, so
`Access-Control-Allow-Credentials` is not sent. `FacadeApp` applies it to every route, the two
inference routes answered ahead of the middleware stack included.
"""

from __future__ import annotations

from collections.abc import Iterable

from atoma_proxy.wire.metadata import (
    ATTEMPTS,
    AUTHORIZATION,
    COST,
    GRPC_TIMEOUT,
    NODE,
    RATE_LIMIT_HEADERS,
    REQUEST_ID,
    RETRY_AFTER,
    RETRY_AFTER_MS,
    ROUTING_STRATEGY,
)

__all__ = ["EXPOSED_HEADERS", "CorsPolicy"]

EXPOSED_HEADERS = (REQUEST_ID, NODE, ATTEMPTS, COST, *RATE_LIMIT_HEADERS, RETRY_AFTER, RETRY_AFTER_MS)
_METHODS = b"GET, POST, DELETE, OPTIONS"
_MAX_AGE = b"600"
_DEFAULT_ALLOWED = ", ".join((AUTHORIZATION, "content-type", REQUEST_ID, ROUTING_STRATEGY, GRPC_TIMEOUT)).encode()

Headers = list[tuple[bytes, bytes]]


class CorsPolicy:
    """Which origins may call the facade from a browser, and the headers they get."""

    def __init__(self, origins: Iterable[str]) -> None:
        allowed = [origin.rstrip("/") for origin in origins]
        self.any_origin = "*" in allowed
        self.origins = frozenset(o.encode("latin-1") for o in allowed if o != "*")
        self.enabled = self.any_origin or bool(self.origins)
        self._expose = ", ".join(EXPOSED_HEADERS).encode()

    def allowed_origin(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
        """The request's `Origin` if it is allowed, else None."""
        if not self.enabled:
            return None
        for name, value in headers:
            if name == b"origin":
                return value if self.any_origin or value in self.origins else None
        return None

    def preflight(self, origin: bytes, headers: Iterable[tuple[bytes, bytes]]) -> Headers | None:
        """The 204's headers when the request is a preflight, else None."""
        requested_method = requested_headers = None
        for name, value in headers:
            if name == b"access-control-request-method":
                requested_method = value
            elif name == b"access-control-request-headers":
                requested_headers = value
        if requested_method is None:
            return None
        return [
            *self.response_headers(origin),
            (b"access-control-allow-methods", _METHODS),
            # The SDKs send headers of their own (x-stainless-*): a request that asks for them gets them.
            (b"access-control-allow-headers", requested_headers or _DEFAULT_ALLOWED),
            (b"access-control-max-age", _MAX_AGE),
        ]

    def response_headers(self, origin: bytes) -> Headers:
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", self._expose),
            (b"vary", b"Origin"),
        ]
