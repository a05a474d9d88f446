"""The non-inference endpoints: health, model list, Prometheus metrics and the /sim control API.

GET    /health          {"status": "ok"}
GET    /v1/models       OpenAI model list (needs the API key when one is configured)
GET    /metrics         Prometheus text (see metrics.py)
GET    /sim/config      the live-changeable fields
POST   /sim/config      change any subset of them (400 on unknown fields or bad values)
GET    /sim/stats       request counters
GET    /sim/requests    the last 100 inference requests: path, headers, parsed body
DELETE /sim/requests    forget them
"""

from __future__ import annotations

import time

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from atoma_proxy.nodesim.asgi import header
from atoma_proxy.nodesim.serving import unauthorized
from atoma_proxy.nodesim.state import SimState

__all__ = ["ControlEndpoints"]

_HEALTH = orjson.dumps({"status": "ok"})


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


class ControlEndpoints:
    def __init__(self, state: SimState) -> None:
        self.state = state
        created = int(time.time())
        self._models = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": created, "owned_by": state.config.node_id}
                    for model in state.config.all_models
                ],
            }
        )

    async def health(self, request: Request) -> Response:
        return _json(_HEALTH)

    async def models(self, request: Request) -> Response:
        if not self.state.authorized(header(request.scope, b"authorization")):
            error = unauthorized()
            return _json(error.body(), error.status)
        return _json(self._models)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def get_config(self, request: Request) -> Response:
        view = self.state.config.runtime_view()
        if self.state.atoma is not None:
            view["sui_address"] = self.state.atoma.address
        return _json(orjson.dumps(view))

    async def post_config(self, request: Request) -> Response:
        try:
            self.state.update_config(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, ValueError) as error:
            body = {"error": {"message": str(error), "type": "invalid_request_error", "param": None, "code": None}}
            return _json(orjson.dumps(body), 400)
        return _json(orjson.dumps(self.state.config.runtime_view()))

    async def stats(self, request: Request) -> Response:
        return _json(orjson.dumps(self.state.stats_view()))

    async def get_requests(self, request: Request) -> Response:
        return _json(orjson.dumps(list(self.state.request_log)))

    async def clear_requests(self, request: Request) -> Response:
        self.state.request_log.clear()
        return Response(status_code=204)
