"""The account servicers over gRPC: credentials per RPC, admin refusals, money views, ErrorInfo on every failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings, NodeConfig
from atoma_proxy.core.accounts import build_account_services
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.errors import REASONS
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.persistence.ledger_models import DailyUsage, UsageRecord
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as admin_grpc
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources
from tests.core.accounts.conftest import JWT_SECRET, FakeClock, cheap_hasher, new_email

ADMIN_TOKEN = "admin-token-0123456789"
PASSWORD = "password123"
NODE = NodeConfig(
    id="node-a", url="http://127.0.0.1:9", models=["m1"], input_price_per_million=100, output_price_per_million=300
)


@dataclass
class Core:
    accounts: pb_grpc.AccountServiceStub
    admin: admin_grpc.AccountAdminServiceStub


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


ADMIN = _bearer(ADMIN_TOKEN)


async def _serve(
    sessions: async_sessionmaker[AsyncSession], settings: AccountsSettings, clock: FakeClock
) -> AsyncIterator[Core]:
    api_keys = ApiKeyAuthenticator(sessions, 1.0)
    account_service, admin_service = build_account_services(
        settings, sessions, api_keys, NodeRegistry.from_config([NODE]), hasher=cheap_hasher(), clock=clock
    )
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_AccountServiceServicer_to_server(account_service, server)
    admin_grpc.add_AccountAdminServiceServicer_to_server(admin_service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Core(pb_grpc.AccountServiceStub(channel), admin_grpc.AccountAdminServiceStub(channel))
    finally:
        await server.stop(None)
        await api_keys.aclose()


@pytest.fixture
async def core(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> AsyncIterator[Core]:
    settings = AccountsSettings(jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN)
    async for running in _serve(sessions, settings, clock):
        yield running


@dataclass
class Account:
    user_id: int
    email: str
    login: pb.LoginResponse

    @property
    def token(self) -> tuple[tuple[str, str], ...]:
        return _bearer(self.login.access_token)


async def _account(core: Core) -> Account:
    email = new_email()
    registered = await core.accounts.Register(pb.RegisterRequest(email=email.upper(), password=PASSWORD))
    login = await core.accounts.Login(pb.LoginRequest(email=email, password=PASSWORD))
    return Account(registered.user.id, email, login)


async def _failure(call) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    status = rpc_status.from_call(raised.value)
    assert status is not None, "the status carries no google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "atoma.network"
    assert REASONS[info.reason] == raised.value.code(), "the reason's documented code differs"
    return raised.value.code(), info


async def test_register_normalizes_the_email_and_login_returns_a_bearer_grant(core: Core) -> None:
    account = await _account(core)

    profile = await core.accounts.GetProfile(pb.GetProfileRequest(), metadata=account.token)

    assert (profile.user.id, profile.user.email, profile.user.has_password) == (account.user_id, account.email, True)
    assert account.login.token_type == "Bearer" and account.login.expires_in == 15 * 60
    assert account.login.refresh_token.startswith("rt-atoma-")


@pytest.mark.parametrize(
    ("request_", "reason", "param"),
    [
        (pb.RegisterRequest(email="not-an-email", password=PASSWORD), "INVALID_REQUEST", "email"),
        (pb.RegisterRequest(email="nul\x00@example.com", password=PASSWORD), "INVALID_REQUEST", "email"),
        (pb.RegisterRequest(email="a@example.com", password="short"), "INVALID_REQUEST", "password"),
    ],
)
async def test_register_validates_its_fields(core: Core, request_, reason: str, param: str) -> None:  # type: ignore[no-untyped-def]
    code, info = await _failure(core.accounts.Register(request_))

    assert (code, info.reason, info.metadata["param"]) == (grpc.StatusCode.INVALID_ARGUMENT, reason, param)


async def test_auth_failures_carry_their_reasons(core: Core) -> None:
    account = await _account(core)

    cases = [
        (core.accounts.Register(pb.RegisterRequest(email=account.email, password=PASSWORD)), "EMAIL_TAKEN"),
        (core.accounts.Login(pb.LoginRequest(email=account.email, password="wrong-password")), "INVALID_CREDENTIALS"),
        (core.accounts.GetProfile(pb.GetProfileRequest()), "MISSING_CREDENTIALS"),
        (core.accounts.GetProfile(pb.GetProfileRequest(), metadata=_bearer("not.a.jwt")), "INVALID_TOKEN"),
        (core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=_bearer("sk-atoma-unknown")), "INVALID_API_KEY"),
        (core.accounts.RefreshToken(pb.RefreshTokenRequest(refresh_token="rt-atoma-x")), "INVALID_TOKEN"),
        (core.accounts.RefreshToken(pb.RefreshTokenRequest()), "INVALID_REQUEST"),
    ]
    for call, reason in cases:
        _, info = await _failure(call)
        assert info.reason == reason


async def test_expired_and_logged_out_access_tokens_are_refused(core: Core, clock: FakeClock) -> None:
    account = await _account(core)
    other = await core.accounts.Login(pb.LoginRequest(email=account.email, password=PASSWORD))

    await core.accounts.Logout(pb.LogoutRequest(refresh_token=account.login.refresh_token))
    _, logged_out = await _failure(core.accounts.GetProfile(pb.GetProfileRequest(), metadata=account.token))
    await core.accounts.GetProfile(pb.GetProfileRequest(), metadata=_bearer(other.access_token))
    clock.advance(15 * 60)
    _, expired = await _failure(core.accounts.GetProfile(pb.GetProfileRequest(), metadata=_bearer(other.access_token)))

    assert (logged_out.reason, expired.reason) == ("TOKEN_REVOKED", "TOKEN_EXPIRED")


async def test_api_keys_read_but_only_access_tokens_write(core: Core) -> None:
    account = await _account(core)
    created = await core.accounts.CreateApiKey(pb.CreateApiKeyRequest(name=" ci "), metadata=account.token)
    key = _bearer(created.secret)

    listed = await core.accounts.ListApiKeys(pb.ListApiKeysRequest(), metadata=key)
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=key)
    for call in (
        core.accounts.CreateApiKey(pb.CreateApiKeyRequest(name="more"), metadata=key),
        core.accounts.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=created.api_key.id), metadata=key),
        core.accounts.BuyStack(pb.BuyStackRequest(node_id="node-a", model="m1", compute_units=1), metadata=key),
    ):
        code, info = await _failure(call)
        assert (code, info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")

    assert [(k.name, k.state) for k in listed.api_keys] == [("ci", resources.API_KEY_STATE_ACTIVE)]
    assert balance.balance.available_micro_usd == 0


async def test_revoke_over_grpc_and_others_keys_are_not_found(core: Core) -> None:
    owner, stranger = await _account(core), await _account(core)
    created = await core.accounts.CreateApiKey(pb.CreateApiKeyRequest(name="k"), metadata=owner.token)

    _, not_found = await _failure(
        core.accounts.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=created.api_key.id), metadata=stranger.token)
    )
    revoked = await core.accounts.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=created.api_key.id), metadata=owner.token)
    _, refused = await _failure(core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=_bearer(created.secret)))

    assert not_found.reason == "API_KEY_NOT_FOUND"
    assert revoked.api_key.state == resources.API_KEY_STATE_REVOKED and revoked.api_key.HasField("revoke_time")
    assert refused.reason == "INVALID_API_KEY"  # at once on the instance that revoked it


async def test_admin_refuses_missing_and_wrong_tokens(core: Core) -> None:
    account = await _account(core)
    request = admin_pb.GetUserBalanceRequest(user_id=account.user_id)

    missing_code, missing = await _failure(core.admin.GetUserBalance(request))
    wrong_code, wrong = await _failure(core.admin.GetUserBalance(request, metadata=_bearer(ADMIN_TOKEN + "x")))
    user_code, as_user = await _failure(core.admin.GetUserBalance(request, metadata=account.token))

    assert (missing_code, missing.reason) == (grpc.StatusCode.UNAUTHENTICATED, "MISSING_CREDENTIALS")
    assert (wrong_code, wrong.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert (user_code, as_user.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_without_configuration_both_services_are_disabled(
    sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async for core in _serve(sessions, AccountsSettings(), clock):
        account_code, accounts = await _failure(core.accounts.Register(pb.RegisterRequest(email="a@b.co")))
        _, profile = await _failure(core.accounts.GetProfile(pb.GetProfileRequest()))
        admin_code, admin = await _failure(
            core.admin.GetUserBalance(admin_pb.GetUserBalanceRequest(user_id=1), metadata=ADMIN)
        )

    assert (account_code, accounts.reason, profile.reason) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "ACCOUNTS_DISABLED",
        "ACCOUNTS_DISABLED",
    )
    assert (admin_code, admin.reason) == (grpc.StatusCode.UNIMPLEMENTED, "ADMIN_DISABLED")


async def test_credits_are_idempotent_and_show_in_both_balances(core: Core) -> None:
    account = await _account(core)
    credit = admin_pb.CreditBalanceRequest(
        user_id=account.user_id, amount_micro_usd=2_500_000, idempotency_key=f"pay-{account.user_id}", note="top-up"
    )

    first = await core.admin.CreditBalance(credit, metadata=ADMIN)
    retried = await core.admin.CreditBalance(credit, metadata=ADMIN)
    mine = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)
    theirs = await core.admin.GetUserBalance(admin_pb.GetUserBalanceRequest(user_id=account.user_id), metadata=ADMIN)
    credit.amount_micro_usd = 1
    _, reused = await _failure(core.admin.CreditBalance(credit, metadata=ADMIN))

    assert (first.applied, retried.applied) == (True, False)
    assert first.balance.available_micro_usd == retried.balance.available_micro_usd == 2_500_000
    assert mine.balance == theirs.balance == first.balance
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_admin_requests_are_validated_and_users_must_exist(core: Core) -> None:
    cases = [
        (admin_pb.CreditBalanceRequest(user_id=10**12, amount_micro_usd=1, idempotency_key="k"), "USER_NOT_FOUND"),
        (admin_pb.CreditBalanceRequest(user_id=1, amount_micro_usd=0, idempotency_key="k"), "INVALID_REQUEST"),
        (admin_pb.CreditBalanceRequest(user_id=1, amount_micro_usd=1), "INVALID_REQUEST"),
    ]
    for request, reason in cases:
        _, info = await _failure(core.admin.CreditBalance(request, metadata=ADMIN))
        assert info.reason == reason
    _, price = await _failure(
        core.admin.SetUserModelPrice(
            admin_pb.SetUserModelPriceRequest(user_id=1, model="m1", input_price_per_million=-1), metadata=ADMIN
        )
    )
    assert price.reason == "INVALID_REQUEST" and price.metadata["param"] == "input_price_per_million"


async def test_user_prices_newest_wins(core: Core) -> None:
    account = await _account(core)
    for input_price, output_price in ((10, 20), (30, 40)):
        await core.admin.SetUserModelPrice(
            admin_pb.SetUserModelPriceRequest(
                user_id=account.user_id,
                model="m1",
                input_price_per_million=input_price,
                output_price_per_million=output_price,
            ),
            metadata=ADMIN,
        )

    prices = await core.admin.ListUserModelPrices(
        admin_pb.ListUserModelPricesRequest(user_id=account.user_id), metadata=ADMIN
    )

    assert [(p.model, p.input_price_per_million, p.output_price_per_million) for p in prices.prices] == [("m1", 30, 40)]


async def test_stacks_are_bought_at_the_nodes_price_from_the_balance(core: Core) -> None:
    account = await _account(core)
    await core.admin.CreditBalance(
        admin_pb.CreditBalanceRequest(user_id=account.user_id, amount_micro_usd=1_000, idempotency_key=new_email()),
        metadata=ADMIN,
    )

    bought = await core.accounts.BuyStack(
        pb.BuyStackRequest(node_id="node-a", model="m1", compute_units=2_000_000), metadata=account.token
    )
    _, broke = await _failure(
        core.accounts.BuyStack(
            pb.BuyStackRequest(node_id="node-a", model="m1", compute_units=2_000_000), metadata=account.token
        )
    )
    _, no_node = await _failure(
        core.accounts.BuyStack(pb.BuyStackRequest(node_id="nope", model="m1", compute_units=1), metadata=account.token)
    )
    _, no_model = await _failure(
        core.accounts.BuyStack(
            pb.BuyStackRequest(node_id="node-a", model="m9", compute_units=1), metadata=account.token
        )
    )
    stacks = await core.accounts.ListStacks(pb.ListStacksRequest(), metadata=account.token)
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)

    # 2M units at the dearer of the node's prices (300 micro-USD per million) = 600.
    assert (bought.stack.price_per_million, bought.stack.cost_micro_usd, bought.stack.compute_units) == (
        300,
        600,
        2_000_000,
    )
    assert [s.id for s in stacks.stacks] == [bought.stack.id]
    assert (balance.balance.debited_micro_usd, balance.balance.available_micro_usd) == (600, 400)
    assert (broke.reason, no_node.reason, no_model.reason) == (
        "INSUFFICIENT_FUNDS",
        "NODE_NOT_FOUND",
        "MODEL_NOT_FOUND",
    )


async def test_usage_pages_and_summary(core: Core, sessions: async_sessionmaker[AsyncSession]) -> None:
    account = await _account(core)
    when = datetime(2025, 11, 20, 12, tzinfo=UTC)
    async with sessions() as session, session.begin():
        for n in range(5):
            session.add(
                UsageRecord(
                    request_id=f"req-{account.user_id}-{n}",
                    user_id=account.user_id,
                    model="m1",
                    node_id="node-a",
                    prompt_tokens=10,
                    completion_tokens=n,
                    cost=100 + n,
                    outcome="completed",
                    created_at=when,
                )
            )
        for day, model, requests, cost in ((20, "m1", 3, 300), (20, "m2", 1, 50), (21, "m1", 2, 200)):
            session.add(
                DailyUsage(
                    user_id=account.user_id,
                    day=date(2025, 11, day),
                    model=model,
                    requests=requests,
                    prompt_tokens=10 * requests,
                    completion_tokens=requests,
                    cost=cost,
                )
            )

    pages, token = [], ""
    while True:
        page = await core.accounts.ListUsage(pb.ListUsageRequest(page_size=2, page_token=token), metadata=account.token)
        pages.append([record.request_id for record in page.records])
        token = page.next_page_token
        if not token:
            break
    summary = await core.accounts.GetUsageSummary(pb.GetUsageSummaryRequest(), metadata=account.token)
    one_day = await core.accounts.GetUsageSummary(
        pb.GetUsageSummaryRequest(start_date="2025-11-21", end_date="2025-11-21"), metadata=account.token
    )
    _, bad_token = await _failure(
        core.accounts.ListUsage(pb.ListUsageRequest(page_token="garbage"), metadata=account.token)
    )
    _, bad_range = await _failure(
        core.accounts.GetUsageSummary(
            pb.GetUsageSummaryRequest(start_date="2025-11-21", end_date="2025-11-20"), metadata=account.token
        )
    )

    prefix = f"req-{account.user_id}-"
    assert pages == [[prefix + "4", prefix + "3"], [prefix + "2", prefix + "1"], [prefix + "0"]]
    assert [(d.date, d.requests, d.cost_micro_usd) for d in summary.days] == [
        ("2025-11-20", 4, 350),
        ("2025-11-21", 2, 200),
    ]
    assert [(m.model, m.requests, m.cost_micro_usd) for m in summary.models] == [("m1", 5, 500), ("m2", 1, 50)]
    assert [(d.date, d.requests) for d in one_day.days] == [("2025-11-21", 2)]
    assert (bad_token.metadata["param"], bad_range.metadata["param"]) == ("page_token", "end_date")
