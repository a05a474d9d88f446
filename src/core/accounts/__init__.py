"""User accounts: sign-up and login with rotating refresh tokens, API keys, and the money views.

    account_service, admin_service = build_account_services(settings.accounts, sessions, api_keys, registry)

    AccountService        Register, Login, RefreshToken, Logout, GetProfile, CreateApiKey, ListApiKeys,
                          RevokeApiKey, GetBalance, ListUsage, GetUsageSummary, BuyStack, ListStacks
    AccountAdminService   CreditBalance, SetUserModelPrice, ListUserModelPrices, GetUserBalance

Layers: the servicers (`account_service`, `admin_service`) authenticate, validate and translate; the
operations (`logins`, `api_keys`, `profiles`, `billing`) each run one unit of work; the repositories
flush; balances, usage, prices and stacks belong to `atoma_proxy.core.ledger`. Passwords are argon2id
(`passwords`), access tokens HS256 JWTs with a lifetime in minutes and refresh tokens opaque and stored
as SHA-256 (`tokens`).
"""

from atoma_proxy.core.accounts.account_service import AccountService
from atoma_proxy.core.accounts.admin_service import AccountAdminService
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.setup import build_account_services
from atoma_proxy.core.accounts.tokens import AccessTokenCodec

__all__ = ["AccessTokenCodec", "AccountAdminService", "AccountService", "PasswordHasher", "build_account_services"]
