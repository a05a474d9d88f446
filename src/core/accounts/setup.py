"""Building the two account servicers from the configuration."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings
from atoma_proxy.core.accounts.account_service import AccountService
from atoma_proxy.core.accounts.admin_service import AccountAdminService
from atoma_proxy.core.accounts.api_keys import ApiKeys
from atoma_proxy.core.accounts.billing import Billing
from atoma_proxy.core.accounts.callers import AdminGate, CallerAuthenticator
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.profiles import Profiles
from atoma_proxy.core.accounts.throttle import AuthThrottle
from atoma_proxy.core.accounts.tokens import AccessTokenCodec, Clock
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.sui.accounts import SuiAccounts

__all__ = ["build_account_services"]


def build_account_services(
    settings: AccountsSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_keys: ApiKeyAuthenticator,
    registry: NodeRegistry,
    *,
    hasher: PasswordHasher | None = None,
    clock: Clock = time.time,
    throttle: AuthThrottle | None = None,
    image_models: Iterable[str] = (),
    sui: SuiAccounts | None = None,
) -> tuple[AccountService, AccountAdminService]:
    """The servicers; `api_keys` must be the authenticator the RoutingService uses (one key cache).

    `throttle` limits the sign-in RPCs (the server passes `auth_throttle_from_settings`; none: unlimited).
    """
    billing = Billing(sessions, registry, image_models=image_models)
    logins: Logins | None = None
    callers: CallerAuthenticator | None = None
    if settings.jwt_secret is not None:
        codec = AccessTokenCodec(settings.jwt_secret.get_secret_value(), settings.access_token_minutes, clock)
        logins = Logins(
            sessions,
            hasher or PasswordHasher(max_waiting=settings.hash_queue),
            codec,
            refresh_token_days=settings.refresh_token_days,
            clock=clock,
        )
        callers = CallerAuthenticator(codec, logins.session_active, api_keys)
    account_service = AccountService(
        logins=logins,
        callers=callers,
        profiles=Profiles(sessions),
        api_keys=ApiKeys(sessions, api_keys),
        billing=billing,
        throttle=throttle,
        sui=sui,
    )
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
    return account_service, AccountAdminService(AdminGate(admin_token), billing)
