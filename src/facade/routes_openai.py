"""The OpenAI routes: parse once, translate, call the core, relay. No domain logic lives here.

Inference answers are the node's JSON text, relayed byte for byte; only /v1/models and /v1/quote
are built here (`models_json`), because OpenAI's shapes have integers where proto JSON prints strings.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from fastapi import APIRouter, Request
from grpc_health.v1 import health_pb2
from starlette.responses import Response

from atoma_proxy.facade import schemas, translate
from atoma_proxy.facade.body import read_json_object
from atoma_proxy.facade.errors import ApiError, invalid_request
from atoma_proxy.facade.models_json import model_json, quote_json
from atoma_proxy.facade.relay import call_options, call_unary, relay_inference
from atoma_proxy.facade.responses_sse import response_events
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.wire import openai_requests

__all__ = ["HEALTH_TIMEOUT", "router"]

HEALTH_TIMEOUT = 5.0

router = APIRouter()
_JSON_OR_EVENTS: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, "text/event-stream": {}}}}


def _core(request: Request) -> Any:
    return request.app.state.core


@router.post(
    "/v1/chat/completions",
    openapi_extra=schemas.json_body(schemas.ChatCompletionRequest),
    responses=_JSON_OR_EVENTS,
)
async def create_chat_completion(request: Request) -> Response:
    """Creates a chat completion; `stream: true` answers with server-sent events."""
    message = translate.chat_completion_request(await read_json_object(request))
    call = _core(request).routing.ChatCompletion(message, **call_options(request))
    return await relay_inference(request, call, stream=message.stream)


@router.post(
    "/v1/completions",
    openapi_extra=schemas.json_body(schemas.CompletionRequest),
    responses=_JSON_OR_EVENTS,
)
async def create_completion(request: Request) -> Response:
    """Creates a (legacy) text completion; `stream: true` answers with server-sent events."""
    message = translate.completion_request(await read_json_object(request))
    call = _core(request).routing.Completion(message, **call_options(request))
    return await relay_inference(request, call, stream=message.stream)


@router.post(
    "/v1/responses",
    openapi_extra=schemas.json_body(schemas.CreateResponseRequest),
    responses=_JSON_OR_EVENTS,
)
async def create_response(request: Request) -> Response:
    """Creates a model response (OpenAI's Responses API); `stream: true` answers with its server-sent events."""
    body = await read_json_object(request)
    message = openai_requests.create_response_request(body)
    call = _core(request).routing.CreateResponse(message, **call_options(request))
    return await relay_inference(
        request, call, stream=body.get("stream") is True, whole="response", events=response_events
    )


def _not_stored() -> ApiError:
    return ApiError(
        404,
        "This proxy stores no responses (`store` is not supported), so none can be retrieved or deleted: "
        "send the whole conversation in `input`.",
        param="response_id",
        code="not_found",
    )


@router.get("/v1/responses/{response_id:path}")
async def retrieve_response(request: Request) -> Response:
    """Responses are not stored (README "Responses API"): there is none to read."""
    raise _not_stored()


@router.delete("/v1/responses/{response_id:path}")
async def delete_response(request: Request) -> Response:
    """Responses are not stored (README "Responses API"): there is none to delete."""
    raise _not_stored()


@router.post("/v1/embeddings", openapi_extra=schemas.json_body(schemas.EmbeddingsRequest))
async def create_embeddings(request: Request) -> Response:
    """Creates embeddings of the input."""
    message = translate.embeddings_request(await read_json_object(request))
    response, headers = await call_unary(request, _core(request).routing.Embeddings, message)
    return Response(response.response_json, media_type="application/json", headers=headers)


@router.post("/v1/images/generations", openapi_extra=schemas.json_body(schemas.GenerateImagesRequest))
async def create_images(request: Request) -> Response:
    """Generates images from a prompt."""
    message = translate.generate_images_request(await read_json_object(request))
    response, headers = await call_unary(request, _core(request).routing.GenerateImages, message)
    return Response(response.response_json, media_type="application/json", headers=headers)


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    """Lists the models that at least one node serves, with their kind, context length, nodes and prices."""
    response, headers = await call_unary(request, _core(request).routing.ListModels, pb.ListModelsRequest())
    body = {"object": response.object or "list", "data": [model_json(m) for m in response.data]}
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get(
    "/v1/models/{model:path}",
    openapi_extra={"parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]},
)
async def retrieve_model(request: Request) -> Response:
    """One model (its id may contain slashes); 404 `model_not_found` when no node serves it."""
    message = pb.GetModelRequest(model=request.path_params["model"])
    response, headers = await call_unary(request, _core(request).routing.GetModel, message)
    return Response(orjson.dumps(model_json(response.model)), media_type="application/json", headers=headers)


# POST /v1/quote/<endpoint> takes the body of POST /v1/<endpoint>.
_QUOTED = {
    "chat/completions": ("chat_completion", translate.chat_completion_request),
    "completions": ("completion", translate.completion_request),
    "embeddings": ("embeddings", translate.embeddings_request),
    "images/generations": ("generate_images", translate.generate_images_request),
}
_IMAGE_ONLY = ("size", "quality", "style", "response_format")


def _quoted_endpoint(body: dict[str, Any]) -> str:
    """The endpoint a bare /v1/quote body is for: by its fields (a `prompt` with an image field is images)."""
    if "messages" in body:
        return "chat/completions"
    if "input" in body:
        return "embeddings"
    if "prompt" in body:
        return "images/generations" if any(name in body for name in _IMAGE_ONLY) else "completions"
    raise invalid_request("A quote needs the body of a request: `messages`, `prompt` or `input`.")


async def _quote(request: Request, endpoint: str) -> Response:
    body = await read_json_object(request)
    field, build = _QUOTED[endpoint or _quoted_endpoint(body)]
    message = pb.EstimateCostRequest(**{field: build(body)})
    response, headers = await call_unary(request, _core(request).routing.EstimateCost, message)
    return Response(orjson.dumps(quote_json(response)), media_type="application/json", headers=headers)


@router.post("/v1/quote")
async def quote(request: Request) -> Response:
    """What a request would cost: the body of chat/completions, completions, embeddings or images/generations."""
    return await _quote(request, "")


@router.post("/v1/quote/chat/completions", openapi_extra=schemas.json_body(schemas.ChatCompletionRequest))
async def quote_chat_completion(request: Request) -> Response:
    """What this chat completion would cost."""
    return await _quote(request, "chat/completions")


@router.post("/v1/quote/completions", openapi_extra=schemas.json_body(schemas.CompletionRequest))
async def quote_completion(request: Request) -> Response:
    """What this completion would cost."""
    return await _quote(request, "completions")


@router.post("/v1/quote/embeddings", openapi_extra=schemas.json_body(schemas.EmbeddingsRequest))
async def quote_embeddings(request: Request) -> Response:
    """What these embeddings would cost."""
    return await _quote(request, "embeddings")


@router.post("/v1/quote/images/generations", openapi_extra=schemas.json_body(schemas.GenerateImagesRequest))
async def quote_images(request: Request) -> Response:
    """What these images would cost."""
    return await _quote(request, "images/generations")


@router.get("/health")
async def health(request: Request) -> Response:
    """200 when the core reports SERVING on grpc.health.v1, else 503."""
    try:
        reply = await _core(request).health.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        raise ApiError(503, "The routing core is unavailable.", code=error.code().name.lower()) from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise ApiError(503, f"The routing core is {status}.", code="not_serving")
    return Response(b'{"status":"ok"}', media_type="application/json")
