"""Who is calling an account RPC: a user by access token or API key, or the operator by admin token.

    caller = await callers.authenticate(metadata, allow_api_key=True)    # AccountService
    admin_gate.check(metadata)                                            # AccountAdminService

`authorization: Bearer <token>`: tokens that start with `sk-atoma-` are API keys and go through the routing
core's own ApiKeyAuthenticator (same 1 s cache, so a revoked key is refused here as fast as for
inference); anything else must be an access token, whose session must still be active.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from atoma_proxy.core.accounts.tokens import AccessTokenCodec
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.errors import FeatureDisabled, PermissionDenied, Unauthenticated
from atoma_proxy.core.persistence import API_KEY_PREFIX
from atoma_proxy.wire.metadata import AUTHORIZATION

__all__ = ["AdminGate", "Caller", "CallerAuthenticator", "Metadata", "bearer"]

Metadata = tuple[tuple[str, str | bytes], ...] | None


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user; exactly one of `api_key_id` and `session_id` is set."""

    user_id: int
    api_key_id: int | None = None
    session_id: str | None = None


def bearer(metadata: Metadata) -> str:
    """The token of `authorization: Bearer <token>`; Unauthenticated (MISSING_CREDENTIALS) without one."""
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthenticated("Send `authorization: Bearer <access token or API key>`.", reason="MISSING_CREDENTIALS")


class CallerAuthenticator:
    def __init__(
        self,
        codec: AccessTokenCodec,
        session_active: Callable[[str, int], Awaitable[bool]],
        api_keys: ApiKeyAuthenticator,
    ) -> None:
        self._codec = codec
        self._session_active = session_active
        self._api_keys = api_keys

    async def authenticate(self, metadata: Metadata, *, allow_api_key: bool) -> Caller:
        token = bearer(metadata)
        if token.startswith(API_KEY_PREFIX):
            if not allow_api_key:
                raise PermissionDenied("This call needs an access token from Login; an API key cannot make it.")
            principal = await self._api_keys.authenticate(((AUTHORIZATION, f"Bearer {token}"),))
            return Caller(user_id=principal.user_id, api_key_id=principal.api_key_id)
        claims = self._codec.verify(token)
        if not await self._session_active(claims.session_id, claims.user_id):
            raise Unauthenticated("The session of this access token has ended: log in again.", reason="TOKEN_REVOKED")
        return Caller(user_id=claims.user_id, session_id=claims.session_id)


class AdminGate:
    """The admin API's one credential: `accounts.admin_token`, compared in constant time."""

    def __init__(self, admin_token: str | None) -> None:
        self._token = admin_token.encode() if admin_token else None

    def check(self, metadata: Metadata) -> None:
        if self._token is None:
            raise FeatureDisabled(
                "The admin API is disabled: set `accounts.admin_token` to enable it.", reason="ADMIN_DISABLED"
            )
        if not hmac.compare_digest(bearer(metadata).encode(), self._token):
            raise PermissionDenied("This call needs the admin token.")
