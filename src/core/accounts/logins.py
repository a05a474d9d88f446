"""Registration, login, refresh-token rotation and logout.

Each operation is one unit of work (a session that commits at the end or rolls back on an error), with
two deliberate exceptions:

* Login reads the password hash in one short transaction, checks the password with no database
  connection held (argon2 takes tens of milliseconds), then records the session in a second one, so a
  burst of logins cannot drain the connection pool that inference requests need.
* A refresh token presented after it was revoked is reuse: someone holds a copy. The whole family is
  revoked in a unit of work of its own that commits, and only then does the call fail with TOKEN_REVOKED.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.repositories import AccountRepository, RefreshTokenRepository
from atoma_proxy.core.accounts.tokens import (
    AccessTokenCodec,
    Clock,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
)
from atoma_proxy.core.errors import Unauthenticated
from atoma_proxy.core.persistence.models import User

__all__ = ["Logins", "TokenGrant"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What Login and RefreshToken hand out."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class _ReusedRefreshToken(Exception):
    def __init__(self, family_id: str) -> None:
        super().__init__(family_id)
        self.family_id = family_id


class Logins:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hasher: PasswordHasher,
        codec: AccessTokenCodec,
        *,
        refresh_token_days: int,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._hasher = hasher
        self._codec = codec
        self._refresh_lifetime = timedelta(days=refresh_token_days)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def register(self, email: str, password: str) -> User:
        """A new user with this (normalized) email and password; EMAIL_TAKEN if the email is in use."""
        password_hash = await self._hasher.hash(password)
        async with self._sessions() as session, session.begin():
            accounts = AccountRepository(session)
            user = await accounts.create_user(email)
            await accounts.set_password_hash(user.id, password_hash)
        return user

    async def login(self, email: str, password: str) -> TokenGrant:
        """Tokens of a new session; INVALID_CREDENTIALS for an unknown email, no password or a wrong one."""
        async with self._sessions() as session:
            found = await AccountRepository(session).find_by_email(email)
        if found is None or found[1] is None:
            await self._hasher.verify_nothing(password)
            raise _invalid_credentials()
        user, stored_hash = found
        if not await self._hasher.verify(stored_hash, password):
            raise _invalid_credentials()
        new_hash = await self._hasher.hash(password) if self._hasher.needs_rehash(stored_hash) else None
        async with self._sessions() as session, session.begin():
            if new_hash is not None:
                await AccountRepository(session).set_password_hash(user.id, new_hash)
            return await self._issue(RefreshTokenRepository(session), user.id, new_session_id())

    async def refresh(self, refresh_token: str) -> TokenGrant:
        """Rotate: revoke the token, issue the next of its family. Reuse of a revoked token ends the family."""
        token_hash = hash_refresh_token(refresh_token)
        try:
            async with self._sessions() as session, session.begin():
                tokens = RefreshTokenRepository(session)
                consumed = await tokens.consume(token_hash, self._now())
                if consumed is None:
                    await self._explain_unusable(tokens, token_hash)
                assert consumed is not None
                return await self._issue(tokens, consumed.user_id, consumed.family_id)
        except _ReusedRefreshToken as reused:
            async with self._sessions() as session, session.begin():
                ended = await RefreshTokenRepository(session).revoke_family(reused.family_id, self._now())
            log.warning("revoked refresh token reused: ended session %s (%d active tokens)", reused.family_id, ended)
            raise Unauthenticated(
                "The refresh token was revoked; as it was used again, its session has been ended. Log in again.",
                reason="TOKEN_REVOKED",
            ) from None

    async def logout(self, refresh_token: str) -> None:
        """End the token's session: every token of its family is revoked. Logging out twice is harmless."""
        async with self._sessions() as session, session.begin():
            tokens = RefreshTokenRepository(session)
            token = await tokens.find(hash_refresh_token(refresh_token))
            if token is None:
                raise Unauthenticated("The refresh token is invalid.", reason="INVALID_TOKEN")
            await tokens.revoke_family(token.family_id, self._now())

    async def session_active(self, family_id: str, user_id: int) -> bool:
        async with self._sessions() as session:
            return await RefreshTokenRepository(session).family_active(family_id, user_id)

    async def _issue(self, tokens: RefreshTokenRepository, user_id: int, family_id: str) -> TokenGrant:
        refresh_token = new_refresh_token()
        await tokens.add(
            user_id=user_id,
            family_id=family_id,
            token_hash=hash_refresh_token(refresh_token),
            expires_at=self._now() + self._refresh_lifetime,
        )
        return TokenGrant(
            access_token=self._codec.issue(user_id, family_id),
            expires_in=self._codec.lifetime_seconds,
            refresh_token=refresh_token,
            refresh_expires_in=int(self._refresh_lifetime.total_seconds()),
        )

    async def _explain_unusable(self, tokens: RefreshTokenRepository, token_hash: str) -> None:
        """Raise why `consume` found nothing: unknown, revoked (reuse) or expired."""
        token = await tokens.find(token_hash)
        if token is None:
            raise Unauthenticated("The refresh token is invalid.", reason="INVALID_TOKEN")
        if token.revoked_at is not None:
            raise _ReusedRefreshToken(token.family_id)
        raise Unauthenticated("The refresh token has expired: log in again.", reason="TOKEN_EXPIRED")


def _invalid_credentials() -> Unauthenticated:
    return Unauthenticated("Incorrect email or password.", reason="INVALID_CREDENTIALS")
