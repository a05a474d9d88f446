"""The ledger's invariants under random sequences of operations (hypothesis, stateful), on both databases.

A model of one user's ledger runs next to the database; after every step:

* credited = the sum of the distinct credits; debited = the charges settled + the stacks bought;
* reserved = the sum of what is held, and 0 once nothing is (teardown settles everything);
* available is never negative, and a stack never has more used + reserved units than it holds;
* a settle, a release or a sweep applies at most once per request, in any order and repetition;
* there is exactly one usage record per request that left `held`.

Concurrent reservations run through separate sessions in one step, so the database (not the
model) decides the interleaving: whatever it is, nothing is overdrawn.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.errors import InsufficientFunds
from atoma_proxy.core.ledger import (
    Charge,
    IdempotencyConflict,
    Outcome,
    buy_stack,
    credit,
    release,
    reserve,
    settle,
    stack_price,
    sweep_expired,
)
from atoma_proxy.core.persistence import UserRepository, create_engine, session_factory
from atoma_proxy.core.persistence.ledger_models import Reservation, Stack, UsageRecord, UserBalance
from atoma_proxy.core.persistence.models import utcnow
from tests.support.databases import DATABASE_KINDS, temporary_database_sync

T = TypeVar("T")
KEYS = [f"key-{i}" for i in range(4)]


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with temporary_database_sync(request.param) as url:
        yield url


@dataclass
class Model:
    credits: dict[str, int] = field(default_factory=dict)
    debited: int = 0
    held: dict[str, int] = field(default_factory=dict)  # request id -> micro-USD held
    held_units: dict[str, int] = field(default_factory=dict)  # request id -> stack units held
    expired: set[str] = field(default_factory=set)  # swept, may still be settled late once
    finished: set[str] = field(default_factory=set)  # no state change left
    stack_requests: set[str] = field(default_factory=set)  # held stack units (not money)
    stack_id: int | None = None
    stack_total: int = 0
    stack_used: int = 0

    @property
    def credited(self) -> int:
        return sum(self.credits.values())

    @property
    def reserved(self) -> int:
        return sum(self.held.values())

    @property
    def available(self) -> int:
        return self.credited - self.debited - self.reserved

    @property
    def stack_free(self) -> int:
        return self.stack_total - self.stack_used - sum(self.held_units.values())


def ledger_machine(loop: asyncio.AbstractEventLoop, sessions: async_sessionmaker[AsyncSession]) -> type:
    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return loop.run_until_complete(coroutine)

    async def in_transaction(work: Any) -> Any:
        async with sessions() as session, session.begin():
            return await work(session)

    class LedgerMachine(RuleBasedStateMachine):
        requests = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            email = f"{uuid.uuid4().hex}@invariants.test"
            self.user = run(in_transaction(lambda s: UserRepository(s).get_or_create_by_email(email))).id
            self.model = Model()
            self.prefix = uuid.uuid4().hex[:8]  # credit keys are global: keep them per user

        def _reserve(self, request_id: str, amount: int, units: int = 0) -> Any:
            stacks = [(self.model.stack_id, "node")] if self.model.stack_id is not None and units else []

            async def work(session: AsyncSession) -> Any:
                return await reserve(
                    session,
                    request_id=request_id,
                    user_id=self.user,
                    api_key_id=None,
                    model="m",
                    amount=amount,
                    expires_at=utcnow() + timedelta(hours=1),
                    instance_id="machine",
                    stacks_to_try=stacks,
                    units=units,
                )

            return in_transaction(work)

        @rule(key=st.sampled_from(KEYS), amount=st.integers(1, 5_000))
        def credit(self, key: str, amount: int) -> None:
            key = f"{self.prefix}-{key}"
            known = self.model.credits.get(key)

            async def work(session: AsyncSession) -> Any:
                return await credit(session, user_id=self.user, amount=amount, idempotency_key=key)

            if known is not None and known != amount:
                with pytest.raises(IdempotencyConflict):
                    run(in_transaction(work))
                return
            result = run(in_transaction(work))
            assert result.applied == (known is None)
            self.model.credits[key] = amount
            assert result.balance.credited == self.model.credited

        @rule(target=requests, amount=st.integers(0, 4_000), units=st.sampled_from([0, 0, 100, 700]))
        def reserve(self, amount: int, units: int) -> Any:
            request_id = uuid.uuid4().hex
            use_stack = self.model.stack_id is not None and units > 0 and self.model.stack_free >= units
            if not use_stack and amount > self.model.available:
                with pytest.raises(InsufficientFunds):
                    run(self._reserve(request_id, amount, units))
                return multiple()
            hold = run(self._reserve(request_id, amount, units))
            if use_stack:
                assert (hold.stack_id, hold.units, hold.amount) == (self.model.stack_id, units, 0)
                self.model.held_units[request_id] = units
                self.model.stack_requests.add(request_id)
            else:
                assert (hold.stack_id, hold.amount) == (None, amount)
                self.model.held[request_id] = amount
            return request_id

        @rule(amounts=st.lists(st.integers(1, 3_000), min_size=2, max_size=6))
        def reserve_concurrently(self, amounts: list[int]) -> None:
            """Which of them succeed depends on the interleaving, so they stay out of the bundle (hypothesis
            needs rules to draw the same way on a replay); sweeps and teardown settle them."""
            ids = [uuid.uuid4().hex for _ in amounts]
            before = self.model.available

            async def attempt(request_id: str, amount: int) -> bool:
                try:
                    await self._reserve(request_id, amount)
                except InsufficientFunds:
                    return False
                return True

            async def all_of() -> list[bool]:
                return await asyncio.gather(*(attempt(i, a) for i, a in zip(ids, amounts, strict=True)))

            results = run(all_of())
            taken = {i: a for i, a, ok in zip(ids, amounts, results, strict=True) if ok}
            after = before - sum(taken.values())
            assert after >= 0
            # Each refusal saw at most `before` minus what was taken first, never less than `after`.
            assert all(a > after for a, ok in zip(amounts, results, strict=True) if not ok)
            self.model.held.update(taken)

        def _settled(self, request_id: str, charge: Charge) -> None:
            model = self.model
            result = run(in_transaction(lambda s: settle(s, request_id, charge)))
            if request_id in model.held or request_id in model.held_units:
                amount = model.held.pop(request_id, 0)
                units = model.held_units.pop(request_id, None)
                assert result is not None and not result.late
                if units is None:
                    assert (result.cost, result.units) == (min(charge.cost, amount), 0)
                    model.debited += result.cost
                else:
                    assert (result.cost, result.units) == (0, min(charge.units, units))
                    model.stack_used += result.units
                model.finished.add(request_id)
            elif request_id in model.expired and (charge.cost > 0 or charge.units > 0):
                # Late: all or nothing, from what is available now (money, or the stack's free units).
                model.expired.discard(request_id)
                model.finished.add(request_id)
                assert result is not None and result.late
                if request_id in model.stack_requests:
                    assert (result.cost, result.units) == (0, charge.units if charge.units <= model.stack_free else 0)
                    model.stack_used += result.units
                else:
                    assert (result.cost, result.units) == (charge.cost if charge.cost <= model.available else 0, 0)
                    model.debited += result.cost
            else:
                assert result is None

        @rule(request_id=requests, cost=st.integers(0, 5_000), units=st.integers(0, 800))
        def settle(self, request_id: str, cost: int, units: int) -> None:
            is_stack = request_id in self.model.stack_requests
            charge = Charge(Outcome.OK, "node", 3, 5, cost=0 if is_stack else cost, units=units if is_stack else 0)
            self._settled(request_id, charge)

        @rule(request_id=requests)
        def release(self, request_id: str) -> None:
            model = self.model
            result = run(in_transaction(lambda s: release(s, request_id, Outcome.NODE_FAILED)))
            if request_id in model.held or request_id in model.held_units:
                model.held.pop(request_id, None)
                model.held_units.pop(request_id, None)
                model.finished.add(request_id)
                assert result is not None and (result.cost, result.units) == (0, 0)
            else:
                assert result is None

        @rule()
        def sweep(self) -> None:
            """Everything held is past a far-future `now` (only this machine's user has holds in its database)."""
            run(in_transaction(lambda s: sweep_expired(s, now=utcnow() + timedelta(days=1))))
            self.model.expired.update(self.model.held, self.model.held_units)
            self.model.held.clear()
            self.model.held_units.clear()

        @rule(units=st.integers(100, 2_000), price=st.integers(0, 900_000))
        def buy_stack(self, units: int, price: int) -> None:
            if self.model.stack_id is not None:
                return
            cost = stack_price(units, price)

            async def work(session: AsyncSession) -> Stack:
                return await buy_stack(
                    session, user_id=self.user, node_id="node", model="m", compute_units=units, price_per_million=price
                )

            if cost > self.model.available:
                with pytest.raises(InsufficientFunds):
                    run(in_transaction(work))
                return
            stack = run(in_transaction(work))
            self.model.stack_id, self.model.stack_total = stack.id, units
            self.model.debited += cost

        @invariant()
        def ledger_is_consistent(self) -> None:
            """One query: the balance, what the records and stacks account for, and the holds."""
            user = self.user

            def total(column: Any, *where: Any) -> Any:
                return select(func.coalesce(func.sum(column), 0)).where(*where).scalar_subquery()

            def count(*where: Any) -> Any:
                return select(func.count()).where(*where).scalar_subquery()

            query = select(
                total(UserBalance.credited, UserBalance.user_id == user),
                total(UserBalance.debited, UserBalance.user_id == user),
                total(UserBalance.reserved, UserBalance.user_id == user),
                total(UsageRecord.cost, UsageRecord.user_id == user),
                total(Stack.price_paid, Stack.user_id == user),
                total(Reservation.amount, Reservation.user_id == user, Reservation.state == "held"),
                count(Reservation.user_id == user, Reservation.state != "held"),
                count(UsageRecord.user_id == user),
                total(Stack.total_units, Stack.user_id == user),
                total(Stack.used_units, Stack.user_id == user),
                total(Stack.reserved_units, Stack.user_id == user),
            )

            async def read(session: AsyncSession) -> Any:
                return (await session.execute(query)).one()

            row = run(in_transaction(read))
            credited, debited, reserved, charged, stacks, held, unheld, records, total_units, used, held_units = row
            model = self.model
            assert (credited, debited, reserved) == (model.credited, model.debited, model.reserved)
            assert credited - debited - reserved >= 0
            assert charged + stacks == debited
            assert held == reserved
            assert unheld == records
            assert used + held_units <= total_units
            assert (used, held_units) == (model.stack_used, sum(model.held_units.values()))

        def teardown(self) -> None:
            for request_id in [*self.model.held, *self.model.held_units]:
                run(in_transaction(lambda s, r=request_id: release(s, r, Outcome.CLIENT_CANCELLED)))
                self.model.held.pop(request_id, None)
                self.model.held_units.pop(request_id, None)
            self.ledger_is_consistent()
            assert self.model.reserved == 0

    return LedgerMachine


def test_ledger_invariants(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=10))
    try:
        machine = ledger_machine(loop, session_factory(engine))
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=15,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
