"""`build_app`: the simulated node as a plain Starlette app (no FastAPI, no pydantic: it is the
benchmarks' direct-upstream baseline, so per-request overhead must stay minimal).

The app's `state.sim` is its `SimState`, for in-process callers that want the counters directly.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from atoma_proxy.nodesim.asgi import RAW_SEND_KEY, RequestError, base_url
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.control import ControlEndpoints
from atoma_proxy.nodesim.embeddings import parse_embedding
from atoma_proxy.nodesim.images import parse_image, serve_image
from atoma_proxy.nodesim.jobs import Job
from atoma_proxy.nodesim.parsing import parse_chat, parse_completion
from atoma_proxy.nodesim.responses import parse_response_request
from atoma_proxy.nodesim.serving import InferenceEndpoint
from atoma_proxy.nodesim.state import SimState

__all__ = ["SimApp", "build_app"]


class SimApp(Starlette):
    """Starlette, plus the server's unwrapped `send` in each HTTP scope (for injected drops)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def _chat(payload: dict[str, Any], state: SimState, scope: Scope) -> Job:
    return parse_chat(payload, state.config)


def _completion(payload: dict[str, Any], state: SimState, scope: Scope) -> Job:
    return parse_completion(payload, state.config)


def _response(payload: dict[str, Any], state: SimState, scope: Scope) -> Job:
    if not state.config.responses_api:
        raise RequestError(404, "This node does not serve the Responses API.", code="not_found")
    return parse_response_request(payload, state.config)


def _embedding(payload: dict[str, Any], state: SimState, scope: Scope) -> Job:
    return parse_embedding(payload, state.config)


def _image(payload: dict[str, Any], state: SimState, scope: Scope) -> Job:
    return parse_image(payload, state.config, base_url(scope))


def build_app(config: SimConfig) -> Starlette:
    """A simulated OpenAI-compatible inference node serving `config`."""
    state = SimState(config)
    control = ControlEndpoints(state)
    post = ["POST"]
    routes = [
        Route("/v1/chat/completions", InferenceEndpoint(state, _chat), methods=post),
        Route("/v1/completions", InferenceEndpoint(state, _completion), methods=post),
        Route("/v1/responses", InferenceEndpoint(state, _response), methods=post),
        Route("/v1/embeddings", InferenceEndpoint(state, _embedding), methods=post),
        Route("/v1/images/generations", InferenceEndpoint(state, _image), methods=post),
        Route("/v1/models", control.models),
        Route("/health", control.health),
        Route("/metrics", control.metrics),
        Route("/sim/config", control.get_config),
        Route("/sim/config", control.post_config, methods=post),
        Route("/sim/stats", control.stats),
        Route("/sim/requests", control.get_requests),
        Route("/sim/requests", control.clear_requests, methods=["DELETE"]),
        Route("/sim/images/{name}", serve_image),
    ]
    app = SimApp(routes=routes)
    app.state.sim = state
    return app
