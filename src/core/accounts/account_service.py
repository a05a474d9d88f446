"""The AccountService servicer: authenticate, validate, call one account operation, translate.

Which credential each RPC takes (README "Accounts"): none for Register, Login, RefreshToken and Logout;
an access token or an API key for the read-only RPCs; an access token for those that change something
(CreateApiKey, RevokeApiKey, BuyStack): API keys read, logins write.
"""

from __future__ import annotations

from typing import TypeAlias

import grpc

from atoma_proxy.core.accounts import translate, validation
from atoma_proxy.core.accounts.api_keys import ApiKeys
from atoma_proxy.core.accounts.billing import Billing
from atoma_proxy.core.accounts.callers import Caller, CallerAuthenticator
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.accounts.passwords import MAX_PASSWORD_LENGTH
from atoma_proxy.core.accounts.profiles import Profiles
from atoma_proxy.core.accounts.throttle import AuthThrottle
from atoma_proxy.core.errors import FeatureDisabled, Unauthenticated
from atoma_proxy.core.sui.accounts import SuiAccounts
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc

__all__ = ["AccountService"]

Context: TypeAlias = grpc.aio.ServicerContext


class AccountService(pb_grpc.AccountServiceServicer):
    def __init__(
        self,
        *,
        logins: Logins | None,
        callers: CallerAuthenticator | None,
        profiles: Profiles,
        api_keys: ApiKeys,
        billing: Billing,
        throttle: AuthThrottle | None = None,
        sui: SuiAccounts | None = None,
    ) -> None:
        """`logins` and `callers` are None when no `accounts.jwt_secret` is configured: every RPC is refused.

        `throttle` limits Register, Login and RefreshToken per client address and email (none: unlimited).
        `sui` (wallet proofs, USDC deposits; README "Sui") is None when the proxy has no Sui side.
        """
        self._throttle = throttle
        self._logins = logins
        self._callers = callers
        self._profiles = profiles
        self._api_keys = api_keys
        self._billing = billing
        self._sui = sui

    def _enabled_logins(self) -> Logins:
        if self._logins is None:
            raise _disabled()
        return self._logins

    async def _throttled(self, context: Context, email: str | None = None) -> None:
        """Count one sign-in attempt of this caller's address (and email); RATE_LIMITED past the limits."""
        if self._throttle is not None:
            address = self._throttle.proxies.client_address(context.peer(), context.invocation_metadata())
            await self._throttle.check(address, email)

    async def _caller(self, context: Context, *, allow_api_key: bool) -> Caller:
        if self._callers is None:
            raise _disabled()
        return await self._callers.authenticate(context.invocation_metadata(), allow_api_key=allow_api_key)

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        logins = self._enabled_logins()
        email = validation.normalize_email(request.email)
        password = validation.check_password(request.password)
        await self._throttled(context, email)
        user = await logins.register(email, password)
        return pb.RegisterResponse(user=translate.user(user, has_password=True))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        logins = self._enabled_logins()
        email = validation.normalize_email(request.email)
        password = validation.check_required(request.password, "password")
        await self._throttled(context, email)
        if len(password) > MAX_PASSWORD_LENGTH:  # no account has one this long: spare the hash
            raise Unauthenticated("Incorrect email or password.", reason="INVALID_CREDENTIALS")
        grant = await logins.login(email, password)
        return translate.login_response(grant)

    async def RefreshToken(self, request: pb.RefreshTokenRequest, context: Context) -> pb.RefreshTokenResponse:
        logins = self._enabled_logins()
        refresh_token = validation.check_required(request.refresh_token, "refresh_token")
        await self._throttled(context)
        grant = await logins.refresh(refresh_token)
        return translate.refresh_response(grant)

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        logins = self._enabled_logins()
        await logins.logout(validation.check_required(request.refresh_token, "refresh_token"))
        return pb.LogoutResponse()

    async def GetProfile(self, request: pb.GetProfileRequest, context: Context) -> pb.GetProfileResponse:
        caller = await self._caller(context, allow_api_key=True)
        user, has_password = await self._profiles.get(caller.user_id)
        return pb.GetProfileResponse(user=translate.user(user, has_password=has_password))

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyResponse:
        caller = await self._caller(context, allow_api_key=False)
        secret, api_key = await self._api_keys.create(caller.user_id, validation.check_key_name(request.name))
        return pb.CreateApiKeyResponse(api_key=translate.api_key(api_key), secret=secret)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        caller = await self._caller(context, allow_api_key=True)
        keys = await self._api_keys.list_for_user(caller.user_id)
        return pb.ListApiKeysResponse(api_keys=[translate.api_key(key) for key in keys])

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.RevokeApiKeyResponse:
        caller = await self._caller(context, allow_api_key=False)
        api_key = await self._api_keys.revoke(caller.user_id, request.key_id)
        return pb.RevokeApiKeyResponse(api_key=translate.api_key(api_key))

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context) -> pb.GetBalanceResponse:
        caller = await self._caller(context, allow_api_key=True)
        return pb.GetBalanceResponse(balance=translate.balance(await self._billing.balance(caller.user_id)))

    async def ListUsage(self, request: pb.ListUsageRequest, context: Context) -> pb.ListUsageResponse:
        caller = await self._caller(context, allow_api_key=True)
        page = await self._billing.usage_page(
            caller.user_id, validation.page_size(request.page_size), request.page_token
        )
        return pb.ListUsageResponse(
            records=[translate.usage_record(record) for record in page.records],
            next_page_token=page.next_page_token,
        )

    async def GetUsageSummary(self, request: pb.GetUsageSummaryRequest, context: Context) -> pb.GetUsageSummaryResponse:
        caller = await self._caller(context, allow_api_key=True)
        since, until = validation.day_range(request.start_date, request.end_date)
        summary = await self._billing.usage_summary(caller.user_id, since, until)
        return translate.usage_summary(summary)

    async def BuyStack(self, request: pb.BuyStackRequest, context: Context) -> pb.BuyStackResponse:
        caller = await self._caller(context, allow_api_key=False)
        if self._sui is not None and self._sui.stacks is not None:  # README "Sui": the contract picks the node
            model = validation.check_text(validation.check_required(request.model, "model"), "model")
            return pb.BuyStackResponse(stack=translate.stack(await self._sui.stacks.buy(caller.user_id, model)))
        stack = await self._billing.buy_stack(
            caller.user_id,
            validation.check_text(validation.check_required(request.node_id, "node_id"), "node_id"),
            validation.check_text(validation.check_required(request.model, "model"), "model"),
            validation.check_compute_units(request.compute_units),
        )
        return pb.BuyStackResponse(stack=translate.stack(stack))

    async def ListStacks(self, request: pb.ListStacksRequest, context: Context) -> pb.ListStacksResponse:
        caller = await self._caller(context, allow_api_key=True)
        return pb.ListStacksResponse(
            stacks=[translate.stack(stack) for stack in await self._billing.stacks(caller.user_id)]
        )

    def _sui_accounts(self) -> SuiAccounts:
        if self._sui is None:
            raise FeatureDisabled('Sui wallets are disabled on this proxy (README "Sui").', reason="SUI_DISABLED")
        return self._sui

    async def CreateWalletChallenge(
        self, request: pb.CreateWalletChallengeRequest, context: Context
    ) -> pb.CreateWalletChallengeResponse:
        caller = await self._caller(context, allow_api_key=False)
        challenge = await self._sui_accounts().create_challenge(caller.user_id)
        return pb.CreateWalletChallengeResponse(
            nonce=challenge.nonce,
            message=challenge.message,
            expires_at=challenge.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    async def LinkWallet(self, request: pb.LinkWalletRequest, context: Context) -> pb.LinkWalletResponse:
        caller = await self._caller(context, allow_api_key=False)
        nonce = validation.check_required(request.nonce, "nonce")
        signature = validation.check_required(request.signature, "signature")
        return pb.LinkWalletResponse(address=await self._sui_accounts().link_wallet(caller.user_id, nonce, signature))

    async def GetWallet(self, request: pb.GetWalletRequest, context: Context) -> pb.GetWalletResponse:
        caller = await self._caller(context, allow_api_key=True)
        return pb.GetWalletResponse(address=await self._sui_accounts().wallet(caller.user_id) or "")

    async def DepositUsdc(self, request: pb.DepositUsdcRequest, context: Context) -> pb.DepositUsdcResponse:
        caller = await self._caller(context, allow_api_key=False)
        digest = validation.check_required(request.transaction_digest, "transaction_digest")
        result = await self._sui_accounts().deposit(caller.user_id, digest)
        return pb.DepositUsdcResponse(
            credited=result.applied, amount=result.amount, balance=translate.balance(result.balance)
        )


def _disabled() -> FeatureDisabled:
    return FeatureDisabled(
        "Accounts are disabled on this proxy: set `accounts.jwt_secret` to enable them.", reason="ACCOUNTS_DISABLED"
    )
