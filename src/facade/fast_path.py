"""The inference routes served straight from ASGI, ahead of FastAPI's middleware and router.

POST /v1/chat/completions and /v1/completions are most of the traffic. They are declared as
FastAPI routes like the others (OpenAPI, docs, one handler function each), but `FacadeApp`
calls their handlers directly: no middleware stack, route matching or dependency solving, which
profiled at about a third of the facade's CPU per request. What those layers would do for these
two routes is done here: errors become the OpenAI envelope (ApiError as raised, anything else a
logged 500), and the body limit is the handler's own (`read_json_object`).

Every response, fast or not, leaves through `_send_with_edge_headers`: it gets an `x-request-id`
(the core's when it sent one; else the client's, when printable and at most 128 characters; else a
new one) and, for an allowed browser origin, the CORS headers (`cors.py`); CORS preflights are
answered here, before any route.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from atoma_proxy.facade.cors import CorsPolicy
from atoma_proxy.facade.errors import ApiError
from atoma_proxy.facade.observe import observed
from atoma_proxy.wire.metadata import REQUEST_ID

__all__ = ["FacadeApp"]

log = logging.getLogger(__name__)
_REQUEST_ID = REQUEST_ID.encode()

Handler = Callable[[Request], Awaitable[Response]]


class FacadeApp(FastAPI):
    """FastAPI, with `fast_routes` (POST path -> handler) answered before the middleware stack."""

    def __init__(
        self, *, fast_routes: Mapping[str, Handler] | None = None, cors: CorsPolicy | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.fast_routes = dict(fast_routes or {})
        self.cors = cors or CorsPolicy(())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        origin = self.cors.allowed_origin(scope["headers"])
        if origin is not None and scope["method"] == "OPTIONS":
            preflight = self.cors.preflight(origin, scope["headers"])
            if preflight is not None:
                await send({"type": "http.response.start", "status": 204, "headers": preflight})
                await send({"type": "http.response.body", "body": b""})
                return
        send = _send_with_edge_headers(send, _request_id(scope["headers"]), self.cors, origin)
        handler = self.fast_routes.get(scope["path"])
        if handler is None or scope["method"] != "POST" or self.root_path:
            await observed(super().__call__, scope, receive, send, None)
            return
        await observed(self._fast, scope, receive, send, scope["path"])

    async def _fast(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.fast_routes[scope["path"]]
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except ApiError as error:
            response = error.to_response()
        except Exception:
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            response = ApiError(500, "The server had an error while processing your request.").to_response()
        await response(scope, receive, send)


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == _REQUEST_ID:
            if 0 < len(value) <= 128 and value.isascii() and value.decode("ascii").isprintable():
                return value
            break
    return uuid.uuid4().hex.encode()


def _send_with_edge_headers(send: Send, request_id: bytes, cors: CorsPolicy, origin: bytes | None) -> Send:
    async def send_wrapper(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(name.lower() == _REQUEST_ID for name, _ in headers):
                headers.append((_REQUEST_ID, request_id))
            if origin is not None:
                headers += cors.response_headers(origin)
            message = {**message, "headers": headers}
        await send(message)

    return send_wrapper
