"""On-chain stacks (README "Sui"): a user's stack bought through the Atoma contract.

    stack = await buyer.buy(user_id, model)     # a ledger Stack on the node the contract selected

The model's task and the cheapest valid subscription price come from the chain tables. The price of
1,000,000 compute units (Atoma's stack size, in micro-USD = USDC units) is taken from the user's
balance first; the proxy then builds `db::acquire_new_stack_entry` (paid from its largest USDC coin,
gas from its SUI coins), signs and submits it through pysui. Its StackCreatedEvent confirms the stack
and names the node: the event is applied (idempotently, as the event follower would) and the stack
joins the user's ledger stacks as `sui-<node>`, once. A transaction that fails, or confirms no stack,
refunds the price. One purchase per (user, task) runs at a time in a process; concurrent buyers wait.
A purchase cut short by a crash stays `pending` in `sui_stack_purchases` for an operator to settle.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import InsufficientFunds, NodeFailed, NoNodeAvailable
from atoma_proxy.core.ledger._sql import balances, rowcount
from atoma_proxy.core.ledger.stacks import stack_price
from atoma_proxy.core.persistence.ledger_models import Stack
from atoma_proxy.core.persistence.sui_models import SuiNodeSubscription, SuiStackPurchase, SuiTask
from atoma_proxy.core.sui.chain import ChainClient, ChainError, ChainEvent, ObjectRef
from atoma_proxy.core.sui.event_store import InvalidEvent, apply_event, u64_field
from atoma_proxy.sui.crypto import SuiKeypair
from atoma_proxy.sui.transactions import (
    RANDOM_OBJECT_ID,
    Ref,
    acquire_stack_transaction,
    sign_transaction,
)

__all__ = ["STACK_SIZE", "ChainStackBuyer", "StackSettings"]

log = logging.getLogger(__name__)
STACK_SIZE = 1_000_000  # compute units per stack: the contract's COMPUTE_UNITS_PER_STACK
SUI_COIN = "0x2::sui::SUI"


@dataclass(frozen=True)
class StackSettings:
    package_id: str
    atoma_db: str
    usdc_type: str
    gas_budget: int = 50_000_000  # MIST


def _ref(ref: ObjectRef) -> Ref:
    return Ref(ref.object_id, ref.version, ref.digest, ref.initial_shared_version)


class ChainStackBuyer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        chain: ChainClient,
        keypair: SuiKeypair,
        settings: StackSettings,
    ) -> None:
        self._sessions = sessions
        self._chain = chain
        self._keypair = keypair
        self._settings = settings
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}

    async def _task_for(self, session: AsyncSession, model: str) -> tuple[int, int]:
        """(task_small_id, cheapest price per million) of the model's live public task."""
        row = (
            await session.execute(
                select(SuiTask.task_small_id, SuiNodeSubscription.price_per_one_million_compute_units)
                .join(SuiNodeSubscription, SuiNodeSubscription.task_small_id == SuiTask.task_small_id)
                .where(
                    SuiTask.model_name == model,
                    SuiTask.is_deprecated.is_(False),
                    SuiTask.security_level == 0,
                    SuiNodeSubscription.valid.is_(True),
                )
                .order_by(SuiNodeSubscription.price_per_one_million_compute_units, SuiTask.task_small_id)
                .limit(1)
            )
        ).first()
        if row is None:
            raise NoNodeAvailable(f"No node on chain sells stacks of `{model}`.")
        return int(row[0]), int(row[1])

    async def buy(self, user_id: int, model: str) -> Stack:
        async with self._sessions() as session:
            task_small_id, price_per_million = await self._task_for(session, model)
        lock = self._locks.setdefault((user_id, task_small_id), asyncio.Lock())
        async with lock:
            price = stack_price(STACK_SIZE, price_per_million)
            purchase_id = await self._take_payment(user_id, task_small_id, price)
            try:
                event, digest = await self._submit(task_small_id, price_per_million, price)
            except (ChainError, NodeFailed, ValueError) as error:
                await self._refund(purchase_id, user_id, price, str(error))
                raise NodeFailed(
                    f"Buying the stack on chain failed; the price was refunded: {error}", reason="STACK_PURCHASE_FAILED"
                ) from None
            return await self._confirm(purchase_id, user_id, model, price_per_million, price, event, digest)

    async def _take_payment(self, user_id: int, task_small_id: int, price: int) -> int:
        async with self._sessions() as session, session.begin():
            if price > 0:
                paid = await session.execute(
                    update(balances)
                    .where(
                        balances.c.user_id == user_id,
                        balances.c.credited - balances.c.debited - balances.c.reserved >= price,
                    )
                    .values(debited=balances.c.debited + price)
                )
                if rowcount(paid) != 1:
                    raise InsufficientFunds(user_id=user_id, required=price)
            purchase = SuiStackPurchase(user_id=user_id, task_small_id=task_small_id, price_paid=price, state="pending")
            session.add(purchase)
            await session.flush()
            return purchase.id

    async def _submit(self, task_small_id: int, price_per_million: int, price: int) -> tuple[ChainEvent, str]:
        settings, address = self._settings, self._keypair.address
        atoma_db = await self._chain.object_ref(settings.atoma_db)
        random = await self._chain.object_ref(RANDOM_OBJECT_ID)
        if atoma_db is None or random is None:
            raise ChainError("the AtomaDb or Random object is not on chain")
        usdc = [c for c in await self._chain.coins(address, settings.usdc_type) if c.balance >= price]
        if not usdc:
            raise ChainError(f"the proxy's wallet holds no USDC coin of {price} units")
        gas = await self._chain.coins(address, SUI_COIN)
        if not gas:
            raise ChainError("the proxy's wallet holds no SUI for gas")
        transaction = acquire_stack_transaction(
            sender=address,
            package_id=settings.package_id,
            atoma_db=_ref(atoma_db),
            usdc_coin=_ref(usdc[0].ref),
            random=_ref(random),
            task_small_id=task_small_id,
            num_compute_units=STACK_SIZE,
            price_per_one_million_compute_units=price_per_million,
            gas=[_ref(c.ref) for c in gas[:1]],
            gas_price=await self._chain.reference_gas_price(),
            gas_budget=settings.gas_budget,
        )
        result = await self._chain.execute(
            base64.b64encode(transaction).decode(), [sign_transaction(self._keypair, transaction)]
        )
        if not result.success:
            raise ChainError(f"transaction {result.digest} failed: {result.error or 'no reason given'}")
        created = [e for e in result.events if e.name == "StackCreatedEvent"]
        if len(created) != 1:
            raise ChainError(f"transaction {result.digest} created {len(created)} stacks")
        return created[0], result.digest

    async def _refund(self, purchase_id: int, user_id: int, price: int, error: str) -> None:
        async with self._sessions() as session, session.begin():
            if price > 0:
                await session.execute(
                    update(balances).where(balances.c.user_id == user_id).values(debited=balances.c.debited - price)
                )
            await session.execute(
                update(SuiStackPurchase)
                .where(SuiStackPurchase.id == purchase_id)
                .values(state="refunded", error=error[:500])
            )

    async def _confirm(
        self,
        purchase_id: int,
        user_id: int,
        model: str,
        price_per_million: int,
        price: int,
        event: ChainEvent,
        digest: str,
    ) -> Stack:
        try:
            stack_small_id = u64_field(event.json, "stack_small_id")
            node_small_id = u64_field(event.json, "selected_node_id")
            units = u64_field(event.json, "num_compute_units")
        except InvalidEvent as error:
            log.error("stack purchase %d: unusable StackCreatedEvent in %s: %s", purchase_id, digest, error)
            raise
        async with self._sessions() as session, session.begin():
            await apply_event(session, event)
            stack = Stack(
                user_id=user_id,
                node_id=f"sui-{node_small_id}",
                model=model,
                total_units=units,
                used_units=0,
                reserved_units=0,
                price_per_million=price_per_million,
                price_paid=price,
            )
            session.add(stack)
            await session.flush()
            await session.execute(
                update(SuiStackPurchase)
                .where(SuiStackPurchase.id == purchase_id)
                .values(state="confirmed", digest=digest, stack_small_id=stack_small_id, ledger_stack_id=stack.id)
            )
            return stack
