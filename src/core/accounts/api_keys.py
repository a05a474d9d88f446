"""A user's API keys: create (the plaintext once), list, revoke.

Revocation is written to the database, which every instance's key check reads at least once a second
(`core.api_key_cache_ttl`), and dropped at once from this instance's cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.errors import NotFound
from atoma_proxy.core.persistence import ApiKey, ApiKeyRepository

__all__ = ["ApiKeys"]


class ApiKeys:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], authenticator: ApiKeyAuthenticator) -> None:
        self._sessions = sessions
        self._authenticator = authenticator

    async def create(self, user_id: int, name: str) -> tuple[str, ApiKey]:
        """The new key's plaintext (shown once, never stored) and its row."""
        async with self._sessions() as session, session.begin():
            return await ApiKeyRepository(session).create(user_id, name)

    async def list_for_user(self, user_id: int) -> Sequence[ApiKey]:
        async with self._sessions() as session:
            return await ApiKeyRepository(session).list_for_user(user_id)

    async def revoke(self, user_id: int, key_id: int) -> ApiKey:
        """Revoke one of the user's keys; revoking a revoked key changes nothing."""
        async with self._sessions() as session, session.begin():
            keys = ApiKeyRepository(session)
            api_key = await keys.get(key_id)
            if api_key is None or api_key.user_id != user_id:  # never confirm that others' keys exist
                raise NotFound(f"No API key with id {key_id}.", reason="API_KEY_NOT_FOUND")
            if api_key.revoked_at is None:
                await keys.revoke(key_id, user_id=user_id)
                await session.refresh(api_key)
        self._authenticator.forget(key_id)
        return api_key
