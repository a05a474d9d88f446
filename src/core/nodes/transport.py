"""HTTP to inference nodes: pooled keep-alive connections, timeouts, errors as domain errors.

`NodeTransport` is the seam tests and other transports plug into. `HttpNodeTransport` is the real
one: inference over `http1.Http1Client`, probes and metrics scrapes over httpx. Nodes that speak a
protocol beyond plain OpenAI HTTP (`node.protocol`; the Atoma protocol's signatures, see
sui/atoma_transport.py) are spoken to through the `NodeProtocol` registered for it, which prepares
each request (its body and headers) and checks each answer and stream chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.errors import NodeFailed, NodeTimeout, ProxyError
from atoma_proxy.core.nodes.http1 import ConnectFailed, Http1Client, Response
from atoma_proxy.core.nodes.node_errors import node_error
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.sse import EventTooLarge, iter_sse_batches
from atoma_proxy.wire.metadata import AUTHORIZATION, REQUEST_ID, TRACEPARENT

__all__ = [
    "MAX_METRICS_BYTES",
    "HttpNodeTransport",
    "NodeProtocol",
    "NodeTransport",
    "NodeUnreachable",
    "RequestContext",
]

_JSON = "application/json"
_REQUEST_ID_LINE = f"{REQUEST_ID}: ".encode()
_TRACEPARENT_LINE = f"{TRACEPARENT}: ".encode()
_MAX_ERROR_BODY = 64 * 1024
_DONE = b"[DONE]"
_DRAIN_GRACE = 1.0
MAX_METRICS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who a request is for, as Atoma-protocol nodes are told (X-User-Id, X-Stack-Small-Id, X-Tx-Digest).

    Set by the servicer (the user) and the ledger (the stack paying, and for a stack bought on chain
    its transaction digest); only the Atoma protocol transport sends it. Empty fields are not sent."""

    user_id: str = ""
    stack_small_id: int | None = None
    tx_digest: str = ""


class NodeTransport(Protocol):
    async def post(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> bytes:
        """POST a JSON body; the response body on 2xx, a ProxyError otherwise.

        `traceparent` (W3C), passed only when the request is traced, goes to the node as that header;
        `context`, passed only when the request has one, is for transports that tell nodes (Atoma's)."""
        ...

    def stream(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> AsyncIterator[list[bytes]]:
        """POST a JSON body and yield the SSE data payloads of the answer, in batches of those that
        arrived together (never empty; the last one ends with [DONE]); closing it aborts the request."""
        ...

    async def probe(self, node: Node) -> bool:
        """Whether the node's health endpoint answers 2xx."""
        ...

    async def aclose(self) -> None: ...


class NodeProtocol(Protocol):
    """What a node protocol adds to plain OpenAI HTTP, for the nodes whose `protocol` it is registered under."""

    def request(self, node: Node, body: bytes, context: RequestContext | None) -> tuple[bytes, bytes]:
        """The body to send instead of `body`, and more header lines (`name: value\r\n` each)."""
        ...

    def check(self, node: Node, answer: bytes) -> None:
        """Raise NodeFailed when an answer, or a data chunk of a stream, fails the protocol's checks."""
        ...


class NodeUnreachable(NodeFailed):
    """Nothing answered at the node's address (connection refused, DNS): it is down, not just failing."""


class HttpNodeTransport:
    """Inference requests over `Http1Client` (the hot path); probes and metrics over httpx."""

    def __init__(self, settings: CoreSettings, protocols: Mapping[str, NodeProtocol] | None = None) -> None:
        """`protocols`: by `node.protocol`, how nodes of a protocol other than plain OpenAI are spoken to."""
        self.protocols = dict(protocols or {})
        self._health_timeout = settings.health_timeout
        self._http = Http1Client(
            connect_timeout=settings.node_connect_timeout,
            read_timeout=settings.node_read_timeout,
            max_connections=settings.node_max_connections,
            max_response_bytes=settings.node_max_response_bytes,
        )
        self._max_event_bytes = settings.node_max_event_bytes
        self._client = httpx.AsyncClient(timeout=settings.health_timeout, follow_redirects=False)
        self._node_headers: dict[tuple[str | None, str], bytes] = {}

    def _headers(self, node: Node, request_id: str, accept: str, traceparent: str) -> bytes:
        """The request's header lines: fixed ones per node and accept, then its request id."""
        fixed = self._node_headers.get((node.api_key, accept))
        if fixed is None:
            lines = f"content-type: {_JSON}\r\naccept: {accept}\r\n"
            if node.api_key:
                lines += f"{AUTHORIZATION}: Bearer {node.api_key}\r\n"
            fixed = self._node_headers[(node.api_key, accept)] = lines.encode("latin-1")
        head = fixed + _REQUEST_ID_LINE + request_id.encode("ascii", "replace") + b"\r\n"
        if traceparent:
            head += _TRACEPARENT_LINE + traceparent.encode("ascii", "replace") + b"\r\n"
        return head

    async def _post(
        self,
        node: Node,
        path: str,
        body: bytes,
        request_id: str,
        accept: str,
        traceparent: str = "",
        extra_headers: bytes = b"",
    ) -> Response:
        try:
            headers = self._headers(node, request_id, accept, traceparent) + extra_headers
            response = await self._http.post(node.url, path, headers, body)
        except (OSError, TimeoutError) as error:
            raise _transport_error(node, error) from error
        if response.status >= 300:
            try:
                detail = await response.read(_MAX_ERROR_BODY)
            except (OSError, TimeoutError):
                detail = b""
            finally:
                response.release()
            raise node_error(node, response.status, detail)
        return response

    def _prepare(
        self, node: Node, body: bytes, context: RequestContext | None
    ) -> tuple[NodeProtocol | None, bytes, bytes]:
        """The node's protocol (None: plain OpenAI), the body to send and the protocol's header lines.
        `context` goes only to a protocol: plain OpenAI nodes have no use for it."""
        protocol = self.protocols.get(node.protocol)
        if protocol is None:
            return None, body, b""
        body, headers = protocol.request(node, body, context)
        return protocol, body, headers

    async def post(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> bytes:
        protocol, body, headers = self._prepare(node, body, context)
        response = await self._post(node, path, body, request_id, _JSON, traceparent, headers)
        try:
            answer = await response.read()
        except (OSError, TimeoutError) as error:
            raise _transport_error(node, error) from error
        finally:
            response.release()
        if protocol is not None:
            protocol.check(node, answer)
        return answer

    async def stream(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> AsyncIterator[list[bytes]]:
        protocol, body, headers = self._prepare(node, body, context)
        response = await self._post(node, path, body, request_id, "text/event-stream", traceparent, headers)
        try:
            events = iter_sse_batches(response.pieces(), self._max_event_bytes)
            async for batch in events:
                if _DONE in batch:
                    await _drain(events)
                failure = None
                if protocol is not None:
                    batch, failure = _checked(protocol, node, batch)
                if batch:
                    yield batch  # the chunks before one that fails still go out
                if failure is not None:
                    raise failure
        except (OSError, TimeoutError) as error:
            raise _transport_error(node, error) from error
        except EventTooLarge as error:
            raise NodeFailed(f"Node {node.id} failed: {error}.") from error
        finally:
            response.release()

    async def probe(self, node: Node) -> bool:
        try:
            response = await self._client.get(node.url + "/health", timeout=self._health_timeout)
        except httpx.HTTPError:
            return False
        return response.is_success

    async def fetch_metrics(self, node: Node) -> str | None:
        try:
            async with self._client.stream("GET", node.url + "/metrics", timeout=self._health_timeout) as response:
                if not response.is_success:
                    return None
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > MAX_METRICS_BYTES:
                        return None  # no exporter needs this much: a node flooding the scraper
        except httpx.HTTPError:
            return None
        return body.decode("utf-8", "replace")

    def open_connections(self) -> int:
        """Connections to nodes held by the hot path (idle and in use)."""
        return self._http.connections()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._client.aclose()


def _checked(protocol: NodeProtocol, node: Node, batch: list[bytes]) -> tuple[list[bytes], NodeFailed | None]:
    """The chunks of `batch` before the first that fails the protocol's check, and that failure (None: all pass)."""
    for index, chunk in enumerate(batch):
        if chunk == _DONE:
            continue
        try:
            protocol.check(node, chunk)
        except NodeFailed as failure:
            return batch[:index], failure
    return batch, None


async def _drain(events: AsyncIterator[list[bytes]]) -> None:
    """Read the body's end after [DONE] so the keep-alive connection goes back to the pool.

    A response released with unread bytes (here only the terminating chunk) closes its
    connection, and the next stream pays a new TCP handshake. A node that keeps the body open
    after [DONE] gets a short grace, then the connection is dropped.
    """
    with contextlib.suppress(TimeoutError, OSError, EventTooLarge):
        async with asyncio.timeout(_DRAIN_GRACE):
            async for _ in events:
                pass


def _transport_error(node: Node, exc: BaseException) -> ProxyError:
    if isinstance(exc, TimeoutError):
        return NodeTimeout(f"Node {node.id} did not answer in time: {exc}".rstrip(": ") + ".")
    if isinstance(exc, ConnectFailed):
        return NodeUnreachable(f"Node {node.id} is unreachable: {exc}".rstrip(": "))
    return NodeFailed(f"Node {node.id} failed: {exc}".rstrip(": "))
