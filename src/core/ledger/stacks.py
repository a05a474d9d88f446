"""Stacks: prepaid bundles of compute units (one unit = one token) bought from a node for a model.

Buying debits the USD balance at once (`price_paid` = ceil(units * price_per_million / 1e6), by the
same conditional UPDATE as a reservation, so it can never overdraw). A request for the model then
holds units of the stack instead of money and is pinned to the stack's node; its settlement uses
what it produced and releases the rest. Stacks serve text models (chat, completions, embeddings);
images are always paid in USD.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.errors import InsufficientFunds
from atoma_proxy.core.ledger._sql import MICRO, balances, ceil_div, rowcount, stacks
from atoma_proxy.core.limits import MAX_COMPUTE_UNITS, MAX_PRICE_MICRO_USD
from atoma_proxy.core.persistence.ledger_models import Stack
from atoma_proxy.core.persistence.models import utcnow
from atoma_proxy.core.persistence.sui_models import SuiStackPurchase

__all__ = ["buy_stack", "list_stacks", "load_chain_stacks", "load_usable_stacks", "stack_price"]


def stack_price(compute_units: int, price_per_million: int) -> int:
    """Micro-USD a stack costs: ceil(units * price_per_million / 1e6)."""
    return ceil_div(compute_units * price_per_million, MICRO)


async def buy_stack(
    session: AsyncSession, *, user_id: int, node_id: str, model: str, compute_units: int, price_per_million: int
) -> Stack:
    """Debit the stack's price from the user's available balance and create the stack.

    InsufficientFunds (nothing written) when the available balance does not cover the price.
    """
    if not 0 < compute_units <= MAX_COMPUTE_UNITS:
        raise ValueError(f"a stack needs 1 to {MAX_COMPUTE_UNITS} compute units")
    if not 0 <= price_per_million <= MAX_PRICE_MICRO_USD:
        raise ValueError(f"the price must be between 0 and {MAX_PRICE_MICRO_USD}")
    if not node_id or not model:
        raise ValueError("a stack needs a node and a model")
    price = stack_price(compute_units, price_per_million)
    if price > 0:
        paid = await session.execute(
            update(balances)
            .where(
                balances.c.user_id == user_id, balances.c.credited - balances.c.debited - balances.c.reserved >= price
            )
            .values(debited=balances.c.debited + price)
        )
        if rowcount(paid) != 1:
            raise InsufficientFunds(user_id=user_id, required=price)
    stack = Stack(
        user_id=user_id,
        node_id=node_id,
        model=model,
        total_units=compute_units,
        used_units=0,
        reserved_units=0,
        price_per_million=price_per_million,
        price_paid=price,
        created_at=utcnow(),
    )
    session.add(stack)
    await session.flush()
    return stack


async def list_stacks(session: AsyncSession, user_id: int) -> list[Stack]:
    """The user's stacks, oldest first, with their current units."""
    rows = await session.scalars(
        select(Stack).where(Stack.user_id == user_id).order_by(Stack.id).execution_options(populate_existing=True)
    )
    return list(rows.all())


async def load_usable_stacks(session: AsyncSession, user_id: int) -> dict[str, list[tuple[int, str]]]:
    """Model -> [(stack id, node id)] of the user's stacks with free units, oldest first (the request path's cache)."""
    rows = await session.execute(
        select(stacks.c.model, stacks.c.id, stacks.c.node_id)
        .where(
            stacks.c.user_id == user_id,
            stacks.c.used_units + stacks.c.reserved_units < stacks.c.total_units,
        )
        .order_by(stacks.c.id)
    )
    usable: dict[str, list[tuple[int, str]]] = {}
    for model, stack_id, node_id in rows:
        usable.setdefault(model, []).append((stack_id, node_id))
    return usable


async def load_chain_stacks(session: AsyncSession, user_id: int) -> dict[int, tuple[int, str]]:
    """Stack id -> (stack small id, transaction digest) of the user's usable stacks bought on chain."""
    rows = await session.execute(
        select(SuiStackPurchase.ledger_stack_id, SuiStackPurchase.stack_small_id, SuiStackPurchase.digest)
        .join(stacks, stacks.c.id == SuiStackPurchase.ledger_stack_id)
        .where(
            SuiStackPurchase.user_id == user_id,
            SuiStackPurchase.state == "confirmed",
            stacks.c.used_units + stacks.c.reserved_units < stacks.c.total_units,
        )
    )
    return {int(stack_id): (int(small_id), digest or "") for stack_id, small_id, digest in rows if small_id is not None}
