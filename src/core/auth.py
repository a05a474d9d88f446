"""API key authentication of gRPC calls.

Keys arrive as `authorization: Bearer <key>` metadata. A verified answer (valid or not) is
cached for `ttl` seconds so the hot path rarely touches the database, while a revoked key is
refused by every instance within `ttl` (1 s by default), and at once by the instance that revoked
it (`forget`). Concurrent requests that find a key's answer missing or expired share one lookup,
so a busy key costs one query per `ttl`, not one per request in flight. A key's `last_used_at` is
written in the background, at most once a minute per key and instance, never on the request's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import Unauthenticated
from atoma_proxy.core.persistence import ApiKeyRepository
from atoma_proxy.core.persistence.models import utcnow
from atoma_proxy.core.persistence.outage import within
from atoma_proxy.wire.metadata import AUTHORIZATION

__all__ = ["ApiKeyAuthenticator", "Authenticator", "Principal", "bearer_token"]

log = logging.getLogger(__name__)

_MAX_CACHED = 100_000
# How stale `api_keys.last_used_at` may get: "last used" is shown to the minute, so one write a minute is enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from."""

    user_id: int
    api_key_id: int


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("The authorization metadata must be `Bearer <API key>`.")
    raise Unauthenticated(
        "No API key: send `Authorization: Bearer <API key>` (gRPC metadata `authorization`).",
        reason="MISSING_API_KEY",
    )


def _refusal(token: str) -> str:
    """Why a bearer token is not an API key: account tokens get told what to send instead."""
    if token.startswith("eyJ") and token.count(".") == 2:
        return (
            "An access token was given where an API key is needed: inference takes an API key "
            "(`sk-atoma-...`; create one with POST /v1/api-keys)."
        )
    if token.startswith("rt-atoma-"):
        return "A refresh token was given where an API key is needed: inference takes an API key (`sk-atoma-...`)."
    return "Incorrect API key provided."


class Authenticator(Protocol):
    """Who is calling (`ApiKeyAuthenticator`)."""

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal: ...


class ApiKeyAuthenticator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        timeout: float | None = None,
    ) -> None:
        """`timeout`: seconds a key lookup may wait for the database (`database.statement_timeout`)."""
        self._sessions = sessions
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._marking: dict[int, asyncio.Task[None]] = {}
        self._looking_up: dict[str, asyncio.Future[Principal | None]] = {}
        self._forgets = 0  # an answer read before a `forget` is not cached after it

    async def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Principal:
        key = bearer_token(metadata)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._shared_lookup(key)
        if principal is None:
            raise Unauthenticated(_refusal(key))
        return principal

    def forget(self, api_key_id: int) -> None:
        """Drop the cached answers for a key (just revoked here): this instance refuses it from now on."""
        self._forgets += 1
        for key, (_, principal) in list(self._cache.items()):
            if principal is not None and principal.api_key_id == api_key_id:
                del self._cache[key]

    async def aclose(self) -> None:
        """Wait for the `last_used_at` writes under way (call before disposing of the engine)."""
        await asyncio.gather(*self._marking.values(), return_exceptions=True)

    async def _shared_lookup(self, key: str) -> Principal | None:
        """One lookup per key at a time; the callers that arrive meanwhile wait for its answer."""
        lookup = self._looking_up.get(key)
        if lookup is None:
            lookup = self._looking_up[key] = asyncio.ensure_future(self._lookup(key))
            lookup.add_done_callback(lambda _: self._looking_up.pop(key, None))
        return await asyncio.shield(lookup)  # a caller that goes away leaves the lookup to the others

    async def _lookup(self, key: str) -> Principal | None:
        started, forgets = self._clock(), self._forgets
        principal = await within(self._timeout, self._find(key), "the API key check")
        if forgets != self._forgets:
            return principal
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (started + self._ttl, principal)
        return principal

    async def _find(self, key: str) -> Principal | None:
        async with self._sessions() as session:
            row = await ApiKeyRepository(session).find_active(key)
            if row is None:
                return None
            if row.last_used_at is None or utcnow() - row.last_used_at >= _LAST_USED_RESOLUTION:
                self._mark_used_soon(row.id)
            return Principal(user_id=row.user_id, api_key_id=row.id)

    def _mark_used_soon(self, api_key_id: int) -> None:
        if api_key_id not in self._marking:
            task = asyncio.create_task(self._mark_used(api_key_id), name=f"mark-key-used-{api_key_id}")
            self._marking[api_key_id] = task
            task.add_done_callback(lambda _: self._marking.pop(api_key_id, None))

    async def _mark_used(self, api_key_id: int) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await ApiKeyRepository(session).mark_used(api_key_id)
        except Exception:  # "last used" is informational: never let it fail or log-spam a request
            log.warning("could not record the use of API key %d", api_key_id, exc_info=True)
