"""Integers from outside are bounded (README "Limits"): past a limit INVALID_ARGUMENT names the field, nothing changes.

Both databases: SQLite turns an overflowing sum into a float (that balance then unreadable), PostgreSQL
refuses it with "bigint out of range"; either way the caller must get a 400, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings
from atoma_proxy.core.ledger._sql import balances
from atoma_proxy.core.limits import MAX_COMPUTE_UNITS, MAX_CREDIT_MICRO_USD, MAX_CREDITED_MICRO_USD
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from tests.core.accounts.conftest import JWT_SECRET, FakeClock
from tests.core.accounts.test_services import ADMIN, ADMIN_TOKEN, Core, _account, _failure, _serve

INT64_MAX = 2**63 - 1


@pytest.fixture
async def core(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> AsyncIterator[Core]:
    settings = AccountsSettings(jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN)
    async for running in _serve(sessions, settings, clock):
        yield running


def _credit(user_id: int, amount: int, key: str) -> admin_pb.CreditBalanceRequest:
    return admin_pb.CreditBalanceRequest(user_id=user_id, amount_micro_usd=amount, idempotency_key=key)


async def test_a_credit_of_int64_max_is_refused_twice_and_the_balance_stays_readable(core: Core) -> None:
    account = await _account(core)
    await core.admin.CreditBalance(_credit(account.user_id, 1_000, f"ok-{account.user_id}"), metadata=ADMIN)

    failures = [
        await _failure(core.admin.CreditBalance(_credit(account.user_id, amount, key), metadata=ADMIN))
        for amount, key in ((INT64_MAX, "max-1"), (INT64_MAX, "max-2"), (MAX_CREDIT_MICRO_USD + 1, "over"))
    ]
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)
    admin_view = await core.admin.GetUserBalance(
        admin_pb.GetUserBalanceRequest(user_id=account.user_id), metadata=ADMIN
    )

    for code, info in failures:
        assert (code, info.reason, info.metadata["param"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "amount_micro_usd",
        )
    assert (balance.balance.credited_micro_usd, balance.balance.available_micro_usd) == (1_000, 1_000)
    assert admin_view.balance == balance.balance


async def test_a_credit_that_would_pass_the_credited_limit_is_refused_and_changes_nothing(
    core: Core, sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await _account(core)
    await core.admin.CreditBalance(_credit(account.user_id, 1, f"first-{account.user_id}"), metadata=ADMIN)
    near = MAX_CREDITED_MICRO_USD - 10
    async with sessions() as session, session.begin():  # as if credited many times over
        await session.execute(update(balances).where(balances.c.user_id == account.user_id).values(credited=near))

    big = _credit(account.user_id, MAX_CREDIT_MICRO_USD, f"big-{account.user_id}")
    code, info = await _failure(core.admin.CreditBalance(big, metadata=ADMIN))
    retried_smaller = await core.admin.CreditBalance(
        _credit(account.user_id, 10, f"fits-{account.user_id}"), metadata=ADMIN
    )
    _, replayed = await _failure(
        core.admin.CreditBalance(_credit(account.user_id, 1, f"big-{account.user_id}"), metadata=ADMIN)
    )
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)

    assert (code, info.reason, info.metadata["param"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        "amount_micro_usd",
    )
    assert retried_smaller.applied and retried_smaller.balance.credited_micro_usd == MAX_CREDITED_MICRO_USD
    # The refused credit's key was not recorded (else a credit of 1 with it would be IDEMPOTENCY_KEY_REUSED).
    assert replayed.reason == "INVALID_REQUEST"
    assert (balance.balance.credited_micro_usd, balance.balance.available_micro_usd) == (
        MAX_CREDITED_MICRO_USD,
        MAX_CREDITED_MICRO_USD,
    )


async def test_stack_units_and_prices_past_their_limits_are_invalid_and_charge_nothing(core: Core) -> None:
    account = await _account(core)
    await core.admin.CreditBalance(_credit(account.user_id, 10**9, f"s-{account.user_id}"), metadata=ADMIN)

    failures = [
        await _failure(
            core.accounts.BuyStack(
                pb.BuyStackRequest(node_id="node-a", model="m1", compute_units=units), metadata=account.token
            )
        )
        for units in (2**62, INT64_MAX, MAX_COMPUTE_UNITS + 1)
    ]
    prices = [
        await _failure(
            core.admin.SetUserModelPrice(
                admin_pb.SetUserModelPriceRequest(user_id=account.user_id, model="m1", **{field: INT64_MAX}),
                metadata=ADMIN,
            )
        )
        for field in ("input_price_per_million", "output_price_per_million")
    ]
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)
    stacks = await core.accounts.ListStacks(pb.ListStacksRequest(), metadata=account.token)

    assert [(code, info.metadata["param"]) for code, info in failures] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "compute_units")
    ] * 3
    assert [info.metadata["param"] for _, info in prices] == ["input_price_per_million", "output_price_per_million"]
    assert (balance.balance.debited_micro_usd, list(stacks.stacks)) == (0, [])
