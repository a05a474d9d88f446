"""The ledger's tables: balances, credits, reservations, usage, daily aggregates, price overrides, stacks.

Money is an integer number of micro-USD (BIGINT) everywhere. A user's balance keeps three totals
apart instead of one number, so that every invariant is checkable by the database itself:

    credited   everything ever credited (the sum of `credits.amount`)
    debited    everything settled: usage charged in USD plus stacks bought
    reserved   held for requests in flight (the sum of `reservations.amount` in state `held`)
    available = credited - debited - reserved  >= 0   (CHECK: debited + reserved <= credited)

A request's reservation moves `held` -> `settled` | `released` | `expired` exactly once; the
conditional UPDATE that moves it is the only thing allowed to touch `reserved` and `debited` for it
(see `atoma_proxy.core.ledger.reservations`). A stack is a prepaid bundle of compute units (one unit
is one token) bought from one node for one model; it has the same three-way split in units.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from atoma_proxy.core.persistence.models import Base, BigIntPK, UTCDateTime, utcnow

__all__ = [
    "RESERVATION_STATES",
    "Credit",
    "DailyUsage",
    "Reservation",
    "Stack",
    "UsageRecord",
    "UserBalance",
    "UserModelPrice",
]

RESERVATION_STATES = ("held", "settled", "released", "expired")

_ZERO = text("0")


def _counter() -> Mapped[int]:
    """A BIGINT amount (micro-USD, tokens or units) that starts at 0."""
    return mapped_column(BigInteger, nullable=False, default=0, server_default=_ZERO)


def _user_fk() -> Mapped[int]:
    """The owning user, indexed (deleting a user cascades to the row)."""
    return mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)


class UserBalance(Base):
    """One row per user that was ever credited; see the module docstring for the three totals."""

    __tablename__ = "balances"
    __table_args__ = (
        CheckConstraint("credited >= 0", name="credited_not_negative"),
        CheckConstraint("debited >= 0", name="debited_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("debited + reserved <= credited", name="within_credit"),
    )

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    credited: Mapped[int] = _counter()
    debited: Mapped[int] = _counter()
    reserved: Mapped[int] = _counter()

    def __repr__(self) -> str:
        totals = f"credited={self.credited!r}, debited={self.debited!r}, reserved={self.reserved!r}"
        return f"UserBalance(user_id={self.user_id!r}, {totals})"


class Credit(Base):
    """Money added to a balance; `idempotency_key` makes a retried credit a no-op."""

    __tablename__ = "credits"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = _user_fk()
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class Stack(Base):
    """A prepaid bundle of compute units (tokens) for one model, served by one node."""

    __tablename__ = "stacks"
    __table_args__ = (
        CheckConstraint("total_units > 0", name="total_units_positive"),
        CheckConstraint("used_units >= 0", name="used_units_not_negative"),
        CheckConstraint("reserved_units >= 0", name="reserved_units_not_negative"),
        CheckConstraint("used_units + reserved_units <= total_units", name="units_within_total"),
        CheckConstraint("price_per_million >= 0", name="price_not_negative"),
        CheckConstraint("price_paid >= 0", name="price_paid_not_negative"),
        Index("stacks_user_id_model_idx", "user_id", "model"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    node_id: Mapped[str] = mapped_column(String(200), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    total_units: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_units: Mapped[int] = _counter()
    reserved_units: Mapped[int] = _counter()
    price_per_million: Mapped[int] = mapped_column(BigInteger, nullable=False)
    price_paid: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())

    @property
    def free_units(self) -> int:
        return self.total_units - self.used_units - self.reserved_units

    def __repr__(self) -> str:
        return (
            f"Stack(id={self.id!r}, user_id={self.user_id!r}, node_id={self.node_id!r}, model={self.model!r}, "
            f"total={self.total_units!r}, used={self.used_units!r}, reserved={self.reserved_units!r})"
        )


class Reservation(Base):
    """Money (or stack units) held for one request until it is settled, released or expired."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("units >= 0", name="units_not_negative"),
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in RESERVATION_STATES)})", name="state_valid"),
        Index("reservations_state_expires_at_idx", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    user_id: Mapped[int] = _user_fk()
    api_key_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    node_id: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[int] = _counter()
    stack_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("stacks.id", ondelete="CASCADE"))
    units: Mapped[int] = _counter()
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="held", server_default="held")
    instance_id: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsageRecord(Base):
    """What one request used and cost; written once, when its reservation leaves `held`."""

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint("prompt_tokens >= 0", name="prompt_tokens_not_negative"),
        CheckConstraint("completion_tokens >= 0", name="completion_tokens_not_negative"),
        CheckConstraint("cost >= 0", name="cost_not_negative"),
        CheckConstraint("stack_units >= 0", name="stack_units_not_negative"),
        Index("usage_records_user_id_id_idx", "user_id", "id"),
        Index("usage_records_created_at_idx", "created_at"),  # GetUsageStats' time windows
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    api_key_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    node_id: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = _counter()
    completion_tokens: Mapped[int] = _counter()
    # Micro-USD debited from the balance for this request (0 when a stack paid for it).
    cost: Mapped[int] = _counter()
    stack_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("stacks.id", ondelete="SET NULL"))
    stack_units: Mapped[int] = _counter()
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=_ZERO)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())

    def __repr__(self) -> str:
        return (
            f"UsageRecord(request_id={self.request_id!r}, user_id={self.user_id!r}, model={self.model!r}, "
            f"node_id={self.node_id!r}, prompt={self.prompt_tokens!r}, completion={self.completion_tokens!r}, "
            f"cost={self.cost!r}, outcome={self.outcome!r})"
        )


class DailyUsage(Base):
    """Per user, UTC day and model: billable requests, tokens and micro-USD charged."""

    __tablename__ = "daily_usage"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = _counter()
    prompt_tokens: Mapped[int] = _counter()
    completion_tokens: Mapped[int] = _counter()
    cost: Mapped[int] = _counter()


class UserModelPrice(Base):
    """A per-user price for a model, replacing the nodes' prices; the newest row for (user, model) wins."""

    __tablename__ = "user_model_prices"
    __table_args__ = (
        CheckConstraint("input_per_million >= 0", name="input_not_negative"),
        CheckConstraint("output_per_million >= 0", name="output_not_negative"),
        Index("user_model_prices_user_id_model_idx", "user_id", "model"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    input_per_million: Mapped[int] = mapped_column(BigInteger, nullable=False)
    output_per_million: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
