"""Locks in the database, taken through two core instances (two engines) at once: consumed exactly once, and
an expired unused lock released once with its reservation (charging nothing), never after it was consumed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.auth import Principal
from atoma_proxy.core.confidential.errors import LockAlreadyUsed, LockExpired, LockOfAnotherUser
from atoma_proxy.core.confidential.locks import LOCK_EXPIRED_OUTCOME, LockRecord, LockTable
from atoma_proxy.core.ledger._sql import balances, reservations, usage_records
from atoma_proxy.core.ledger.admin import credit_user
from atoma_proxy.core.ledger.reservations import reserve
from atoma_proxy.core.persistence import User, create_engine, session_factory
from atoma_proxy.core.persistence.models import utcnow
from tests.support.databases import DATABASE_KINDS, temporary_database


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=DATABASE_KINDS)
async def engines(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine, int]]:
    """Two engines (two core instances) on one fresh database, and a funded user's id."""
    async with temporary_database(request.param) as url:
        await credit_user(url, email="locks@example.com", amount=10**6)
        first, second = create_engine(DatabaseSettings(url=url)), create_engine(DatabaseSettings(url=url))
        try:
            async with first.connect() as connection:
                user_id = (
                    await connection.execute(select(User.id).where(User.email == "locks@example.com"))
                ).scalar_one()
            yield first, second, user_id
        finally:
            await first.dispose()
            await second.dispose()


async def _lock(engine: AsyncEngine, table: LockTable, user_id: int, clock: Clock, request_id: str) -> LockRecord:
    async with engine.begin() as connection:
        await reserve(
            connection,
            request_id=request_id,
            user_id=user_id,
            api_key_id=None,
            model="m",
            amount=1000,
            expires_at=clock.now + timedelta(hours=1),
            instance_id="test",
        )
    record = LockRecord(
        id=table.new_id(),
        user_id=user_id,
        node_id="n1",
        model="m",
        endpoint="chat/completions",
        max_num_tokens=10,
        rotation_counter=1,
        request_id=request_id,
        metered=True,
        expires_at=clock.now + timedelta(seconds=60),
    )
    await table.add(record)
    return record


async def _state(engine: AsyncEngine, request_id: str) -> tuple[str, int, list[str]]:
    async with engine.connect() as connection:
        state = (
            (await connection.execute(reservations.select().where(reservations.c.request_id == request_id))).one().state
        )
        reserved = (await connection.execute(balances.select())).one().reserved
        outcomes = [
            r.outcome
            for r in await connection.execute(usage_records.select().where(usage_records.c.request_id == request_id))
        ]
    return state, reserved, outcomes


async def test_a_lock_is_consumed_exactly_once_across_instances(engines) -> None:  # type: ignore[no-untyped-def]
    first, second, user_id = engines
    clock = Clock()
    a, b = LockTable(session_factory(first), clock=clock), LockTable(session_factory(second), clock=clock)
    try:
        record = await _lock(first, a, user_id, clock, "req-once")
        principal = Principal(user_id=user_id, api_key_id=0)
        with pytest.raises(LockOfAnotherUser):
            await b.check(
                record.id,
                Principal(user_id=user_id + 1, api_key_id=0),
                model="m",
                endpoint="chat/completions",
                units=None,
            )
        seen = await b.check(record.id, principal, model="m", endpoint="chat/completions", units=5)
        assert seen == record
        results = await asyncio.gather(*(t.take(record) for t in (a, b, a, b)), return_exceptions=True)
        assert results.count(None) == 1
        assert all(isinstance(r, LockAlreadyUsed) for r in results if r is not None)
        with pytest.raises(LockAlreadyUsed):
            await a.check(record.id, principal, model="m", endpoint="chat/completions", units=None)
        clock.now += timedelta(seconds=61)
        assert await b.release_expired() == 0  # consumed: its reservation is the request's to settle
        assert await _state(first, "req-once") == ("held", 1000, [])
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_expired_lock_is_released_once_and_can_no_longer_be_taken(engines) -> None:  # type: ignore[no-untyped-def]
    first, second, user_id = engines
    clock = Clock()
    a, b = LockTable(session_factory(first), clock=clock), LockTable(session_factory(second), clock=clock)
    try:
        record = await _lock(first, a, user_id, clock, "req-expired")
        assert await b.release_expired() == 0  # not expired yet
        clock.now += timedelta(seconds=60)
        counts = await asyncio.gather(b.release_expired(), a.release_expired(record.id), b.release_expired(record.id))
        assert sorted(counts) == [0, 0, 1]
        assert await _state(first, "req-expired") == ("released", 0, [LOCK_EXPIRED_OUTCOME])  # nothing charged
        with pytest.raises(LockExpired):
            await a.take(record)
        with pytest.raises(LockExpired):
            await b.check(
                record.id, Principal(user_id=user_id, api_key_id=0), model="m", endpoint="chat/completions", units=None
            )
    finally:
        await a.aclose()
        await b.aclose()
