"""HTTP to inference nodes: one pooled keep-alive client, timeouts, errors as domain errors.

`NodeTransport` is the seam tests and future transports (signed Sui requests, confidential
relays) plug into. `HttpNodeTransport` is the real one over httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import httpx
import orjson

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.errors import NodeFailed, NodeRejectedRequest, NodeTimeout, ProxyError
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.sse import iter_sse_batches

_JSON = "application/json"
_MAX_ERROR_BODY = 64 * 1024
_DONE = b"[DONE]"
_DRAIN_GRACE = 1.0


class NodeTransport(Protocol):
    async def post(self, node: Node, path: str, body: bytes, *, request_id: str) -> bytes:
        """POST a JSON body; the response body on 2xx, a ProxyError otherwise."""
        ...

    def stream(self, node: Node, path: str, body: bytes, *, request_id: str) -> AsyncIterator[list[bytes]]:
        """POST a JSON body and yield the SSE data payloads of the answer, in batches of those that
        arrived together (never empty; the last one ends with [DONE]); closing it aborts the request."""
        ...

    async def probe(self, node: Node) -> bool:
        """Whether the node's health endpoint answers 2xx."""
        ...

    async def aclose(self) -> None: ...


class MetricsTransport(Protocol):
    async def fetch_metrics(self, node: Node) -> str | None:
        """The node's Prometheus /metrics text; None when it has none or does not answer."""
        ...


class NodeUnreachable(NodeFailed):
    """Nothing answered at the node's address (connection refused, DNS): it is down, not just failing."""


class HttpNodeTransport:
    def __init__(self, settings: CoreSettings) -> None:
        self._health_timeout = settings.health_timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.node_connect_timeout,
                read=settings.node_read_timeout,
                write=settings.node_connect_timeout,
                pool=settings.node_connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=settings.node_max_connections,
                max_keepalive_connections=settings.node_max_connections,
                keepalive_expiry=30,
            ),
            follow_redirects=False,
        )

    @staticmethod
    def _headers(node: Node, request_id: str) -> dict[str, str]:
        headers = {"content-type": _JSON, "accept": _JSON, "x-request-id": request_id}
        if node.api_key:
            headers["authorization"] = f"Bearer {node.api_key}"
        return headers

    async def post(self, node: Node, path: str, body: bytes, *, request_id: str) -> bytes:
        try:
            response = await self._client.post(node.url + path, content=body, headers=self._headers(node, request_id))
        except httpx.HTTPError as exc:
            raise _transport_error(node, exc) from exc
        if response.status_code >= 300:
            raise _status_error(node, response.status_code, response.content[:_MAX_ERROR_BODY])
        return response.content

    async def stream(self, node: Node, path: str, body: bytes, *, request_id: str) -> AsyncIterator[list[bytes]]:
        headers = self._headers(node, request_id)
        headers["accept"] = "text/event-stream"
        try:
            async with self._client.stream("POST", node.url + path, content=body, headers=headers) as response:
                if response.status_code >= 300:
                    raise _status_error(node, response.status_code, await _read_bounded(response))
                events = iter_sse_batches(response.aiter_raw())
                async for batch in events:
                    if _DONE in batch:
                        await _drain(events)
                    yield batch
        except httpx.HTTPError as exc:
            raise _transport_error(node, exc) from exc

    async def probe(self, node: Node) -> bool:
        try:
            response = await self._client.get(node.url + "/health", timeout=self._health_timeout)
        except httpx.HTTPError:
            return False
        return response.is_success

    async def fetch_metrics(self, node: Node) -> str | None:
        try:
            response = await self._client.get(node.url + "/metrics", timeout=self._health_timeout)
        except httpx.HTTPError:
            return None
        return response.text if response.is_success else None

    async def aclose(self) -> None:
        await self._client.aclose()


async def _drain(events: AsyncIterator[list[bytes]]) -> None:
    """Read the body's end after [DONE] so the keep-alive connection goes back to the pool.

    Closing a response with unread bytes (here only the terminating chunk) makes httpcore drop
    the connection, and the next stream pays a new TCP handshake. A node that keeps the body
    open after [DONE] gets a short grace, then the connection is dropped as before.
    """
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(_DRAIN_GRACE):
            async for _ in events:
                pass


async def _read_bounded(response: httpx.Response) -> bytes:
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= _MAX_ERROR_BODY:
            break
    return body[:_MAX_ERROR_BODY]


def _transport_error(node: Node, exc: httpx.HTTPError) -> ProxyError:
    if isinstance(exc, httpx.TimeoutException):
        return NodeTimeout(f"Node {node.id} did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError):
        return NodeUnreachable(f"Node {node.id} is unreachable: {exc}".rstrip(": "))
    return NodeFailed(f"Node {node.id} failed: {type(exc).__name__}: {exc}".rstrip(": "))


def _status_error(node: Node, status: int, body: bytes) -> ProxyError:
    """Keep the node's own message: a client needs to know why its request was refused."""
    message = _error_message(body) or f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return NodeFailed(f"Node {node.id} answered {status}: {message}", metadata={"node_status": str(status)})
    return NodeRejectedRequest(message, metadata={"node_status": str(status)})


def _error_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(parsed.get("detail"), str):
            return parsed["detail"]
    return body.decode("utf-8", "replace").strip()[:500]
