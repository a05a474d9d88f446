"""Users that flood or probe the running proxy: REST through the facade, gRPC against the core (issue 10, 11-15)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as accounts_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as accounts_grpc
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import ADMIN_TOKEN, CHAT, Stack
from tests.support.processes import run_command

PASSWORD = "correct horse battery"
# The stack's default sign-in limit per email (accounts.auth_attempts_per_email).
PER_EMAIL = 10


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=60) as client:
        yield client


def _key(stack: Stack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.api_key}"),)


def _status(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status: {error.code()} {error.details()}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return error.code(), info.reason, status.message


def _client_address() -> str:
    """An address of the TEST-NET-2 range, so that a test's sign-ins do not count against the others'."""
    return f"198.51.100.{secrets.randbelow(250) + 1}"


# --- 12: the right status for the right fault ---


async def test_long_model_name_is_400_quoting_a_short_prefix(stack: Stack, rest: httpx.AsyncClient) -> None:
    model = "m" * 10_000
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}

    response = await rest.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {stack.api_key}"})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "model" and len(error["message"]) < 200


async def test_unknown_long_model_over_grpc_is_not_found_with_a_short_message(stack: Stack) -> None:
    model = "m" * 250  # within the length limit: the NOT_FOUND message quotes a prefix
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        request = pb.EmbeddingsRequest(model=model, input=["hi"])
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Embeddings(request, metadata=_key(stack))

    code, reason, message = _status(raised.value)
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND") and len(message) < 200


async def test_long_routing_strategy_over_grpc_is_invalid_argument_not_resource_exhausted(stack: Stack) -> None:
    metadata = (*_key(stack), ("x-atoma-routing-strategy", "s" * 5_000))
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Embeddings(pb.EmbeddingsRequest(model=CHAT, input=["hi"]), metadata=metadata)

    code, reason, message = _status(raised.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST") and len(message) < 300


@pytest.mark.parametrize(
    ("method", "streaming"),
    [
        ("/atoma.routing.v1.RoutingService/ChatCompletion", True),
        ("/atoma.routing.v1.RoutingService/ListModels", False),
        ("/atoma.accounts.v1.AccountService/Login", False),
    ],
)
async def test_malformed_protobuf_is_invalid_argument_with_error_info(
    stack: Stack, method: str, streaming: bool
) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, with an absurd length
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        if streaming:
            call: Any = channel.unary_stream(method)(garbage, metadata=_key(stack))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await channel.unary_unary(method)(garbage, metadata=_key(stack))

    code, reason, message = _status(raised.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert "DecodeError" not in message and "class" not in message


async def test_pass_through_json_nested_too_deep_over_grpc_is_invalid_argument(stack: Stack) -> None:
    extra = '{"metadata": ' + '{"a": ' * 300 + "1" + "}" * 300 + "}"
    request = pb.ChatCompletionRequest(
        model=CHAT, messages=[chat_pb2.ChatMessage(role="user", text="hi")], max_tokens=2, extra_json=extra
    )
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in pb_grpc.RoutingServiceStub(channel).ChatCompletion(request, metadata=_key(stack)):
                pass

    code, reason, _ = _status(raised.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")


# --- 11: sign-in floods ---


async def test_login_flood_on_one_email_is_429_with_retry_after(rest: httpx.AsyncClient) -> None:
    email = f"victim-{secrets.token_hex(6)}@example.com"
    assert (await rest.post("/v1/auth/register", json={"email": email, "password": PASSWORD})).status_code == 200
    wrong = {"email": email, "password": "not the password"}

    async def login() -> httpx.Response:
        return await rest.post("/v1/auth/login", json=wrong, headers={"x-forwarded-for": _client_address()})

    # At once (the bucket refills one attempt every 6 s); the registration took one attempt of the budget.
    responses = await asyncio.gather(*(login() for _ in range(PER_EMAIL)))

    assert sorted(r.status_code for r in responses) == [401] * (PER_EMAIL - 1) + [429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


async def test_login_flood_beyond_the_hashing_queue_is_429_at_once(rest: httpx.AsyncClient) -> None:
    async def login(index: int) -> httpx.Response:
        body = {"email": f"nobody-{index}-{secrets.token_hex(4)}@example.com", "password": "guess-guess"}
        return await rest.post("/v1/auth/login", json=body, headers={"x-forwarded-for": _client_address()})

    responses = await asyncio.gather(*(login(i) for i in range(60)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {401, 429}, statuses  # 4 hashing and 16 waiting at most: the rest are told to retry
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"


# --- 15: one email, one account ---


async def test_email_variants_are_one_account_on_every_path(stack: Stack, rest: httpx.AsyncClient) -> None:
    local = f"strasse-{secrets.token_hex(4)}"
    email = f"{local}@example.com"
    rest.headers["x-forwarded-for"] = _client_address()  # apart from other tests' sign-ins from this host
    registered = await rest.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 200, registered.text
    user_id = registered.json()["user"]["id"]

    # Full-width letters (NFKC) and `ß` (case folding) name the same account.
    variant = local.replace("ss", "ß").upper().replace("E", "\uff25") + "@EXAMPLE.COM"
    again = await rest.post("/v1/auth/register", json={"email": variant, "password": PASSWORD})
    assert again.status_code == 409 and again.json()["error"]["code"] == "email_taken"
    login = await rest.post("/v1/auth/login", json={"email": variant, "password": PASSWORD})
    assert login.status_code == 200, login.text

    env = {"ATOMA_CONFIG": str(stack.config_path), "ATOMA_DATABASE__URL": stack.database_url}
    run_command("balance", "credit", "--email", variant, "--micro-usd", "1234", env=env)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    balance = (await rest.get(f"/v1/admin/users/{user_id}/balance", headers=admin)).json()
    assert balance["balance"]["credited_micro_usd"] == "1234"


async def test_account_grpc_login_is_throttled_per_email_like_rest(stack: Stack) -> None:
    email = f"grpc-{secrets.token_hex(6)}@example.com"
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = accounts_grpc.AccountServiceStub(channel)

        async def login() -> grpc.StatusCode:
            metadata = (("x-atoma-client-address", _client_address()),)  # honoured: this peer is loopback
            try:
                await stub.Login(accounts_pb.LoginRequest(email=email, password=PASSWORD), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                return error.code()
            raise AssertionError("an unknown email logged in")

        codes = await asyncio.gather(*(login() for _ in range(PER_EMAIL + 1)))

    assert (
        sorted(codes, key=lambda c: c.value[0])
        == [grpc.StatusCode.RESOURCE_EXHAUSTED] + [grpc.StatusCode.UNAUTHENTICATED] * PER_EMAIL
    )
