"""The inference routes served straight from ASGI, ahead of FastAPI's middleware and router.

POST /v1/chat/completions and /v1/completions are most of the traffic. They are declared as
FastAPI routes like the others (OpenAPI, docs, one handler function each), but `FacadeApp`
calls their handlers directly: no middleware stack, route matching or dependency solving, which
profiled at about a third of the facade's CPU per request. What those layers would do for these
two routes is done here: errors become the OpenAI envelope (ApiError as raised, anything else a
logged 500), and the body limit is the handler's own (`read_json_object`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from atoma_proxy.facade.errors import ApiError
from atoma_proxy.facade.observe import observed

__all__ = ["FacadeApp"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class FacadeApp(FastAPI):
    """FastAPI, with `fast_routes` (POST path -> handler) answered before the middleware stack."""

    def __init__(self, *, fast_routes: Mapping[str, Handler] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.fast_routes = dict(fast_routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
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
