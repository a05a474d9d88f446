"""Access tokens (JWT, HS256) and refresh tokens (opaque, stored as SHA-256).

An access token is a JWT signed with `accounts.jwt_secret`:

    {"iss": "atoma-proxy", "sub": "<user id>", "sid": "<session id>", "iat": ..., "exp": iat + minutes * 60}

`sid` names the login session, which is the family of refresh tokens rotated from one login: when the
family is revoked (logout, or a refresh token presented twice) the session's access tokens stop working
too, because the account RPCs check the session on every call (a single indexed query; the account API is
not the inference hot path). The lifetime is in minutes (the original used days by mistake).

A refresh token is `rt-atoma-` followed by 43 URL-safe characters (256 random bits); only its SHA-256 is
stored, so a database leak does not leak live sessions. Random tokens of this length need no slow hash.

Times come from a `Clock` (seconds since the epoch) so tests can move time without sleeping.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from atoma_proxy.core.errors import Unauthenticated

__all__ = [
    "ACCESS_TOKEN_ISSUER",
    "REFRESH_TOKEN_PREFIX",
    "AccessClaims",
    "AccessTokenCodec",
    "Clock",
    "hash_refresh_token",
    "new_refresh_token",
    "new_session_id",
]

Clock = Callable[[], float]

ACCESS_TOKEN_ISSUER = "atoma-proxy"
REFRESH_TOKEN_PREFIX = "rt-atoma-"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: int
    session_id: str
    issued_at: int
    expires_at: int


class AccessTokenCodec:
    """Issues and verifies access tokens with one HS256 secret."""

    def __init__(self, secret: str, lifetime_minutes: int, clock: Clock = time.time) -> None:
        self._secret = secret
        self.lifetime_seconds = lifetime_minutes * 60
        self._clock = clock

    def issue(self, user_id: int, session_id: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": ACCESS_TOKEN_ISSUER,
            "sub": str(user_id),
            "sid": session_id,
            "iat": now,
            "exp": now + self.lifetime_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid, unexpired token; Unauthenticated (INVALID_TOKEN, TOKEN_EXPIRED) otherwise.

        The signature is checked by PyJWT with HS256 only (no `alg: none`, no algorithm confusion); expiry
        is checked here against the clock.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=ACCESS_TOKEN_ISSUER,
                options={"require": ["iss", "sub", "sid", "iat", "exp"], "verify_exp": False, "verify_iat": False},
            )
            user_id = int(claims["sub"])
            session_id, issued_at, expires_at = claims["sid"], int(claims["iat"]), int(claims["exp"])
            if not isinstance(session_id, str):
                raise ValueError("sid is not a string")
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise Unauthenticated("The access token is invalid.", reason="INVALID_TOKEN") from None
        if self._clock() >= expires_at:
            raise Unauthenticated(
                "The access token has expired: get a new one with RefreshToken.", reason="TOKEN_EXPIRED"
            )
        return AccessClaims(user_id=user_id, session_id=session_id, issued_at=issued_at, expires_at=expires_at)


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 (hex) of a refresh token: what the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_session_id() -> str:
    """A new session (refresh token family) id: 32 hex characters."""
    return secrets.token_hex(16)
