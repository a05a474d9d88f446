"""Account rows: users with passwords, refresh tokens. Repositories flush, never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.errors import AlreadyExists
from atoma_proxy.core.persistence.account_models import RefreshToken, UserPassword
from atoma_proxy.core.persistence.dialects import upsert
from atoma_proxy.core.persistence.models import User, utcnow

__all__ = ["AccountRepository", "RefreshTokenRepository"]


class AccountRepository:
    """Users as accounts: creation by email, and their password hashes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create_user(self, email: str) -> User:
        """A new user; AlreadyExists (EMAIL_TAKEN) if the email is taken, even by a concurrent transaction."""
        if await self.session.scalar(select(User.id).where(User.email == email)) is not None:
            raise AlreadyExists(f"An account with the email {email} exists already.")
        user = User(email=email)
        self.session.add(user)
        try:
            await self.session.flush()
        except IntegrityError:  # a concurrent registration won the unique index
            raise AlreadyExists(f"An account with the email {email} exists already.") from None
        return user

    async def get_user(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def find_by_email(self, email: str) -> tuple[User, str | None] | None:
        """The user with this (normalized) email and its password hash (None if it has no password)."""
        row = (
            await self.session.execute(
                select(User, UserPassword.password_hash)
                .outerjoin(UserPassword, UserPassword.user_id == User.id)
                .where(User.email == email)
            )
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def has_password(self, user_id: int) -> bool:
        return (
            await self.session.scalar(select(UserPassword.user_id).where(UserPassword.user_id == user_id)) is not None
        )

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Insert or replace the user's password hash."""
        values = {"user_id": user_id, "password_hash": password_hash, "updated_at": utcnow()}
        await self.session.execute(upsert(self.session, UserPassword, values, key=["user_id"]))


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, user_id: int, family_id: str, token_hash: str, expires_at: datetime) -> RefreshToken:
        token = RefreshToken(user_id=user_id, family_id=family_id, token_hash=token_hash, expires_at=expires_at)
        self.session.add(token)
        await self.session.flush()
        return token

    async def find(self, token_hash: str) -> RefreshToken | None:
        return await self.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    async def consume(self, token_hash: str, now: datetime) -> RefreshToken | None:
        """Revoke the token if it is active and unexpired, and return it; None if it was not.

        One conditional UPDATE: of two concurrent refreshes with the same token exactly one gets it (the
        other waits for the row lock, then finds it revoked). Writing first also takes SQLite's write lock
        before anything is read, so a stale read snapshot never has to be upgraded.
        """
        return await self.session.scalar(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(revoked_at=now)
            .returning(RefreshToken)
            .execution_options(synchronize_session=False)
        )

    async def revoke_family(self, family_id: str, now: datetime | None = None) -> int:
        """Revoke every active token of the family; returns how many were active."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount

    async def family_active(self, family_id: str, user_id: int) -> bool:
        """Whether the session still has an unrevoked token (rotation leaves exactly one)."""
        found = await self.session.scalar(
            select(RefreshToken.id)
            .where(
                RefreshToken.family_id == family_id,
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
            )
            .limit(1)
        )
        return found is not None
