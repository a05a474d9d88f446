"""AccountClient wraps every RPC of both account services, sends the right credential, and maps errors."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from atoma_proxy.clients import AccountClient, AuthenticationError, NotFoundError
from atoma_proxy.core.errors import NotFound, PermissionDenied
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources

ACCOUNT_SERVICE = pb.DESCRIPTOR.services_by_name["AccountService"]
ADMIN_SERVICE = admin_pb.DESCRIPTOR.services_by_name["AccountAdminService"]
ADMIN_TOKEN = "admin-token-for-tests"
ACCESS_TOKEN = "access-token"

MINIMAL_CALLS: dict[str, dict[str, Any]] = {
    "Register": {"email": "a@b.co", "password": "password1"},
    "Login": {"email": "a@b.co", "password": "password1"},
    "RefreshToken": {"refresh_token": "rt"},
    "Logout": {"refresh_token": "rt"},
    "GetProfile": {},
    "CreateApiKey": {"name": "k"},
    "ListApiKeys": {},
    "RevokeApiKey": {"key_id": 3},
    "GetBalance": {},
    "ListUsage": {"page_size": 10},
    "GetUsageSummary": {"start_date": "2025-01-01"},
    "BuyStack": {"node_id": "n", "model": "m", "compute_units": 5},
    "ListStacks": {},
    "CreateWalletChallenge": {},
    "LinkWallet": {"nonce": "n", "signature": "s"},
    "GetWallet": {},
    "DepositUsdc": {"transaction_digest": "d"},
    "CreditBalance": {"user_id": 1, "amount_micro_usd": 5, "idempotency_key": "k"},
    "SetUserModelPrice": {"user_id": 1, "model": "m", "input_price_per_million": 1, "output_price_per_million": 2},
    "ListUserModelPrices": {"user_id": 1},
    "GetUserBalance": {"user_id": 1},
}
ALL_METHODS = [*ACCOUNT_SERVICE.methods, *ADMIN_SERVICE.methods]
# Sent without credentials: the client's token must not leak to calls that do not need it.
CREDENTIAL_FREE = {"Register", "Login", "RefreshToken", "Logout"}


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Recorded:
    method: str
    request: Any
    metadata: dict[str, str]


@dataclass
class FakeAccounts:
    """Answers each RPC with `responses[name]` (default: empty), or fails with `error`; records every call."""

    target: str = ""
    calls: list[Recorded] = field(default_factory=list)
    responses: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None

    def handler(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)

        async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
            self.calls.append(Recorded(method.name, request, metadata))
            if self.error is not None:
                await context.abort_with_status(to_grpc_status(self.error))
            return self.responses.get(method.name, response_class())

        return grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString
        )


def _generic(fake: FakeAccounts, service: ServiceDescriptor) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(service.full_name, {m.name: fake.handler(m) for m in service.methods})


@pytest.fixture
async def fake() -> AsyncIterator[FakeAccounts]:
    server = grpc.aio.server()
    fake = FakeAccounts()
    server.add_generic_rpc_handlers((_generic(fake, ACCOUNT_SERVICE), _generic(fake, ADMIN_SERVICE)))
    fake.target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    yield fake
    await server.stop(None)


@pytest.fixture
async def client(fake: FakeAccounts) -> AsyncIterator[AccountClient]:
    async with await AccountClient.connect(fake.target, bearer_token=ACCESS_TOKEN, admin_token=ADMIN_TOKEN) as client:
        yield client


def test_the_rpc_table_here_lists_every_rpc() -> None:
    assert set(MINIMAL_CALLS) == {method.name for method in ALL_METHODS}


@pytest.mark.parametrize("rpc", [method.name for method in ALL_METHODS])
def test_every_rpc_has_a_method_with_timeout_and_metadata(rpc: str) -> None:
    method = getattr(AccountClient, _snake_case(rpc), None)

    assert callable(method), f"AccountClient does not wrap {rpc}"
    for name, parameter in inspect.signature(method).parameters.items():
        if name != "self":
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, (rpc, name)
    assert {"timeout", "metadata"} <= set(inspect.signature(method).parameters)


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda method: method.name)
async def test_every_rpc_method_calls_its_rpc_with_its_credential(
    client: AccountClient, fake: FakeAccounts, method: MethodDescriptor
) -> None:
    await getattr(client, _snake_case(method.name))(**MINIMAL_CALLS[method.name], timeout=30, metadata={"X-Probe": "p"})

    [call] = fake.calls
    assert call.method == method.name
    assert call.metadata["x-probe"] == "p"
    for field_name, value in MINIMAL_CALLS[method.name].items():
        assert getattr(call.request, field_name) == value
    if method.name in CREDENTIAL_FREE:
        assert "authorization" not in call.metadata
    else:
        expected = ADMIN_TOKEN if method.containing_service is ADMIN_SERVICE else ACCESS_TOKEN
        assert call.metadata["authorization"] == f"Bearer {expected}"


async def test_login_makes_the_client_use_the_new_access_token(client: AccountClient, fake: FakeAccounts) -> None:
    fake.responses["Login"] = pb.LoginResponse(access_token="fresh", token_type="Bearer", expires_in=900)

    grant = await client.login(email="a@b.co", password="password1")
    await client.get_balance()

    assert grant.access_token == "fresh" and grant.expires_in == 900
    assert fake.calls[-1].metadata["authorization"] == "Bearer fresh"


async def test_results_are_typed_with_times_and_raw(client: AccountClient, fake: FakeAccounts) -> None:
    created = resources.ApiKey(id=4, name="ci", prefix="sk-atoma-abcdefg", state=resources.API_KEY_STATE_REVOKED)
    created.create_time.FromDatetime(datetime(2025, 11, 23, 12, 0, tzinfo=UTC))
    created.revoke_time.FromDatetime(datetime(2025, 11, 23, 13, 0, tzinfo=UTC))
    fake.responses["ListApiKeys"] = pb.ListApiKeysResponse(api_keys=[created])
    fake.responses["ListUsage"] = pb.ListUsageResponse(records=[resources.UsageRecord(id=9, cost_micro_usd=12)])

    [key] = await client.list_api_keys()
    page = await client.list_usage()

    assert (key.id, key.active, key.last_used_at) == (4, False, None)
    assert key.created_at == datetime(2025, 11, 23, 12, 0, tzinfo=UTC)
    assert key.revoked_at == datetime(2025, 11, 23, 13, 0, tzinfo=UTC)
    assert key.raw == created
    assert [(r.id, r.cost) for r in page.records] == [(9, 12)] and page.next_page_token is None


@pytest.mark.parametrize(
    ("error", "cls", "reason"),
    [
        (PermissionDenied("no"), AuthenticationError, "PERMISSION_DENIED"),
        (NotFound("no", reason="API_KEY_NOT_FOUND"), NotFoundError, "API_KEY_NOT_FOUND"),
    ],
)
async def test_errors_are_the_routing_error_family(
    client: AccountClient, fake: FakeAccounts, error: Exception, cls: type, reason: str
) -> None:
    fake.error = error

    with pytest.raises(cls) as raised:
        await client.revoke_api_key(key_id=1)

    assert raised.value.reason == reason and raised.value.domain == "atoma.network"


async def test_no_token_sends_no_authorization(fake: FakeAccounts) -> None:
    async with await AccountClient.connect(fake.target) as anonymous:
        await anonymous.register(email="a@b.co", password="password1")

    assert "authorization" not in fake.calls[0].metadata
