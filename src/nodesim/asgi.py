"""Raw ASGI helpers: the hot paths skip Starlette's Request/Response objects to stay fast.

Also the OpenAI error envelope (`RequestError`), which every failure of a /v1 endpoint uses:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

__all__ = [
    "JSON",
    "RAW_SEND_KEY",
    "SSE",
    "RequestError",
    "base_url",
    "dumps",
    "header",
    "injected_error",
    "read_body",
    "request_headers",
    "send_bytes",
    "send_error",
    "server_transport",
    "wait_disconnect",
]

JSON = b"application/json"
SSE = b"text/event-stream"

# Set by SimApp on every HTTP scope: the server's own `send`, before Starlette wraps it, so an
# injected drop can reach the connection's transport (see `server_transport`).
RAW_SEND_KEY = "atoma.nodesim.raw_send"


class RequestError(Exception):
    """An error answered with an OpenAI error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = list(headers)

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return orjson.dumps({"error": error})


def injected_error(status: int) -> RequestError:
    """The error a node answers when error_rate fires, shaped like OpenAI's for that status."""
    if status == 429:
        return RequestError(
            429,
            "Rate limit reached (simulated).",
            type="requests",
            code="rate_limit_exceeded",
            headers=[(b"retry-after", b"1")],
        )
    if status == 503:
        return RequestError(
            503,
            "The engine is currently overloaded (simulated).",
            type="server_error",
            headers=[(b"retry-after", b"1")],
        )
    if status >= 500:
        return RequestError(
            status, "The server had an error while processing your request (simulated).", type="server_error"
        )
    return RequestError(status, f"Injected error {status} (simulated).")


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client goes away (call only after the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def request_headers(scope: Scope) -> dict[str, str]:
    """Headers as {lowercased name: value}; repeated headers are joined with ", "."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (name lowercase), without building the whole dict."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def base_url(scope: Scope) -> str:
    """scheme://host[:port] the client used to reach us (Host header, else the server address)."""
    host = header(scope, b"host")
    if host:
        authority = host.decode("latin-1")
    else:
        server_host, port = scope.get("server") or ("127.0.0.1", 80)
        authority = f"[{server_host}]:{port}" if ":" in server_host else f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{authority}"


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: RequestError) -> None:
    await send_bytes(send, error.status, error.body(), JSON, error.headers)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def server_transport(scope: Scope) -> asyncio.BaseTransport | None:
    """The connection's transport, when the server exposes it (uvicorn's `send` is a bound method
    of its request cycle, which holds the transport). None under other servers or test transports."""
    raw_send = scope.get(RAW_SEND_KEY)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None
