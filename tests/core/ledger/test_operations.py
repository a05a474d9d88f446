"""The ledger's operations on SQLite and PostgreSQL: credits, reservations, settlement, sweeps, stacks, reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import InsufficientFunds
from atoma_proxy.core.ledger import (
    Balance,
    Charge,
    IdempotencyConflict,
    Outcome,
    buy_stack,
    credit,
    get_balance,
    list_stacks,
    list_usage,
    list_user_model_prices,
    release,
    reserve,
    set_user_model_price,
    settle,
    sweep_expired,
    usage_summary,
)
from atoma_proxy.core.ledger.reservations import DuplicateRequestId
from atoma_proxy.core.persistence.ledger_models import Reservation, UsageRecord, UserBalance
from atoma_proxy.core.persistence.models import utcnow
from tests.core.ledger.conftest import NewUser

Sessions = async_sessionmaker[AsyncSession]
LATER = timedelta(hours=1)


async def _credit(sessions: Sessions, user: int, amount: int, key: str | None = None) -> None:
    async with sessions() as session, session.begin():
        await credit(session, user_id=user, amount=amount, idempotency_key=key or f"credit-{user}-{amount}-{utcnow()}")


async def _reserve(
    sessions: Sessions, user: int, request_id: str, amount: int, *, expires_at: datetime | None = None, **kwargs: object
):  # type: ignore[no-untyped-def]
    async with sessions() as session, session.begin():
        return await reserve(
            session,
            request_id=request_id,
            user_id=user,
            api_key_id=None,
            model="m",
            amount=amount,
            expires_at=expires_at or utcnow() + LATER,
            instance_id="test",
            **kwargs,  # type: ignore[arg-type]
        )


async def _settle(sessions: Sessions, request_id: str, charge: Charge):  # type: ignore[no-untyped-def]
    async with sessions() as session, session.begin():
        return await settle(session, request_id, charge)


async def _balance(sessions: Sessions, user: int) -> Balance:
    async with sessions() as session:
        return await get_balance(session, user)


async def test_a_user_never_credited_has_a_zero_balance(sessions: Sessions, new_user: NewUser) -> None:
    assert await _balance(sessions, await new_user()) == Balance(0, 0, 0, 0)


async def test_a_credit_applies_once_per_idempotency_key(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    async with sessions() as session, session.begin():
        first = await credit(session, user_id=user, amount=5_000, idempotency_key=f"once-{user}", note="top-up")
        again = await credit(session, user_id=user, amount=5_000, idempotency_key=f"once-{user}")
        other = await credit(session, user_id=user, amount=7, idempotency_key=f"twice-{user}")
    assert (first.applied, again.applied, other.applied) == (True, False, True)
    assert first.balance == again.balance == Balance(5_000, 0, 0, 5_000)
    assert await _balance(sessions, user) == Balance(5_007, 0, 0, 5_007)


async def test_a_key_reused_for_another_amount_or_user_is_refused(sessions: Sessions, new_user: NewUser) -> None:
    user, other = await new_user(), await new_user()
    await _credit(sessions, user, 100, key=f"k-{user}")
    for user_id, amount in ((user, 101), (other, 100)):
        with pytest.raises(IdempotencyConflict):
            async with sessions() as session, session.begin():
                await credit(session, user_id=user_id, amount=amount, idempotency_key=f"k-{user}")
    assert await _balance(sessions, user) == Balance(100, 0, 0, 100)
    assert await _balance(sessions, other) == Balance(0, 0, 0, 0)


@pytest.mark.parametrize("amount", [0, -5])
async def test_credits_must_be_positive(sessions: Sessions, new_user: NewUser, amount: int) -> None:
    user = await new_user()
    with pytest.raises(ValueError, match="positive"):
        async with sessions() as session, session.begin():
            await credit(session, user_id=user, amount=amount, idempotency_key=f"neg-{user}-{amount}")


async def test_concurrent_credits_with_one_key_apply_once(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()

    async def attempt() -> bool:
        async with sessions() as session, session.begin():
            return (await credit(session, user_id=user, amount=250, idempotency_key=f"race-{user}")).applied

    results = await asyncio.gather(*(attempt() for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await _balance(sessions, user) == Balance(250, 0, 0, 250)


async def test_a_reservation_holds_money_and_refuses_what_is_not_available(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    hold = await _reserve(sessions, user, f"a-{user}", 700)
    assert (hold.amount, hold.stack_id) == (700, None)
    assert await _balance(sessions, user) == Balance(1_000, 0, 700, 300)
    with pytest.raises(InsufficientFunds) as raised:
        await _reserve(sessions, user, f"b-{user}", 301)
    assert raised.value.reason == "INSUFFICIENT_FUNDS" and raised.value.metadata == {"required_micro_usd": "301"}
    assert await _balance(sessions, user) == Balance(1_000, 0, 700, 300)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(Reservation.request_id == f"b-{user}")) == 0


async def test_a_user_without_a_balance_cannot_reserve_but_free_requests_pass(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    with pytest.raises(InsufficientFunds):
        await _reserve(sessions, user, f"paid-{user}", 1)
    hold = await _reserve(sessions, user, f"free-{user}", 0)
    assert hold.amount == 0
    settled = await _settle(sessions, f"free-{user}", Charge(Outcome.OK, "n", 5, 5, cost=0))
    assert settled is not None and settled.cost == 0


async def test_a_request_id_is_reserved_once(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    await _reserve(sessions, user, f"dup-{user}", 100)
    with pytest.raises(DuplicateRequestId):
        await _reserve(sessions, user, f"dup-{user}", 100)
    # The duplicate's hold was rolled back with its transaction.
    assert await _balance(sessions, user) == Balance(1_000, 0, 100, 900)


async def test_settle_debits_the_charge_releases_the_rest_and_records_usage(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 10_000)
    await _reserve(sessions, user, f"s-{user}", 4_000)
    charge = Charge(Outcome.OK, "node-a", prompt_tokens=12, completion_tokens=30, cost=1_234, latency_ms=42)
    settled = await _settle(sessions, f"s-{user}", charge)
    assert settled is not None and (settled.state, settled.cost) == ("settled", 1_234)
    assert await _balance(sessions, user) == Balance(10_000, 1_234, 0, 8_766)
    async with sessions() as session:
        records = await list_usage(session, user)
        reservation = await session.scalar(select(Reservation).where(Reservation.request_id == f"s-{user}"))
        days = await usage_summary(session, user)
    assert [(r.node_id, r.prompt_tokens, r.completion_tokens, r.cost, r.latency_ms, r.outcome) for r in records] == [
        ("node-a", 12, 30, 1_234, 42, "ok")
    ]
    assert reservation is not None and (reservation.state, reservation.node_id) == ("settled", "node-a")
    assert [(d.model, d.requests, d.prompt_tokens, d.completion_tokens, d.cost) for d in days] == [
        ("m", 1, 12, 30, 1_234)
    ]


async def test_settling_twice_or_releasing_after_settling_changes_nothing(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 10_000)
    await _reserve(sessions, user, f"t-{user}", 5_000)
    assert await _settle(sessions, f"t-{user}", Charge(Outcome.OK, "n", 1, 1, cost=900)) is not None
    assert await _settle(sessions, f"t-{user}", Charge(Outcome.OK, "n", 1, 1, cost=900)) is None
    async with sessions() as session, session.begin():
        assert await release(session, f"t-{user}", Outcome.NODE_FAILED) is None
    assert await _balance(sessions, user) == Balance(10_000, 900, 0, 9_100)
    async with sessions() as session:
        assert len(await list_usage(session, user)) == 1


async def test_a_charge_above_the_hold_is_capped_at_the_hold(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    await _reserve(sessions, user, f"cap-{user}", 600)
    settled = await _settle(sessions, f"cap-{user}", Charge(Outcome.OK, "n", 10, 10_000, cost=5_000))
    assert settled is not None and settled.cost == 600
    assert await _balance(sessions, user) == Balance(1_000, 600, 0, 400)


async def test_release_charges_nothing_and_leaves_the_daily_totals_alone(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    await _reserve(sessions, user, f"r-{user}", 800)
    async with sessions() as session, session.begin():
        released = await release(session, f"r-{user}", Outcome.NODE_FAILED, node_id="bad")
    assert released is not None and (released.state, released.cost) == ("released", 0)
    assert await _balance(sessions, user) == Balance(1_000, 0, 0, 1_000)
    async with sessions() as session:
        assert [(r.outcome, r.cost, r.node_id) for r in await list_usage(session, user)] == [("node_failed", 0, "bad")]
        assert await usage_summary(session, user) == []


async def test_concurrent_reservations_never_overdraw(sessions: Sessions, new_user: NewUser) -> None:
    """30 requests of 100 against 1,050 available: exactly 10 are held, whatever the interleaving."""
    user = await new_user()
    await _credit(sessions, user, 1_050)

    async def attempt(index: int) -> bool:
        try:
            await _reserve(sessions, user, f"c-{user}-{index}", 100)
        except InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert sum(results) == 10
    assert await _balance(sessions, user) == Balance(1_050, 0, 1_000, 50)


async def test_concurrent_settlements_of_one_request_apply_once(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    await _reserve(sessions, user, f"once-{user}", 500)
    charges = [Charge(Outcome.OK, "n", 1, 1, cost=300), Charge(Outcome.CLIENT_CANCELLED, "n")] * 4
    results = await asyncio.gather(*(_settle(sessions, f"once-{user}", c) for c in charges))
    applied = [r for r in results if r is not None]
    assert len(applied) == 1
    balance = await _balance(sessions, user)
    assert balance.reserved == 0 and balance.debited == applied[0].cost


async def test_the_sweeper_expires_only_what_is_due_and_records_it(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    now = utcnow()
    await _reserve(sessions, user, f"due-{user}", 300, expires_at=now - timedelta(seconds=1))
    await _reserve(sessions, user, f"live-{user}", 200, expires_at=now + LATER)
    async with sessions() as session, session.begin():
        await sweep_expired(session, now=now)
    assert await _balance(sessions, user) == Balance(1_000, 0, 200, 800)
    async with sessions() as session:
        records = await list_usage(session, user)
    assert [(r.request_id, r.outcome, r.cost) for r in records] == [(f"due-{user}", "expired", 0)]
    # Settling the live one still works; settling the expired one with nothing to charge does nothing.
    assert await _settle(sessions, f"live-{user}", Charge(Outcome.OK, "n", 1, 1, cost=150)) is not None
    assert await _settle(sessions, f"due-{user}", Charge(Outcome.CLIENT_CANCELLED, "n")) is None
    assert await _balance(sessions, user) == Balance(1_000, 150, 0, 850)


async def test_concurrent_sweepers_expire_each_reservation_once(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 10_000)
    past = utcnow() - timedelta(seconds=5)
    for index in range(40):
        await _reserve(sessions, user, f"sw-{user}-{index}", 100, expires_at=past)

    async def sweep() -> int:
        async with sessions() as session, session.begin():
            return await sweep_expired(session, now=utcnow(), limit=7)

    async def sweep_all() -> int:
        total = 0
        while (count := await sweep()) > 0:
            total += count
        return total

    counts = await asyncio.gather(*(sweep_all() for _ in range(4)))
    async with sessions() as session:
        records = await session.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.user_id == user))
    assert records == 40 and sum(counts) >= 40
    assert await _balance(sessions, user) == Balance(10_000, 0, 0, 10_000)


async def test_a_request_that_outlived_its_reservation_is_settled_late_when_funds_allow(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    await _reserve(sessions, user, f"late-{user}", 500, expires_at=utcnow() - timedelta(seconds=1))
    await _reserve(sessions, user, f"late2-{user}", 500, expires_at=utcnow() - timedelta(seconds=1))
    async with sessions() as session, session.begin():
        await sweep_expired(session)
    first = await _settle(sessions, f"late-{user}", Charge(Outcome.OK, "n", 3, 4, cost=400))
    assert first is not None and first.late and first.cost == 400
    assert await _settle(sessions, f"late-{user}", Charge(Outcome.OK, "n", 3, 4, cost=400)) is None
    await _reserve(sessions, user, f"other-{user}", 500)  # leaves 100 available
    second = await _settle(sessions, f"late2-{user}", Charge(Outcome.OK, "n", 3, 4, cost=400))
    assert second is not None and second.late and second.cost == 0  # all or nothing: never overdraws
    assert await _balance(sessions, user) == Balance(1_000, 400, 500, 100)
    async with sessions() as session:
        records = {r.request_id: (r.outcome, r.cost) for r in await list_usage(session, user)}
    assert records == {f"late-{user}": ("ok", 400), f"late2-{user}": ("ok", 0)}


async def test_the_database_refuses_a_balance_that_would_break_its_invariants(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 100)
    for values in ({"reserved": 101}, {"debited": 60, "reserved": 50}, {"debited": -1}):
        with pytest.raises(IntegrityError):
            async with sessions() as session, session.begin():
                row = await session.get(UserBalance, user)
                assert row is not None
                for name, value in values.items():
                    setattr(row, name, value)
                await session.flush()


async def test_stacks_are_paid_from_the_balance_and_hold_units_instead_of_money(
    sessions: Sessions, new_user: NewUser
) -> None:
    user = await new_user()
    await _credit(sessions, user, 1_000)
    async with sessions() as session, session.begin():
        stack = await buy_stack(
            session, user_id=user, node_id="node-s", model="m", compute_units=1_000, price_per_million=300_001
        )
    assert stack.price_paid == 301  # ceil(1000 * 300001 / 1e6)
    assert await _balance(sessions, user) == Balance(1_000, 301, 0, 699)

    hold = await _reserve(sessions, user, f"st-{user}", 50, stacks_to_try=[(stack.id, "node-s")], units=600)
    assert (hold.stack_id, hold.units, hold.amount, hold.node_id) == (stack.id, 600, 0, "node-s")
    # Not enough units left for a second one: it falls back to money.
    fallback = await _reserve(sessions, user, f"st2-{user}", 50, stacks_to_try=[(stack.id, "node-s")], units=600)
    assert (fallback.stack_id, fallback.amount) == (None, 50)

    settled = await _settle(sessions, f"st-{user}", Charge(Outcome.OK, "node-s", 100, 150, units=250))
    assert settled is not None and (settled.cost, settled.units) == (0, 250)
    async with sessions() as session:
        (current,) = await list_stacks(session, user)
    assert (current.used_units, current.reserved_units, current.free_units) == (250, 0, 750)
    assert await _balance(sessions, user) == Balance(1_000, 301, 50, 649)


async def test_a_stack_that_costs_more_than_the_balance_is_not_bought(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 10)
    with pytest.raises(InsufficientFunds):
        async with sessions() as session, session.begin():
            await buy_stack(session, user_id=user, node_id="n", model="m", compute_units=10**6, price_per_million=11)
    async with sessions() as session:
        assert await list_stacks(session, user) == []
    assert await _balance(sessions, user) == Balance(10, 0, 0, 10)


async def test_the_newest_price_of_a_model_wins(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    async with sessions() as session, session.begin():
        await set_user_model_price(session, user_id=user, model="b", input_per_million=1, output_per_million=2)
        await set_user_model_price(session, user_id=user, model="a", input_per_million=3, output_per_million=4)
        await set_user_model_price(session, user_id=user, model="b", input_per_million=5, output_per_million=6)
    async with sessions() as session:
        prices = await list_user_model_prices(session, user)
    assert [(p.model, p.input_per_million, p.output_per_million) for p in prices] == [("a", 3, 4), ("b", 5, 6)]


async def test_usage_pages_newest_first_and_daily_totals_filter_by_day(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    await _credit(sessions, user, 100_000)
    for index in range(5):
        await _reserve(sessions, user, f"p-{user}-{index}", 1_000)
        await _settle(sessions, f"p-{user}-{index}", Charge(Outcome.OK, "n", index, 1, cost=index + 1))
    async with sessions() as session:
        first = await list_usage(session, user, limit=2)
        second = await list_usage(session, user, limit=2, before_id=first[-1].id)
        rest = await list_usage(session, user, limit=10, before_id=second[-1].id)
        today = datetime.now(UTC).date()
        summary = await usage_summary(session, user, since=today, until=today)
        empty = await usage_summary(session, user, until=date(2000, 1, 1))
    ids = [r.request_id for r in [*first, *second, *rest]]
    assert ids == [f"p-{user}-{i}" for i in (4, 3, 2, 1, 0)]
    assert [(d.requests, d.prompt_tokens, d.completion_tokens, d.cost) for d in summary] == [(5, 10, 5, 15)]
    assert empty == []
