"""API key authentication of gRPC calls.

Keys arrive as `authorization: Bearer <key>` metadata. A verified answer (valid or not) is
cached for `ttl` seconds so the hot path rarely touches the database, while a revoked key is
refused by every instance within `ttl` (1 s by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import Unauthenticated
from atoma_proxy.core.persistence import ApiKeyRepository

_MAX_CACHED = 100_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from."""

    user_id: int
    api_key_id: int


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("The authorization metadata must be `Bearer <API key>`.")
    raise Unauthenticated(
        "No API key: send `Authorization: Bearer <API key>` (gRPC metadata `authorization`).",
        reason="MISSING_API_KEY",
    )


class ApiKeyAuthenticator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal:
        key = bearer_token(metadata)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._lookup(key)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, principal)
        if principal is None:
            raise Unauthenticated("Incorrect API key provided.")
        return principal

    async def _lookup(self, key: str) -> Principal | None:
        async with self._sessions() as session:
            row = await ApiKeyRepository(session).find_active(key)
            return Principal(user_id=row.user_id, api_key_id=row.id) if row is not None else None
