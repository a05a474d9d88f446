"""Every error the facade answers with: OpenAI's envelope, and gRPC status -> HTTP status.

    ApiError                    one HTTP error: status, message, type, param, code (+ headers)
    ├── invalid_request()       input the facade itself rejects (bad JSON, wrong types): 400
    └── from_rpc_error()        a failed call to the core: grpc-gateway's code table, refined by
                                the google.rpc.ErrorInfo reason the core attached

The core's errors are mapped once to gRPC status (src/core/errors.py) and once more here, so
clients branch on `error.code` (the ErrorInfo reason, lowercased), never on the message. Starlette's
own errors (404 unknown route, 405, 413) and validation errors get the same envelope through
`install_error_handlers`, so the official `openai` SDK raises its usual classes for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from atoma_proxy.wire.metadata import RETRY_AFTER, RETRY_AFTER_MS
from atoma_proxy.wire.reasons import ErrorReason, reason_name
from atoma_proxy.wire.status import StatusDetails, decode_status

__all__ = [
    "HTTP_STATUS_BY_CODE",
    "ApiError",
    "connection_lost",
    "error_type",
    "from_rpc_error",
    "install_error_handlers",
    "invalid_request",
]

# grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Reasons whose OpenAI rendering differs from the plain code table: (HTTP status, type, code).
_SPECIAL_REASONS: Mapping[str, tuple[int, str, str]] = {
    reason_name(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS): (402, "insufficient_quota", "insufficient_quota"),
    reason_name(ErrorReason.ERROR_REASON_RATE_LIMITED): (429, "requests", "rate_limit_exceeded"),
}
_NODE_REJECTED = reason_name(ErrorReason.ERROR_REASON_NODE_REJECTED_REQUEST)
# Codes the gRPC library itself produces (core down, deadline, message too big, a crash in a
# handler): without a google.rpc.Status their text names internal addresses or exception types,
# so clients get a fixed sentence. Other codes without a Status carry the server's own words.
_TRANSPORT_MESSAGES: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "The routing core is unavailable. Please retry.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The request timed out.",
    grpc.StatusCode.CANCELLED: "The request was cancelled.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "The routing core is out of capacity for this request.",
    grpc.StatusCode.UNKNOWN: "The routing core failed the request.",
    grpc.StatusCode.INTERNAL: "The routing core failed the request.",
    grpc.StatusCode.DATA_LOSS: "The routing core failed the request.",
    grpc.StatusCode.UNIMPLEMENTED: "The routing core does not implement this request.",
}


class ApiError(Exception):
    """An error response in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type(status)
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, dict[str, str | None]]:
        """The JSON body, also the `data:` payload of an in-band stream error."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_response(self) -> Response:
        return Response(
            orjson.dumps(self.envelope()), status_code=self.status, headers=self.headers, media_type="application/json"
        )


def error_type(status: int) -> str:
    """OpenAI's `error.type` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 402:
        return "insufficient_quota"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for input the facade rejects before calling the core."""
    return ApiError(400, message, param=param, code=code)


def from_rpc_error(error: grpc.aio.AioRpcError, headers: Mapping[str, str] | None = None) -> ApiError:
    """The HTTP error for a failed core call: code table, then the ErrorInfo reason and param."""
    code = error.code()
    status = decode_status(error.trailing_metadata())
    if status is None:
        message = _TRANSPORT_MESSAGES.get(code) or error.details() or code.name
        return ApiError(HTTP_STATUS_BY_CODE.get(code, 500), message, code=code.name.lower(), headers=headers)
    reason, param = status.reason, status.param
    headers = {**(headers or {}), **_retry_headers(status)}
    http_status = HTTP_STATUS_BY_CODE.get(code, 500)
    special = _SPECIAL_REASONS.get(reason or "")
    if special is not None:
        http_status, kind, openai_code = special
        return ApiError(http_status, status.message, type=kind, param=param, code=openai_code, headers=headers)
    openai_code = reason.lower() if reason else code.name.lower()
    node_type: str | None = None
    if reason == _NODE_REJECTED:  # the node's own OpenAI type and code, checked by the core
        node_type = status.metadata.get("node_error_type") or None
        openai_code = status.metadata.get("node_error_code") or openai_code
    return ApiError(http_status, status.message, type=node_type, param=param, code=openai_code, headers=headers)


def connection_lost(error: grpc.aio.AioRpcError) -> bool:
    """Whether the core's connection broke (UNAVAILABLE from gRPC itself), not an answer of the core."""
    return error.code() is grpc.StatusCode.UNAVAILABLE and decode_status(error.trailing_metadata()) is None


def _retry_headers(status: StatusDetails) -> dict[str, str]:
    """`retry-after` (seconds, rounded up) and `retry-after-ms` from a google.rpc.RetryInfo detail."""
    millis = status.retry_after_ms
    if millis is None:
        return {}
    return {RETRY_AFTER: str(-(-millis // 1000)), RETRY_AFTER_MS: str(millis)}


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the app can raise in the envelope, including Starlette's own."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.to_response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        # OpenAI's wording for a path or method it does not serve.
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    return ApiError(exc.status_code, message, headers=exc.headers).to_response()


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    # loc is ("query", "limit") or ("body", "messages", 0): the source is not part of the param.
    loc = [str(part) for part in first.get("loc", ())[1:]]
    param = ".".join(loc) or None
    message = f"Invalid value for `{param}`: {first.get('msg', 'invalid')}" if param else "Invalid request."
    return invalid_request(message, param=param).to_response()


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return ApiError(500, "The server had an error while processing your request.").to_response()
