"""Clients that probe or stall the facade: oversized headers, forged metadata, deep bodies, raw garbage, dribbling.

Header and body tests go through the session's facade; the slow-client and raw-HTTP ones through the facade as
`atoma-proxy` serves it (runner.FacadeServer: the facade's own uvicorn protocol) with short read deadlines, on raw
sockets, since no HTTP client sends a request one byte at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from atoma_proxy.config import FacadeSettings, Settings
from atoma_proxy.core.json_depth import MAX_JSON_DEPTH
from atoma_proxy.runner import FacadeServer
from tests.facade.conftest import API_KEY, RunningFacade
from tests.facade.fake_core import FakeCore, RunningCore

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "m1", "messages": MESSAGES}
# Bounds every wait of the raw-socket tests: a facade that never answers fails the test instead of hanging it.
GUARD = 20.0


async def _post(facade: RunningFacade, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        return await http.post(path, json=body, headers={"authorization": f"Bearer {API_KEY}", **(headers or {})})


@pytest.mark.parametrize(
    ("header", "size"),
    [("authorization", 20_000), ("x-atoma-routing-strategy", 10_000), ("x-request-id", 5_000)],
)
async def test_oversized_header_is_400_not_a_retryable_429(
    facade: RunningFacade, core: FakeCore, header: str, size: int
) -> None:
    response = await _post(facade, "/v1/chat/completions", CHAT, {header: "B" * size})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (header, "header_too_large", "invalid_request_error")
    assert len(error["message"]) < 200
    assert core.requests == []


async def test_forwarded_headers_over_the_metadata_budget_together_are_400(
    facade: RunningFacade, core: FakeCore
) -> None:
    headers = {f"grpc-metadata-x-part-{i}": "v" * 4000 for i in range(3)}  # each within its own limit

    response = await _post(facade, "/v1/chat/completions", CHAT, headers)

    assert response.status_code == 400 and response.json()["error"]["code"] == "header_too_large"
    assert core.requests == []


async def test_grpc_metadata_authorization_does_not_authenticate(facade: RunningFacade, core: FakeCore) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post(
            "/v1/embeddings", json={"model": "m1", "input": "a"}, headers={"grpc-metadata-authorization": "Bearer sk-x"}
        )

    assert response.status_code == 200  # the fake core answers anyone: what matters is what it was sent
    assert "authorization" not in core.metadata[0]


async def test_authorization_header_wins_over_grpc_metadata_authorization(
    facade: RunningFacade, core: FakeCore
) -> None:
    headers = {"authorization": "Bearer sk-real", "grpc-metadata-authorization": "Bearer sk-smuggled"}
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/embeddings", json={"model": "m1", "input": "a"}, headers=headers)

    assert response.status_code == 200
    assert core.metadata[0]["authorization"] == "Bearer sk-real"


async def test_client_cannot_name_its_own_client_address(facade: RunningFacade, core: FakeCore) -> None:
    response = await _post(
        facade, "/v1/embeddings", {"model": "m1", "input": "a"}, {"grpc-metadata-x-atoma-client-address": "10.6.6.6"}
    )

    assert response.status_code == 200
    assert core.metadata[0]["x-atoma-client-address"] == "127.0.0.1"  # the facade's own view of the client


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 300, 1000])
async def test_body_nested_deeper_than_the_limit_is_400(facade: RunningFacade, core: FakeCore, levels: int) -> None:
    # The body object is level 1, so a pass-through field nested MAX_JSON_DEPTH times is one level too deep.
    body = b'{"model": "m1", "messages": [{"role": "user", "content": "hi"}], "metadata": '
    body += b'{"a": ' * levels + b'"leaf"' + b"}" * levels + b"}"
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert core.requests == []


async def test_body_nested_up_to_the_limit_passes(facade: RunningFacade, core: FakeCore) -> None:
    response = await _post(
        facade, "/v1/embeddings", {"model": "m1", "input": "a", "extra": _nested(MAX_JSON_DEPTH - 1)}
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/auth/register", {"email": 5, "password": "correct horse"}, "email", "invalid_type"),
        ("/v1/auth/login", {"email": "a@example.com", "pasword": "x"}, "pasword", "unknown_parameter"),
        ("/v1/admin/users/1/credits", {"amount_micro_usd": "lots"}, "amount_micro_usd", "invalid_type"),
        ("/v1/admin/users/1/credits", {"amount_micro_usd": "9" * 30}, "amount_micro_usd", "invalid_type"),
        ("/v1/admin/users/1/credits", {"amount_micro_usd": True}, "amount_micro_usd", "invalid_type"),
    ],
)
async def test_account_and_admin_parse_errors_have_codes_and_plain_messages(
    facade: RunningFacade, path: str, body: dict[str, Any], param: str, code: str
) -> None:
    response = await _post(facade, path, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    for internal in ("atoma.", "Request", "Failed to parse", "int()", "bytes-like", "Available Fields"):
        assert internal not in error["message"]


async def test_bad_path_value_is_a_short_plain_400(facade: RunningFacade) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.get(f"/v1/admin/users/{'9' * 5000}/balance")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("user_id", "invalid_value") and len(error["message"]) < 200


# --- the facade as atoma-proxy serves it, on raw sockets ---

HEADER_TIMEOUT = BODY_TIMEOUT = 0.5


@pytest.fixture(scope="module")
async def served(running_core: RunningCore) -> AsyncIterator[tuple[str, int]]:
    settings = Settings(
        facade=FacadeSettings(
            host="127.0.0.1",
            port=0,
            core_target=running_core.target,
            header_timeout=HEADER_TIMEOUT,
            body_timeout=BODY_TIMEOUT,
        )
    )
    server = FacadeServer(settings)
    port = await server.start()
    yield "127.0.0.1", port
    await server.stop()


async def _dribble_until_closed(address: tuple[str, int], head: bytes, dribble: bytes) -> bytes:
    """Send `head`, then `dribble` one byte every 50 ms (cycling) until the server closes; all it answered."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(head)

    async def send_slowly() -> None:
        index = 0
        while True:
            await asyncio.sleep(0.05)
            writer.write(dribble[index % len(dribble) : index % len(dribble) + 1])
            index += 1

    sender = asyncio.create_task(send_slowly())
    try:
        return await asyncio.wait_for(reader.read(), GUARD)  # read() returns at EOF: the server closed
    finally:
        sender.cancel()
        writer.close()


def _parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, orjson.loads(body)


async def test_headers_dribbled_byte_by_byte_get_408_and_the_connection_closed(served: tuple[str, int]) -> None:
    raw = await _dribble_until_closed(served, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", b"x-slow: aaaa")

    status, headers, body = _parse(raw)
    assert status == 408 and headers["content-type"] == "application/json"
    assert body["error"]["code"] == "request_timeout"


async def test_body_dribbled_byte_by_byte_gets_408_and_the_connection_closed(
    served: tuple[str, int], core: FakeCore
) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer k\r\ncontent-length: 100000\r\n\r\n{"
    )

    raw = await _dribble_until_closed(served, head, b" ")

    status, _, body = _parse(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert core.requests == []


async def test_connection_that_sends_nothing_is_closed(served: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*served)
    try:
        raw = await asyncio.wait_for(reader.read(), GUARD)
    finally:
        writer.close()

    assert _parse(raw)[0] == 408


async def test_malformed_http_gets_the_json_envelope(served: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*served)
    writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n")
    try:
        raw = await asyncio.wait_for(reader.read(), GUARD)
    finally:
        writer.close()

    status, headers, body = _parse(raw)
    assert status == 400 and headers["content-type"] == "application/json"
    assert body == {
        "error": {
            "message": "Invalid HTTP request received.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request",
        }
    }


async def test_prompt_clients_on_a_kept_alive_connection_are_served(served: tuple[str, int], core: FakeCore) -> None:
    async with httpx.AsyncClient(base_url=f"http://{served[0]}:{served[1]}") as http:
        for _ in range(2):
            response = await http.post(
                "/v1/embeddings", json={"model": "m1", "input": "a"}, headers={"authorization": "Bearer k"}
            )
            assert response.status_code == 200
            await asyncio.sleep(HEADER_TIMEOUT + BODY_TIMEOUT)  # idle between requests is keep-alive's business
