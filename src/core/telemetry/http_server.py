"""The core's /metrics over HTTP/1.1 on `core.metrics_listen`: GET /metrics, nothing else.

A few lines of asyncio rather than prometheus_client's threaded server: it shares the port between workers
(SO_REUSEPORT) like the gRPC listener, and stops with the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from atoma_proxy.core.telemetry.metrics import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_TIMEOUT = 10.0


class MetricsServer:
    def __init__(self, listen: str, render: Callable[[], bytes], *, reuse_port: bool = False) -> None:
        host, _, port = listen.rpartition(":")
        self._host, self._port = host.strip("[]") or None, int(port)
        self._render = render
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, reuse_port=self._reuse_port or None, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self._host or "0.0.0.0", self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method == b"GET" and path == b"/metrics":
                status, kind, body = b"200 OK", CONTENT_TYPE_LATEST.encode(), self._render()
            else:
                status, kind, body = b"404 Not Found", b"text/plain", b"not found\n"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: " + kind + b"\r\ncontent-length: "
                + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
