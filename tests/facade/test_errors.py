"""Every error the facade answers with: the SDK's exception class, status, and OpenAI's envelope."""

from __future__ import annotations

import grpc
import httpx
import openai
import pytest

from atoma_proxy.facade.errors import error_type
from tests.facade.conftest import RunningFacade
from tests.facade.fake_core import FakeCore, chat_chunk, rich_status

MESSAGES = [{"role": "user", "content": "hi"}]

CORE_ERRORS = [
    # (gRPC code, reason, ErrorInfo metadata, SDK class, HTTP status, error.type, error.code)
    (
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_API_KEY",
        {},
        openai.AuthenticationError,
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        {"param": "model"},
        openai.NotFoundError,
        404,
        "invalid_request_error",
        "model_not_found",
    ),
    (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        {"param": "messages"},
        openai.BadRequestError,
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    (
        grpc.StatusCode.PERMISSION_DENIED,
        "MODEL_NOT_ALLOWED",
        {},
        openai.PermissionDeniedError,
        403,
        "permission_error",
        "model_not_allowed",
    ),
    (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        {},
        openai.RateLimitError,
        429,
        "requests",
        "rate_limit_exceeded",
    ),
    (
        grpc.StatusCode.UNAVAILABLE,
        "NO_NODE_AVAILABLE",
        {},
        openai.InternalServerError,
        503,
        "server_error",
        "no_node_available",
    ),
    (grpc.StatusCode.INTERNAL, "INTERNAL", {}, openai.InternalServerError, 500, "server_error", "internal"),
    (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "NODE_TIMEOUT",
        {},
        openai.InternalServerError,
        504,
        "server_error",
        "node_timeout",
    ),
    (
        grpc.StatusCode.INVALID_ARGUMENT,
        "NODE_REJECTED_REQUEST",
        {"node_status": "400", "node_error_type": "BadRequestError", "node_error_code": "context_length_exceeded"},
        openai.BadRequestError,
        400,
        "BadRequestError",
        "context_length_exceeded",
    ),
    (
        grpc.StatusCode.INVALID_ARGUMENT,
        "NODE_REJECTED_REQUEST",
        {"node_status": "400"},
        openai.BadRequestError,
        400,
        "invalid_request_error",
        "node_rejected_request",
    ),
]


@pytest.mark.parametrize(("code", "reason", "info", "exc_class", "status", "kind", "openai_code"), CORE_ERRORS)
async def test_core_error_maps_to_sdk_class_and_envelope(
    client: openai.AsyncOpenAI,
    core: FakeCore,
    code: grpc.StatusCode,
    reason: str,
    info: dict[str, str],
    exc_class: type[openai.APIStatusError],
    status: int,
    kind: str,
    openai_code: str,
) -> None:
    core.script.error = rich_status(code, f"scripted {reason}", reason, info)

    with pytest.raises(exc_class) as raised:
        await client.chat.completions.create(model="m1", messages=MESSAGES)

    assert raised.value.status_code == status
    assert raised.value.body == {
        "message": f"scripted {reason}",
        "type": kind,
        "param": info.get("param"),
        "code": openai_code,
    }
    assert raised.value.response.headers["x-atoma-node"] == "node-a"


@pytest.mark.parametrize(
    ("code", "details", "status", "message"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "API key revoked", 401, "API key revoked"),
        (grpc.StatusCode.UNKNOWN, "Unexpected <class 'KeyError'>: 'x'", 500, "The routing core failed the request."),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Received message larger than max (5 vs. 4)",
            429,
            "The routing core is out of capacity for this request.",
        ),
    ],
)
async def test_plain_statuses_without_details(
    client: openai.AsyncOpenAI, core: FakeCore, code: grpc.StatusCode, details: str, status: int, message: str
) -> None:
    core.script.error = (code, details)

    with pytest.raises(openai.APIStatusError) as raised:
        await client.embeddings.create(model="m1", input="x")

    assert raised.value.status_code == status
    assert raised.value.body == {
        "message": message,
        "type": error_type(status),
        "param": None,
        "code": code.name.lower(),
    }


async def test_insufficient_funds_is_402_insufficient_quota(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.error = rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "balance too low", "INSUFFICIENT_FUNDS", quota=True
    )

    with pytest.raises(openai.APIStatusError) as raised:
        await client.embeddings.create(model="m1", input="x")

    assert raised.value.status_code == 402
    assert raised.value.type == "insufficient_quota" and raised.value.code == "insufficient_quota"


async def test_error_before_first_chunk_is_a_real_http_status(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.error = rich_status(grpc.StatusCode.NOT_FOUND, "no such model", "MODEL_NOT_FOUND", {"param": "model"})

    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="nope", messages=MESSAGES, stream=True)

    assert raised.value.param == "model"


async def test_error_mid_stream_is_an_in_band_event(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.chunks = [chat_chunk("a"), chat_chunk("b")]
    core.script.chunks_before_error = 1
    core.script.error = rich_status(grpc.StatusCode.UNAVAILABLE, "node died", "NODE_FAILED")
    stream = await client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    received = []

    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["a"]
    assert raised.value.message == "node died"
    assert raised.value.body == {"message": "node died", "type": "server_error", "param": None, "code": "node_failed"}


async def test_mid_stream_error_has_no_done_marker(facade: RunningFacade, core: FakeCore) -> None:
    core.script.chunks_before_error = 1
    core.script.error = rich_status(grpc.StatusCode.UNAVAILABLE, "node died", "NODE_FAILED")
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/chat/completions", json={"model": "m1", "messages": MESSAGES, "stream": True})

    events = [e for e in response.text.split("\n\n") if e]
    assert response.status_code == 200
    assert events[-1].startswith('data: {"error":') and "[DONE]" not in response.text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ((grpc.StatusCode.UNAVAILABLE, "Socket closed"), 200),  # the core's connection lost: the answer stands
        (rich_status(grpc.StatusCode.UNAVAILABLE, "node died", "NODE_FAILED"), 503),  # the core's own error wins
    ],
    ids=["connection-lost", "core-error"],
)
async def test_a_completion_survives_its_core_dying_before_the_end_of_the_call(
    facade: RunningFacade, core: FakeCore, error: object, status: int
) -> None:
    core.script.chunks_before_error = 1
    core.script.error = error  # type: ignore[assignment]
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/chat/completions", json={"model": "m1", "messages": MESSAGES})

    assert response.status_code == status
    if status == 200:
        assert response.json()["choices"][0]["message"]["content"]
        assert "x-atoma-cost" not in response.headers
    else:
        assert response.json()["error"]["code"] == "node_failed"


async def test_core_down_is_503_without_internal_addresses(core: FakeCore) -> None:
    from atoma_proxy.config import FacadeSettings, Settings
    from atoma_proxy.facade import create_app

    # A port nothing listens on: the channel fails to connect.
    app = create_app(Settings(facade=FacadeSettings(core_target="127.0.0.1:1", request_timeout=5.0)))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as http,
    ):
        response = await http.get("/v1/models")
        health = await http.get("/health")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "server_error" and "127.0.0.1" not in response.text
    assert health.status_code == 503 and health.json()["error"]["code"] == "unavailable"


async def test_bad_json_is_400(client: openai.AsyncOpenAI, facade: RunningFacade, core: FakeCore) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post(
            "/v1/chat/completions",
            content=b'{"model": "m1", "messages": [',
            headers={"content-type": "application/json"},
        )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "invalid_json"
    assert core.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "m1", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 5}]},
            "messages[1].content",
        ),
        ({"model": "m1", "messages": MESSAGES, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "m1", "messages": MESSAGES, "max_tokens": 1.5}, "max_tokens"),
        ({"model": "m1", "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
        ({"model": "m1", "messages": MESSAGES, "temperature": True}, "temperature"),
        ({"model": "m1", "messages": MESSAGES, "n": 2**40}, "n"),
        ({"model": "m1", "messages": MESSAGES, "stop": ["a", 1]}, "stop[1]"),
        ({"model": "m1", "messages": MESSAGES, "stream": "yes"}, "stream"),
        (
            {"model": "m1", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        (
            {"model": "m1", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]},
            "messages[0].content[0].image_url",
        ),
        ({"model": "m1", "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"model": 7, "messages": MESSAGES}, "model"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "m1"}, "messages"),
        ({"model": "m1", "messages": "hi"}, "messages"),
    ],
)
async def test_wrong_types_are_400_naming_the_param(
    client: openai.AsyncOpenAI, core: FakeCore, body: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.post("/chat/completions", body=body, cast_to=object)

    assert raised.value.param == param
    assert core.requests == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/completions", {"model": "m1", "prompt": [1, "a"]}, "prompt[1]"),
        ("/completions", {"model": "m1", "prompt": {"text": "a"}}, "prompt"),
        ("/embeddings", {"model": "m1", "input": [[1], ["a"]]}, "input[1][0]"),
        ("/embeddings", {"model": "m1"}, "input"),
        ("/embeddings", {"model": "m1", "input": "a", "dimensions": -(2**40)}, "dimensions"),
        ("/images/generations", {"model": "m1", "prompt": 3}, "prompt"),
        ("/images/generations", {"model": "m1", "prompt": "a", "size": 256}, "size"),
    ],
)
async def test_wrong_types_on_other_routes(
    client: openai.AsyncOpenAI, core: FakeCore, path: str, body: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.post(path, body=body, cast_to=object)

    assert raised.value.param == param


async def test_non_object_body_is_400(facade: RunningFacade) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/embeddings", json=[1, 2])

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


async def test_unknown_route_and_method_use_the_envelope(client: openai.AsyncOpenAI, facade: RunningFacade) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client.get("/no/such/route", cast_to=object)
    assert raised.value.body == {
        "message": "Invalid URL (GET /v1/no/such/route)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }

    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_body_is_413(facade: RunningFacade, core: FakeCore, chunked: bool) -> None:
    body = b'{"model": "m1", "input": "' + b"x" * 2000 + b'"}'

    async def chunks():  # no Content-Length: the limit must hold while the body streams in
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    facade.app.state.max_body_bytes = 1000
    try:
        async with httpx.AsyncClient(base_url=facade.base_url) as http:
            response = await http.post("/v1/embeddings", content=chunks() if chunked else body)
    finally:
        from atoma_proxy.facade.body import MAX_BODY_BYTES

        facade.app.state.max_body_bytes = MAX_BODY_BYTES

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert core.requests == []


async def test_validation_errors_and_crashes_use_the_envelope() -> None:
    from fastapi import FastAPI

    from atoma_proxy.facade.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/typed")
    async def typed(limit: int) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://facade") as http:
        invalid = await http.get("/typed", params={"limit": "many"})
        crashed = await http.get("/crash")

    assert invalid.status_code == 400  # never FastAPI's 422
    assert invalid.json()["error"]["param"] == "limit"
    assert invalid.json()["error"]["type"] == "invalid_request_error"
    assert crashed.status_code == 500
    assert crashed.json()["error"] == {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }


async def test_fast_routes_answer_errors_and_crashes_in_the_envelope_and_leave_the_rest_to_fastapi() -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from atoma_proxy.facade.errors import ApiError, install_error_handlers
    from atoma_proxy.facade.fast_path import FacadeApp

    async def refuse(request: Request) -> Response:
        raise ApiError(402, "No money.", code="insufficient_quota")

    async def crash(request: Request) -> Response:
        raise RuntimeError("bug")

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    app = FacadeApp(fast_routes={"/refuse": refuse, "/crash": crash, "/echo": echo})
    install_error_handlers(app)

    @app.get("/echo")
    async def slow_echo() -> dict[str, str]:
        return {"via": "fastapi"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://facade") as http:
        refused = await http.post("/refuse", json={})
        crashed = await http.post("/crash", json={})
        echoed = await http.post("/echo", content=b'{"a":1}')
        got = await http.get("/echo")  # not a POST: FastAPI's route
        missing = await http.post("/nowhere", json={})

    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_quota"
    assert crashed.status_code == 500 and crashed.json()["error"]["type"] == "server_error"
    assert echoed.json() == {"a": 1}
    assert got.json() == {"via": "fastapi"}
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Invalid URL (POST /nowhere)"
