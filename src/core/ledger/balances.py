"""Balances and credits.

    balance = await get_balance(session, user_id)        # Balance(credited, debited, reserved, available)
    result = await credit(session, user_id=7, amount=10_000_000, idempotency_key="stripe:pi_123")

A credit is applied at most once per idempotency key: the INSERT of the credit entry is
`ON CONFLICT (idempotency_key) DO NOTHING`, and only an inserted entry raises `credited` (an
upsert of the balance row in the same transaction). Reusing a key for a different user or amount
is a caller bug and raises `IdempotencyConflict` rather than silently answering "applied before".
A credit is at most MAX_CREDIT_MICRO_USD, and the upsert that adds it only applies while the credited
total stays at most MAX_CREDITED_MICRO_USD (`CreditLimitExceeded` otherwise, in the same statement, so
concurrent credits cannot pass it together): no sum of the ledger can overflow a 64-bit integer.
Functions flush nothing they do not execute and never commit: the caller's unit of work does.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.ledger._sql import balances, credits
from atoma_proxy.core.limits import MAX_CREDIT_MICRO_USD, MAX_CREDITED_MICRO_USD
from atoma_proxy.core.persistence.dialects import insert_or_ignore, upsert
from atoma_proxy.core.persistence.models import utcnow

__all__ = ["Balance", "CreditLimitExceeded", "CreditResult", "IdempotencyConflict", "credit", "get_balance"]


@dataclass(frozen=True, slots=True)
class Balance:
    """A user's totals in micro-USD; `available` = credited - debited - reserved."""

    credited: int
    debited: int
    reserved: int
    available: int

    @classmethod
    def of(cls, credited: int, debited: int, reserved: int) -> Balance:
        return cls(credited, debited, reserved, credited - debited - reserved)


ZERO_BALANCE = Balance(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class CreditResult:
    """Whether this call applied the credit (False: the key was used before), and the balance after."""

    applied: bool
    balance: Balance


class IdempotencyConflict(ValueError):
    """The idempotency key was already used for a credit of another user or amount."""


class CreditLimitExceeded(ValueError):
    """The credit would take the balance's credited total past MAX_CREDITED_MICRO_USD; the caller rolls back."""


async def get_balance(session: AsyncSession, user_id: int) -> Balance:
    """The user's balance; all zeros for a user never credited."""
    row = (
        await session.execute(
            select(balances.c.credited, balances.c.debited, balances.c.reserved).where(balances.c.user_id == user_id)
        )
    ).first()
    return ZERO_BALANCE if row is None else Balance.of(*row)


async def credit(
    session: AsyncSession, *, user_id: int, amount: int, idempotency_key: str, note: str = ""
) -> CreditResult:
    """Add `amount` micro-USD to the user's balance, once per `idempotency_key`."""
    if amount <= 0:
        raise ValueError("a credit must be a positive number of micro-USD")
    if amount > MAX_CREDIT_MICRO_USD:
        raise ValueError(f"a credit is at most {MAX_CREDIT_MICRO_USD} micro-USD")
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValueError("an idempotency key of 1 to 200 characters is required")
    entry = {
        "user_id": user_id,
        "amount": amount,
        "idempotency_key": idempotency_key,
        "note": note[:500],
        "created_at": utcnow(),
    }
    inserted = await session.execute(
        insert_or_ignore(session, credits, entry, key=["idempotency_key"]).returning(credits.c.id)
    )
    if inserted.first() is None:
        # READ COMMITTED: a concurrent credit with this key has committed by now (ours waited for it).
        existing = (
            await session.execute(
                select(credits.c.user_id, credits.c.amount).where(credits.c.idempotency_key == idempotency_key)
            )
        ).one()
        if (existing.user_id, existing.amount) != (user_id, amount):
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} was used for a credit of {existing.amount} "
                f"micro-USD to user {existing.user_id}"
            )
        return CreditResult(applied=False, balance=await get_balance(session, user_id))
    statement = upsert(
        session,
        balances,
        {"user_id": user_id, "credited": amount, "debited": 0, "reserved": 0},
        key=["user_id"],
        update=lambda new: {"credited": balances.c.credited + new.credited},
        # Written as a difference: the sum itself could overflow before it is compared.
        where=lambda new: balances.c.credited <= MAX_CREDITED_MICRO_USD - new.credited,
    )
    row = (
        await session.execute(statement.returning(balances.c.credited, balances.c.debited, balances.c.reserved))
    ).first()
    if row is None:  # the credit entry above is undone with the caller's transaction
        raise CreditLimitExceeded(
            f"a balance's credited total is at most {MAX_CREDITED_MICRO_USD} micro-USD; "
            f"user {user_id} cannot take {amount} more"
        )
    return CreditResult(applied=True, balance=Balance.of(*row))
