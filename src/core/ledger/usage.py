"""Reading what users used: per-request records and daily aggregates."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.persistence.ledger_models import DailyUsage, UsageRecord

__all__ = ["list_usage", "usage_summary"]

_MAX_PAGE = 1000


async def list_usage(
    session: AsyncSession, user_id: int, *, limit: int = 100, before_id: int | None = None
) -> list[UsageRecord]:
    """The user's usage records, newest first; pass the last id seen as `before_id` for the next page."""
    statement = (
        select(UsageRecord)
        .where(UsageRecord.user_id == user_id)
        .order_by(UsageRecord.id.desc())
        .limit(max(1, min(limit, _MAX_PAGE)))
        .execution_options(populate_existing=True)
    )
    if before_id is not None:
        statement = statement.where(UsageRecord.id < before_id)
    return list((await session.scalars(statement)).all())


async def usage_summary(
    session: AsyncSession, user_id: int, *, since: date | None = None, until: date | None = None
) -> list[DailyUsage]:
    """Daily per-model totals (UTC days, `since` and `until` included), by day then model.

    They count billable requests only: those that used tokens or cost something.
    """
    statement = (
        select(DailyUsage)
        .where(DailyUsage.user_id == user_id)
        .order_by(DailyUsage.day, DailyUsage.model)
        .execution_options(populate_existing=True)
    )
    if since is not None:
        statement = statement.where(DailyUsage.day >= since)
    if until is not None:
        statement = statement.where(DailyUsage.day <= until)
    return list((await session.scalars(statement)).all())
