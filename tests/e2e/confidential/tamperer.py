"""A man in the middle between the core and a confidential sidecar, run in the test process: it relays
everything, and in the confidential answers reorders, replays or forges what `mode` says."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Tamperer:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"  # pass | reorder | replay | forge-usage

    def _forge(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("usage"):
            event = {**event, "usage": {**event["usage"], "completion_tokens": 0}}
        return event

    async def handle(self, request: Request) -> Response:
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as http:
            upstream = await http.request(
                request.method,
                request.url.path,
                content=await request.body(),
                headers={"content-type": request.headers.get("content-type", "application/json")},
            )
        body, kind = upstream.content, upstream.headers.get("content-type", "")
        if self.mode != "pass" and upstream.status_code == 200 and request.url.path.startswith("/v1/confidential/"):
            if kind.startswith("text/event-stream"):
                events = [orjson.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: ")]
                if self.mode == "reorder":
                    events[0], events[1] = events[1], events[0]
                elif self.mode == "replay":
                    events.insert(1, events[0])
                elif self.mode == "forge-usage":
                    events = [self._forge(e) for e in events]
                body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
            elif self.mode == "forge-usage":
                body = orjson.dumps(self._forge(orjson.loads(body)))
        return Response(body, status_code=upstream.status_code, media_type=kind or None)


@contextmanager
def tamperer(upstream: str) -> Iterator[tuple[Tamperer, str]]:
    """The tamperer serving on a free port in a thread of its own; yields it and its URL."""
    tamper = Tamperer(upstream)
    app = Starlette(routes=[Route("/{path:path}", tamper.handle, methods=["GET", "POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield tamper, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
