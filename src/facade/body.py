"""Reading a request body: once, bounded, parsed by orjson into a JSON object.

The cap is the core channel's message size: a bigger body could never reach the core, so it is
refused (413) while it streams in rather than buffered first. Parse failures, and bodies nested deeper than
MAX_JSON_DEPTH (src/core/json_depth.py), are OpenAI's 400.
orjson parses integers beyond the 64-bit range as floats; such values are never legitimate in
OpenAI requests and the typed fields reject floats, so that is accepted over a slower parser.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from atoma_proxy.core.json_depth import MAX_JSON_DEPTH, too_deep
from atoma_proxy.facade.errors import ApiError, invalid_request

__all__ = ["MAX_BODY_BYTES", "read_json_object"]

MAX_BODY_BYTES = 64 * 1024 * 1024


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a dict; 413 past `app.state.max_body_bytes`, 400 unless a JSON object."""
    limit: int = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off by facade.body_timeout: nobody reads the answer
        raise ApiError(499, "The client closed the connection before sending its whole body.") from None
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as error:
        raise invalid_request(
            f"We could not parse the JSON body of your request: {error}", code="invalid_json"
        ) from None
    if type(body) is not dict:
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    if too_deep(body):
        raise invalid_request(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body exceeds {limit} bytes.", code="request_too_large")
