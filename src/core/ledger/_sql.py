"""The ledger's tables and integer helpers, shared by its statements (PostgreSQL and SQLite).

The ledger writes with Core statements on the tables, never through the ORM unit of work: every
change is one conditional UPDATE or an INSERT ... ON CONFLICT (`persistence.dialects`), so that
concurrent requests (and several core instances) can only succeed or fail as a whole, never
interleave half-way.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table

from atoma_proxy.core.persistence.ledger_models import (
    Credit,
    DailyUsage,
    Reservation,
    Stack,
    UsageRecord,
    UserBalance,
    UserModelPrice,
)

MICRO = 1_000_000

balances: Table = UserBalance.__table__  # type: ignore[assignment]
credits: Table = Credit.__table__  # type: ignore[assignment]
reservations: Table = Reservation.__table__  # type: ignore[assignment]
usage_records: Table = UsageRecord.__table__  # type: ignore[assignment]
daily_usage: Table = DailyUsage.__table__  # type: ignore[assignment]
user_model_prices: Table = UserModelPrice.__table__  # type: ignore[assignment]
stacks: Table = Stack.__table__  # type: ignore[assignment]


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched (an UPDATE's result is a CursorResult; the session's type says Result)."""
    return cast(CursorResult[Any], result).rowcount


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling of a non-negative fraction (money is never rounded down, nor via floats)."""
    return -(-numerator // denominator)
