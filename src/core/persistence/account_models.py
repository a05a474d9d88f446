"""ORM models of user accounts: passwords and refresh tokens (on the one `Base` of models.py).

Passwords live in their own one-to-one table rather than on `users`: a user without a row (one made by
`atoma-proxy keys create`, say) has no password and cannot log in, and `User` objects, which are loaded
and printed all over the code, never carry a hash.

A refresh token belongs to a *family*: the chain of tokens rotated from one login. Each refresh revokes
the token presented and issues the next one in the same family; presenting a revoked token revokes the
whole family. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from atoma_proxy.core.persistence.models import Base, BigIntPK, UTCDateTime, utcnow

__all__ = ["RefreshToken", "UserPassword"]


class UserPassword(Base):
    """The argon2id hash of a user's password (encoded, parameters included)."""

    __tablename__ = "user_passwords"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())

    def __repr__(self) -> str:
        return f"UserPassword(user_id={self.user_id!r})"


class RefreshToken(Base):
    """One refresh token of a login session (`family_id`); revoked once rotated, logged out or reused."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (CheckConstraint("length(token_hash) = 64", name="token_hash_length"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    family_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        # Never the hash: reprs end up in logs.
        return f"RefreshToken(id={self.id!r}, user_id={self.user_id!r}, family_id={self.family_id!r})"
