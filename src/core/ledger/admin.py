"""Ledger administration for the command line (`atoma-proxy balance ...`, `atoma-proxy prices set`).

Each function is one unit of work in `persistence.admin.admin_session` (the schema brought up to date
first, an engine of its own, committed).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.ledger.balances import Balance, CreditResult, credit, get_balance
from atoma_proxy.core.ledger.pricing import set_user_model_price
from atoma_proxy.core.persistence.admin import admin_session
from atoma_proxy.core.persistence.api_keys import UserRepository

__all__ = ["UnknownUser", "credit_user", "format_balance", "set_user_price", "show_balance"]


class UnknownUser(LookupError):
    """No user has this email."""


async def _user_id(session: AsyncSession, email: str) -> int:
    user = await UserRepository(session).get_by_email(email)
    if user is None:
        raise UnknownUser(f"no user with email {email!r}")
    return user.id


async def credit_user(
    database_url: str, *, email: str, amount: int, idempotency_key: str | None = None, note: str = ""
) -> CreditResult:
    """Credit `amount` micro-USD to the user `email` (created if new); a random key when none is given."""
    key = idempotency_key or f"cli:{uuid.uuid4().hex}"
    async with admin_session(database_url) as session:
        user = await UserRepository(session).get_or_create_by_email(email)
        return await credit(session, user_id=user.id, amount=amount, idempotency_key=key, note=note)


async def show_balance(database_url: str, *, email: str) -> Balance:
    async with admin_session(database_url) as session:
        return await get_balance(session, await _user_id(session, email))


async def set_user_price(
    database_url: str, *, email: str, model: str, input_per_million: int, output_per_million: int
) -> None:
    async with admin_session(database_url) as session:
        await set_user_model_price(
            session,
            user_id=await _user_id(session, email),
            model=model,
            input_per_million=input_per_million,
            output_per_million=output_per_million,
        )


def format_balance(email: str, balance: Balance) -> str:
    """One line an operator (or a script) reads: all four totals, in micro-USD."""
    return (
        f"{email}: available {balance.available} micro-USD "
        f"(credited {balance.credited}, debited {balance.debited}, reserved {balance.reserved})"
    )
