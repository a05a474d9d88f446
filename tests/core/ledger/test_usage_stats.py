"""The operators' aggregates (GetUsageStats): buckets over time and top spenders, on SQLite and PostgreSQL.

This module has a database of its own (the conftest's is per module), so every usage record in it is one of
these tests': they are written with explicit times and read back through the ledger's two queries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.ledger import StatsBucket, UserSpend, stats_window, top_spenders, usage_buckets
from atoma_proxy.core.persistence.ledger_models import UsageRecord
from tests.core.ledger.conftest import NewUser

Sessions = async_sessionmaker[AsyncSession]
HOUR = timedelta(hours=1)
T0 = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)


async def _record(
    sessions: Sessions,
    user: int,
    at: datetime,
    *,
    cost: int = 0,
    prompt: int = 0,
    completion: int = 0,
    outcome: str = "ok",
    latency_ms: int = 0,
) -> None:
    async with sessions() as session, session.begin():
        session.add(
            UsageRecord(
                request_id=uuid.uuid4().hex,
                user_id=user,
                model="m",
                node_id="n",
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
                latency_ms=latency_ms,
                outcome=outcome,
                created_at=at,
            )
        )


def test_the_window_ends_with_the_bucket_that_holds_now() -> None:
    assert stats_window(T0 + timedelta(minutes=59, seconds=59), HOUR, 3) == (T0 - 2 * HOUR, T0 + HOUR)
    day_start = datetime(2031, 3, 4, tzinfo=UTC)
    assert stats_window(T0, timedelta(days=1), 2) == (day_start - timedelta(days=1), day_start + timedelta(days=1))


@pytest.mark.usefixtures("database_kind")
async def test_buckets_and_top_spenders_aggregate_every_user_over_the_window(
    sessions: Sessions, new_user: NewUser
) -> None:
    alice, bob, carol = await new_user(), await new_user(), await new_user()
    await _record(sessions, alice, T0 - HOUR - timedelta(seconds=1), cost=999)  # before the window
    await _record(sessions, alice, T0, cost=100, prompt=10, completion=5, latency_ms=200)
    await _record(sessions, bob, T0 + timedelta(minutes=59), cost=300, prompt=1, completion=2, latency_ms=400)
    await _record(sessions, bob, T0 + timedelta(minutes=30), outcome="node_failed", latency_ms=9000)
    await _record(sessions, carol, T0 + timedelta(minutes=1), outcome="client_cancelled", latency_ms=50)
    await _record(sessions, alice, T0 + 2 * HOUR + timedelta(minutes=5), cost=50, latency_ms=100)
    await _record(sessions, carol, T0 + 3 * HOUR, cost=10_000)  # after the window

    start, end = T0 - HOUR, T0 + 3 * HOUR
    async with sessions() as session:
        buckets = await usage_buckets(session, start=start, end=end, width=HOUR)
        top = await top_spenders(session, start=start, end=end, limit=2)
        everyone = await top_spenders(session, start=start, end=end, limit=10)

    assert buckets == [
        StatsBucket(T0 - HOUR),
        # Latency is that of the two ok requests; the failure counts as an error, the hang-up does not.
        StatsBucket(T0, 4, 1, 11, 7, 400, 300, 400),
        StatsBucket(T0 + HOUR),
        StatsBucket(T0 + 2 * HOUR, 1, 0, 0, 0, 50, 100, 100),
    ]
    assert [(s.user_id, s.requests, s.cost) for s in top] == [(bob, 2, 300), (alice, 2, 150)]
    assert everyone[-1] == UserSpend(carol, everyone[-1].email, 1, 0, 0, 0)
    assert everyone[-1].email.endswith("@ledger.test")


@pytest.mark.usefixtures("database_kind")
async def test_day_buckets_are_utc_days(sessions: Sessions, new_user: NewUser) -> None:
    user = await new_user()
    day = datetime(2031, 5, 1, tzinfo=UTC)
    await _record(sessions, user, day + timedelta(hours=23, minutes=59), cost=7)
    await _record(sessions, user, day + timedelta(days=1), cost=11)
    async with sessions() as session:
        buckets = await usage_buckets(session, start=day, end=day + timedelta(days=2), width=timedelta(days=1))
    assert [(b.start, b.requests, b.cost) for b in buckets] == [(day, 1, 7), (day + timedelta(days=1), 1, 11)]
