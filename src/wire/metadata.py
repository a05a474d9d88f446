"""The names of the gRPC metadata and HTTP headers the facade, the clients and the core exchange.

gRPC metadata keys are lower case; the facade forwards the request ones from HTTP headers of the same
name and relays the response ones as HTTP headers of the same name (facade/metadata.py), so one name
serves both. README "Using it", "Rate limits" and "Metering" describe the values.
"""

from __future__ import annotations

__all__ = [
    "ATTEMPTS",
    "AUTHORIZATION",
    "CLIENT_ADDRESS",
    "COST",
    "GRPC_TIMEOUT",
    "NODE",
    "NODE_MS",
    "OVERHEAD_MS",
    "RATE_LIMIT_HEADERS",
    "RATE_LIMIT_PREFIX",
    "REQUEST_ID",
    "RETRY_AFTER",
    "RETRY_AFTER_MS",
    "RETRY_PUSHBACK_MS",
    "ROUTING_STRATEGY",
    "STATUS_DETAILS",
    "TRACEPARENT",
]

# Request metadata: what a caller (or the facade on its behalf) sends.
AUTHORIZATION = "authorization"  # "Bearer <API key | access token | admin token>"
REQUEST_ID = "x-request-id"  # also answered: the core's id of an inference request
ROUTING_STRATEGY = "x-atoma-routing-strategy"  # a per-request node selection strategy
CLIENT_ADDRESS = "x-atoma-client-address"  # the facade's HTTP client, trusted from `trusted_proxies` only
TRACEPARENT = "traceparent"  # W3C trace context
GRPC_TIMEOUT = "grpc-timeout"  # the deadline as an HTTP header of the facade, in gRPC's wire format ("10S")

# Response metadata (initial or trailing) of inference RPCs: the routing facts.
NODE = "x-atoma-node"  # the node that served the request
ATTEMPTS = "x-atoma-attempts"  # nodes tried, 1 when the first answered
COST = "x-atoma-cost"  # micro-USD charged, known at the end (trailing metadata)
NODE_MS = "x-atoma-node-ms"  # milliseconds the core waited on nodes
OVERHEAD_MS = "x-atoma-overhead-ms"  # milliseconds the proxy itself added

# Rate limits (OpenAI's names): limit, remaining and reset, of requests and of tokens per minute.
RATE_LIMIT_PREFIX = "x-ratelimit-"
RATE_LIMIT_HEADERS = tuple(
    f"{RATE_LIMIT_PREFIX}{field}-{kind}" for kind in ("requests", "tokens") for field in ("limit", "remaining", "reset")
)

# The status of a failed RPC: a google.rpc.Status (status.py decodes it) and gRFC A6's retry pushback.
STATUS_DETAILS = "grpc-status-details-bin"
RETRY_PUSHBACK_MS = "grpc-retry-pushback-ms"  # "-1": do not retry on another server

# HTTP only: the facade's rendering of a google.rpc.RetryInfo.
RETRY_AFTER = "retry-after"  # whole seconds, rounded up
RETRY_AFTER_MS = "retry-after-ms"
