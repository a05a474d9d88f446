"""The confidential routes (docs/confidential.md): JSON with base64 fields in, the core's RPCs behind.

    POST /v1/nodes/lock                          -> LockNode
    POST /v1/confidential/chat/completions       -> ConfidentialChatCompletion  (SSE when `stream`)
    POST /v1/confidential/completions            -> ConfidentialCompletion      (SSE when `stream`)
    POST /v1/confidential/embeddings             -> ConfidentialEmbeddings
    POST /v1/confidential/images/generations     -> ConfidentialGenerateImages

Answers are Atoma's JSON: `{ciphertext, nonce, signature, response_hash, usage}`; a stream is one
`data:` event per sealed chunk (with `chunk_index` and `final`), then `data: [DONE]`.
The core's cost goes out as the `x-atoma-cost` header (unary) like the plain routes' routing headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from atoma_proxy.confidential import envelope, wire
from atoma_proxy.facade.body import read_json_object
from atoma_proxy.facade.errors import ApiError, invalid_request
from atoma_proxy.facade.metadata import routing_headers, rpc_error
from atoma_proxy.facade.relay import call_options, call_unary
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb

__all__ = ["router"]

router = APIRouter()

ENDPOINTS = {
    "chat/completions": cpb.CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS,
    "completions": cpb.CONFIDENTIAL_ENDPOINT_COMPLETIONS,
    "embeddings": cpb.CONFIDENTIAL_ENDPOINT_EMBEDDINGS,
    "images/generations": cpb.CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS,
}


def _routing(request: Request) -> Any:
    """Always the first core connection: a lock lives in the memory of the core process that granted it, and
    with several core workers on one port each connection may reach another one."""
    return request.app.state.core.routing_stubs[0]


def _lock_request(body: dict[str, Any]) -> cpb.LockNodeRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("`model` must be a non-empty string.", param="model")
    message = cpb.LockNodeRequest(model=model)
    tokens = body.get("max_num_tokens")
    if tokens is not None:
        if type(tokens) is not int:
            raise invalid_request("`max_num_tokens` must be an integer.", param="max_num_tokens")
        message.max_num_tokens = tokens
    timeout = body.get("timeout")
    if timeout is not None:
        if type(timeout) not in (int, float):
            raise invalid_request("`timeout` must be a number of seconds.", param="timeout")
        message.timeout = float(timeout)
    excluded = body.get("exclude_node_ids", [])
    if not isinstance(excluded, list) or not all(isinstance(n, str) for n in excluded):
        raise invalid_request("`exclude_node_ids` must be a list of node ids.", param="exclude_node_ids")
    message.exclude_node_ids.extend(excluded)
    endpoint = body.get("endpoint")
    if endpoint is not None:
        if endpoint not in ENDPOINTS:
            raise invalid_request(f"`endpoint` must be one of {', '.join(ENDPOINTS)}.", param="endpoint")
        message.endpoint = ENDPOINTS[endpoint]
    return message


@router.post("/v1/nodes/lock")
async def lock_node(request: Request) -> Response:
    """Locks a confidential node for one request: `{model, max_num_tokens?, timeout?, endpoint?, exclude_node_ids?}`."""
    response, headers = await call_unary(
        request, _routing(request).LockNode, _lock_request(await read_json_object(request))
    )
    return JSONResponse(
        {
            "public_key": envelope.b64(response.public_key),
            "node_id": response.node_id,
            "node_small_id": response.node_small_id,
            "stack_small_id": response.stack_small_id,
            "expires_at": response.expires_at,
            "node_signing_key": envelope.b64(response.node_signing_key),
            "rotation_counter": response.rotation_counter,
            "max_num_tokens": response.max_num_tokens,
        },
        headers=headers,
    )


async def _envelope(request: Request) -> cpb.ConfidentialEnvelope:
    try:
        return wire.envelope_to_proto(envelope.ConfidentialRequest.from_json(await read_json_object(request)))
    except envelope.EnvelopeError as error:
        raise invalid_request(f"Invalid confidential request: {error}.", code="invalid_confidential_request") from None


async def _generate(request: Request, method: Any, message: Any) -> Response:
    call = method(message, **call_options(request))
    try:
        first = await call.read()
        if first is grpc.aio.EOF:
            raise ApiError(502, "The routing core ended the call without an answer.", code="bad_gateway")
        if first.WhichOneof("event") == "answer":
            answer = first.answer
            while await call.read() is not grpc.aio.EOF:  # to the end: the status (and the cost) come last
                pass
            headers = routing_headers(await call.initial_metadata(), await call.trailing_metadata())
            return JSONResponse(wire.sealed_to_json(answer, chunk=False), headers=headers)
    except grpc.aio.AioRpcError as error:
        raise rpc_error(error) from None
    return StreamingResponse(_events(call, first), media_type="text/event-stream")


async def _events(call: grpc.aio.UnaryStreamCall, event: Any) -> AsyncIterator[bytes]:
    try:
        while event is not grpc.aio.EOF:  # a client that leaves cancels this generator, and the finally the call
            if event.WhichOneof("event") == "chunk":
                yield b"data: " + orjson.dumps(wire.sealed_to_json(event.chunk, chunk=True)) + b"\n\n"
            event = await call.read()
    except grpc.aio.AioRpcError as error:
        yield b"data: " + orjson.dumps(rpc_error(error).envelope()) + b"\n\n"
        return
    finally:
        call.cancel()  # no-op once the call ended
    yield b"data: [DONE]\n\n"


@router.post("/v1/confidential/chat/completions")
async def confidential_chat_completion(request: Request) -> Response:
    """An encrypted chat completion, relayed to the locked node."""
    message = cpb.ConfidentialChatCompletionRequest(envelope=await _envelope(request))
    return await _generate(request, _routing(request).ConfidentialChatCompletion, message)


@router.post("/v1/confidential/completions")
async def confidential_completion(request: Request) -> Response:
    """An encrypted text completion, relayed to the locked node."""
    message = cpb.ConfidentialCompletionRequest(envelope=await _envelope(request))
    return await _generate(request, _routing(request).ConfidentialCompletion, message)


@router.post("/v1/confidential/embeddings")
async def confidential_embeddings(request: Request) -> Response:
    """Encrypted embeddings, relayed to the locked node."""
    message = cpb.ConfidentialEmbeddingsRequest(envelope=await _envelope(request))
    response, headers = await call_unary(request, _routing(request).ConfidentialEmbeddings, message)
    return JSONResponse(wire.sealed_to_json(response.answer, chunk=False), headers=headers)


@router.post("/v1/confidential/images/generations")
async def confidential_images(request: Request) -> Response:
    """An encrypted image generation, relayed to the locked node."""
    message = cpb.ConfidentialGenerateImagesRequest(envelope=await _envelope(request))
    response, headers = await call_unary(request, _routing(request).ConfidentialGenerateImages, message)
    return JSONResponse(wire.sealed_to_json(response.answer, chunk=False), headers=headers)
