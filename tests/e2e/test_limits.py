"""Integers from outside are bounded, end to end over REST on both databases (README "Limits").

Past a limit the client gets OpenAI's 400 naming the field, and nothing changed: the balance is still
readable and the same (SQLite once turned an overflowing credited total into a float, for good).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.core.limits import MAX_OUTPUT_TOKENS
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import ADMIN_TOKEN, CHAT, Stack

INT64_MAX = 2**63 - 1
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct horse battery"


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        yield client


async def _user(rest: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"limits-{secrets.token_hex(6)}@example.com"
    user = (await rest.post("/v1/auth/register", json={"email": email, "password": PASSWORD})).json()["user"]
    grant = (await rest.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    return user["id"], {"authorization": f"Bearer {grant['access_token']}"}


def _invalid(response: httpx.Response) -> Any:
    assert response.status_code == 400, response.text
    return response.json()["error"]["param"]


async def test_a_credit_of_int64_max_twice_is_a_400_and_the_balance_stays_readable(rest: httpx.AsyncClient) -> None:
    user_id, token = await _user(rest)
    ok = {"amount_micro_usd": "1000", "idempotency_key": f"ok-{user_id}"}
    assert (await rest.post(f"/v1/admin/users/{user_id}/credits", json=ok, headers=ADMIN)).status_code == 200

    refused = [
        await rest.post(
            f"/v1/admin/users/{user_id}/credits",
            json={"amount_micro_usd": str(INT64_MAX), "idempotency_key": f"max-{user_id}-{attempt}"},
            headers=ADMIN,
        )
        for attempt in range(2)
    ]
    mine = await rest.get("/v1/balance", headers=token)
    theirs = await rest.get(f"/v1/admin/users/{user_id}/balance", headers=ADMIN)

    assert [_invalid(response) for response in refused] == ["amount_micro_usd", "amount_micro_usd"]
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["balance"]["credited_micro_usd"] == mine.json()["balance"]["available_micro_usd"] == "1000"
    assert theirs.json()["balance"] == mine.json()["balance"]


async def test_output_caps_past_the_limit_are_a_400_naming_the_field(stack: Stack, rest: httpx.AsyncClient) -> None:
    headers = {"authorization": f"Bearer {stack.api_key}"}
    messages = [{"role": "user", "content": "hi"}]
    cases = [
        ("/v1/chat/completions", {"messages": messages, "max_tokens": INT64_MAX}, "max_tokens"),
        ("/v1/chat/completions", {"messages": messages, "max_completion_tokens": INT64_MAX}, "max_completion_tokens"),
        ("/v1/chat/completions", {"messages": messages, "max_tokens": MAX_OUTPUT_TOKENS + 1}, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": INT64_MAX}, "max_tokens"),
        ("/v1/chat/completions", {"messages": messages, "n": 129}, "n"),
    ]

    params = [_invalid(await rest.post(path, json={"model": CHAT, **body}, headers=headers)) for path, body, _ in cases]

    assert params == [param for _, _, param in cases]


async def test_stack_units_of_2_62_are_a_400_and_charge_nothing(rest: httpx.AsyncClient) -> None:
    user_id, token = await _user(rest)
    credit = {"amount_micro_usd": "1000000", "idempotency_key": f"stack-{user_id}"}
    assert (await rest.post(f"/v1/admin/users/{user_id}/credits", json=credit, headers=ADMIN)).status_code == 200

    refused = await rest.post(
        "/v1/stacks", json={"node_id": "steady", "model": CHAT, "compute_units": str(2**62)}, headers=token
    )
    balance = (await rest.get("/v1/balance", headers=token)).json()["balance"]

    assert _invalid(refused) == "compute_units"
    assert balance["available_micro_usd"] == "1000000"


@pytest.mark.parametrize(
    "fields",
    [{"max_tokens": INT64_MAX}, {"max_completion_tokens": INT64_MAX}, {"max_tokens": MAX_OUTPUT_TOKENS + 1}],
    ids=["max_tokens", "max_completion_tokens", "max_tokens_past_2_20"],
)
async def test_output_caps_past_the_limit_are_invalid_argument_with_errorinfo_over_grpc(
    stack: Stack, fields: dict[str, int]
) -> None:
    request = pb.ChatCompletionRequest(
        model=CHAT,
        messages=[chat_pb2.ChatMessage(role="user", text="hi")],
        **fields,  # type: ignore[arg-type]
    )
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        call = pb_grpc.RoutingServiceStub(channel).ChatCompletion(
            request, metadata=(("authorization", f"Bearer {stack.api_key}"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [event async for event in call]
    status = rpc_status.from_call(raised.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.reason, info.metadata["param"]) == ("INVALID_REQUEST", next(iter(fields)))
