"""Helpers of the ledger's black-box tests: `atoma-proxy core` processes, funded keys, the ledger as stored."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.ledger import credit
from atoma_proxy.core.persistence import UserRepository, create_api_key, create_engine, session_factory
from atoma_proxy.core.persistence.ledger_models import Reservation, UsageRecord, UserBalance
from tests.support.processes import spawn, stop
from tests.support.processes import wait_grpc_serving as wait_serving


def start_core(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn(["core"], log, env)


@contextlib.contextmanager
def cores(envs: list[dict[str, str]], logs: list[Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Several `atoma-proxy core` processes started at once, serving until the block ends."""
    processes = [start_core(env, log) for env, log in zip(envs, logs, strict=True)]
    try:
        for env, process, log in zip(envs, processes, logs, strict=True):
            wait_serving(env["ATOMA_CORE__LISTEN"], process, log)
        yield processes
    finally:
        for process in processes:
            stop(process)


@dataclass(frozen=True)
class StoredLedger:
    """One user's ledger as the database holds it: the totals come from one statement (one snapshot)."""

    credited: int
    debited: int
    reserved: int
    held: int  # reservations still `held`
    charged: int  # the sum of the usage records' costs
    record_count: int
    records: list[UsageRecord]  # read after the totals: equal to them once nothing is in flight


async def funded_key(database_url: str, micro_usd: int, *, email: str | None = None) -> tuple[str, str]:
    """A new user with `micro_usd` credited and an API key: (email, key)."""
    email = email or f"{secrets.token_hex(6)}@ledger.e2e"
    key = await create_api_key(database_url, email=email, migrate=False)
    if micro_usd:
        engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
        try:
            async with session_factory(engine)() as session, session.begin():
                user = await UserRepository(session).get_by_email(email)
                assert user is not None
                await credit(session, user_id=user.id, amount=micro_usd, idempotency_key=f"e2e:{email}")
        finally:
            await engine.dispose()
    return email, key


def _total(column: Any, *where: Any) -> Any:
    return select(func.coalesce(func.sum(column), 0)).where(*where).scalar_subquery()


def _count(*where: Any) -> Any:
    return select(func.count()).where(*where).scalar_subquery()


async def stored_ledger(database_url: str, email: str) -> StoredLedger:
    """The user's ledger once it stands still: answers may leave before their settlement commits
    (`ledger.answer_before_settlement`), so two reads 50 ms apart must agree (at most ~1 s of waiting)."""
    ledger = await _read_ledger(database_url, email)
    for _ in range(20):
        await asyncio.sleep(0.05)
        again = await _read_ledger(database_url, email)
        if _totals(again) == _totals(ledger):
            return again
        ledger = again
    return ledger


def _totals(ledger: StoredLedger) -> tuple[int, ...]:
    return (ledger.credited, ledger.debited, ledger.reserved, ledger.held, ledger.charged, ledger.record_count)


async def _read_ledger(database_url: str, email: str) -> StoredLedger:
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
    try:
        async with session_factory(engine)() as session:
            user = await UserRepository(session).get_by_email(email)
            assert user is not None
            mine = UserBalance.user_id == user.id
            totals = (
                await session.execute(
                    select(
                        _total(UserBalance.credited, mine),
                        _total(UserBalance.debited, mine),
                        _total(UserBalance.reserved, mine),
                        _count(Reservation.user_id == user.id, Reservation.state == "held"),
                        _total(UsageRecord.cost, UsageRecord.user_id == user.id),
                        _count(UsageRecord.user_id == user.id),
                    )
                )
            ).one()
            records = list((await session.scalars(select(UsageRecord).where(UsageRecord.user_id == user.id))).all())
        return StoredLedger(*totals, records=records)
    finally:
        await engine.dispose()
