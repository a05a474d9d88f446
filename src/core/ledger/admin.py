"""Ledger administration for the command line (`atoma-proxy balance ...`, `atoma-proxy prices set`).

Each function opens an engine of its own (disposed before returning), brings the schema up to date
first (a no-op on a current database) and commits one unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.ledger.balances import Balance, CreditResult, credit, get_balance
from atoma_proxy.core.ledger.pricing import set_user_model_price
from atoma_proxy.core.persistence.api_keys import UserRepository
from atoma_proxy.core.persistence.database import create_engine, session_factory
from atoma_proxy.core.persistence.migrate import upgrade_database

__all__ = ["UnknownUser", "credit_user", "format_balance", "set_user_price", "show_balance"]

T = TypeVar("T")


class UnknownUser(LookupError):
    """No user has this email."""


async def _in_session(database_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    await upgrade_database(database_url)
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
    try:
        async with session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


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

    async def work(session: AsyncSession) -> CreditResult:
        user = await UserRepository(session).get_or_create_by_email(email)
        return await credit(session, user_id=user.id, amount=amount, idempotency_key=key, note=note)

    return await _in_session(database_url, work)


async def show_balance(database_url: str, *, email: str) -> Balance:
    async def work(session: AsyncSession) -> Balance:
        return await get_balance(session, await _user_id(session, email))

    return await _in_session(database_url, work)


async def set_user_price(
    database_url: str, *, email: str, model: str, input_per_million: int, output_per_million: int
) -> None:
    async def work(session: AsyncSession) -> None:
        user_id = await _user_id(session, email)
        await set_user_model_price(
            session,
            user_id=user_id,
            model=model,
            input_per_million=input_per_million,
            output_per_million=output_per_million,
        )

    await _in_session(database_url, work)


def format_balance(email: str, balance: Balance) -> str:
    """One line an operator (or a script) reads: all four totals, in micro-USD."""
    return (
        f"{email}: available {balance.available} micro-USD "
        f"(credited {balance.credited}, debited {balance.debited}, reserved {balance.reserved})"
    )
