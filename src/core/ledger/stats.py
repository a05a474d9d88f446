"""The network's usage over time and its biggest spenders, for operators: one SQL query each.

Both read `usage_records` over a window [start, end) of UTC time. Buckets are aligned on their width
(an hour or a day, counted from the Unix epoch, so days are UTC days); buckets without usage are
returned as zeros, so a chart has no hole. Errors are records whose outcome is neither `ok` nor
`client_cancelled` (a client hanging up is not the network's failure); latency is that of `ok` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.ledger._sql import usage_records
from atoma_proxy.core.persistence.dialects import is_postgresql
from atoma_proxy.core.persistence.models import User

__all__ = ["StatsBucket", "UserSpend", "top_spenders", "usage_buckets", "window"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR = usage_records.c.outcome.not_in(("ok", "client_cancelled"))
_OK = usage_records.c.outcome == "ok"


@dataclass(frozen=True, slots=True)
class StatsBucket:
    """Usage of every user between `start` and `start + width`."""

    start: datetime
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0
    mean_latency_ms: int = 0
    max_latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class UserSpend:
    """What one user used over a window; `cost` in micro-USD."""

    user_id: int
    email: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: int


def window(now: datetime, width: timedelta, count: int) -> tuple[datetime, datetime]:
    """[start, end) of `count` buckets of `width`, the last one holding `now`."""
    seconds = int(width.total_seconds())
    current = int((now - _EPOCH).total_seconds()) // seconds * seconds
    end = _EPOCH + timedelta(seconds=current + seconds)
    return end - width * count, end


def _bucket_index(session: AsyncSession, seconds: int) -> Any:
    """SQL: the bucket number of a record (seconds since the epoch // width), on either dialect."""
    created = usage_records.c.created_at
    if is_postgresql(session):
        return cast(func.floor(func.extract("epoch", created) / seconds), BigInteger)
    # SQLite keeps UTC text; strftime('%s') reads it as seconds since the epoch.
    # (`/` of SQLAlchemy is true division; the bare operator of two integers is SQLite's integer one.)
    return cast(func.strftime("%s", created), Integer).op("/")(seconds)


async def usage_buckets(
    session: AsyncSession, *, start: datetime, end: datetime, width: timedelta
) -> list[StatsBucket]:
    """Every bucket of [start, end), oldest first, from one grouped query."""
    seconds = int(width.total_seconds())
    index = _bucket_index(session, seconds).label("bucket")
    statement = (
        select(
            index,
            func.count(),
            func.coalesce(func.sum(case((_ERROR, 1), else_=0)), 0),
            func.coalesce(func.sum(usage_records.c.prompt_tokens), 0),
            func.coalesce(func.sum(usage_records.c.completion_tokens), 0),
            func.coalesce(func.sum(usage_records.c.cost), 0),
            func.coalesce(func.sum(case((_OK, usage_records.c.latency_ms), else_=0)), 0),
            func.coalesce(func.sum(case((_OK, 1), else_=0)), 0),
            func.coalesce(func.max(case((_OK, usage_records.c.latency_ms), else_=0)), 0),
        )
        .where(and_(usage_records.c.created_at >= start, usage_records.c.created_at < end))
        .group_by(index)
    )
    found: dict[int, StatsBucket] = {}
    for bucket, requests, errors, prompt, completion, cost, latency_sum, ok_count, latency_max in (
        await session.execute(statement)
    ).all():
        begin = _EPOCH + timedelta(seconds=int(bucket) * seconds)
        ok = int(ok_count)
        found[int(bucket)] = StatsBucket(
            begin,
            int(requests),
            int(errors),
            int(prompt),
            int(completion),
            int(cost),
            int(latency_sum) // ok if ok else 0,
            int(latency_max),
        )
    first = int((start - _EPOCH).total_seconds()) // seconds
    last = -(-int((end - _EPOCH).total_seconds()) // seconds)
    return [
        found.get(number, StatsBucket(_EPOCH + timedelta(seconds=number * seconds))) for number in range(first, last)
    ]


async def top_spenders(session: AsyncSession, *, start: datetime, end: datetime, limit: int) -> list[UserSpend]:
    """The `limit` users who spent most in [start, end): by cost, then requests (descending), then id."""
    cost = func.coalesce(func.sum(usage_records.c.cost), 0).label("cost")
    requests = func.count().label("requests")
    statement = (
        select(
            usage_records.c.user_id,
            User.email,
            requests,
            func.coalesce(func.sum(usage_records.c.prompt_tokens), 0),
            func.coalesce(func.sum(usage_records.c.completion_tokens), 0),
            cost,
        )
        .join(User, User.id == usage_records.c.user_id)
        .where(and_(usage_records.c.created_at >= start, usage_records.c.created_at < end))
        .group_by(usage_records.c.user_id, User.email)
        .order_by(cost.desc(), requests.desc(), usage_records.c.user_id)
        .limit(limit)
    )
    return [
        UserSpend(int(user_id), email or "", int(count), int(prompt), int(completion), int(spent))
        for user_id, email, count, prompt, completion, spent in (await session.execute(statement)).all()
    ]
