"""A user's own account record."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.accounts.repositories import AccountRepository
from atoma_proxy.core.errors import NotFound
from atoma_proxy.core.persistence.models import User

__all__ = ["Profiles"]


class Profiles:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, user_id: int) -> tuple[User, bool]:
        """The user and whether it has a password."""
        async with self._sessions() as session:
            accounts = AccountRepository(session)
            user = await accounts.get_user(user_id)
            if user is None:  # deleted after its credential was checked
                raise NotFound(f"No user with id {user_id}.", reason="USER_NOT_FOUND")
            return user, await accounts.has_password(user_id)
