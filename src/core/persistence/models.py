"""The ORM models: one declarative `Base`, one metadata, one naming convention.

The schema itself is made only by the Alembic migrations in `migrations/versions/`; these classes must
describe the same schema (a test compares the two). Conventions for later tables:

* ids are `BigIntPK` (BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is an
  auto-incrementing rowid alias);
* timestamps are `UTCDateTime`: timezone-aware UTC datetimes in Python on every backend;
* money is an integer number of micro-USD (BIGINT), never a float.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["NAMING_CONVENTION", "ApiKey", "Base", "BigIntPK", "UTCDateTime", "User", "utcnow"]

# PostgreSQL's own default names, so that constraints read the same whichever tool made them.
NAMING_CONVENTION = {
    "ix": "%(column_0_label)s_idx",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

#: Auto-incrementing primary key type: BIGINT, but INTEGER on SQLite (the rowid alias).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """`TIMESTAMP WITH TIME ZONE` that always hands back aware UTC datetimes.

    SQLite has no time zones: values are stored as UTC text and read back naive, so they get UTC
    attached here. Naive datetimes are refused on the way in rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """Someone who owns API keys (and, later, an account with a balance)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True, order_by="ApiKey.id"
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class ApiKey(Base):
    """An API key. Only its SHA-256 is stored; `prefix` (its first 16 characters) finds it and names it."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("length(prefix) = 16", name="prefix_length"),
        CheckConstraint("length(key_hash) = 64", name="key_hash_length"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False, unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="api_keys", lazy="raise")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def __repr__(self) -> str:
        # Never the hash: reprs end up in logs.
        return f"ApiKey(id={self.id!r}, user_id={self.user_id!r}, prefix={self.prefix!r}, name={self.name!r})"
