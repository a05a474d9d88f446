"""AccountClient: an asyncio client of the core's AccountService and AccountAdminService.

    async with await AccountClient.connect("127.0.0.1:50051") as accounts:
        await accounts.register(email="ada@example.com", password="correct horse")
        await accounts.login(email="ada@example.com", password="correct horse")   # later calls use its token
        created = await accounts.create_api_key(name="laptop")
        print(created.secret, (await accounts.get_balance()).available)

User calls send `authorization: Bearer <token>`, the token being the client's `bearer_token`: an access
token (set by `login` and `refresh_token`, or given to `connect`) or an API key (read-only calls only).
Admin calls send the `admin_token` instead. Like RoutingClient, every call takes keyword-only `timeout`
(seconds; None uses `default_timeout`, `math.inf` means none) and `metadata` (an `authorization` entry
there wins), and failures raise the RoutingError family (EMAIL_TAKEN arrives as a RoutingError with code
ALREADY_EXISTS; branch on `reason`).
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline sent to the core, not a local wait to replace by asyncio.timeout.
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from atoma_proxy.clients import _account_responses as responses
from atoma_proxy.clients._account_models import (
    ApiKey,
    Balance,
    CreatedApiKey,
    CreditResult,
    ModelPrice,
    Stack,
    TokenGrant,
    UsagePage,
    UsageStats,
    UsageSummary,
    UsdcDeposit,
    User,
    WalletChallenge,
)
from atoma_proxy.clients._channel import ChannelOwner, Options, open_channel
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as admin_grpc
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc

_BUCKET_WIDTHS = {"hour": admin_pb.USAGE_BUCKET_WIDTH_HOUR, "day": admin_pb.USAGE_BUCKET_WIDTH_DAY}


class AccountClient(ChannelOwner):
    """Client of the account services. Create it with `await AccountClient.connect(...)` and close it when done."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        bearer_token: str | None = None,
        admin_token: str | None = None,
        default_timeout: float | None = 60,
    ) -> None:
        """Wrap an open channel, which the client then owns and closes; `connect()` is the usual way in."""
        self._channel = channel
        self._accounts = pb_grpc.AccountServiceStub(channel)
        self._admin = admin_grpc.AccountAdminServiceStub(channel)
        self.bearer_token = bearer_token
        self.admin_token = admin_token
        self.default_timeout = default_timeout

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        bearer_token: str | None = None,
        admin_token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        default_timeout: float | None = 60,
        channel_options: Sequence[tuple[str, Any]] = (),
        connect_timeout: float | None = 10,
    ) -> AccountClient:
        """Open a channel to the core at `target` ("host:port"); the options are RoutingClient.connect's.

        Args:
            bearer_token: access token or API key for user calls; `login` sets it too.
            admin_token: the core's `accounts.admin_token`, for the admin calls.
        """
        channel = await open_channel(target, tls=tls, channel_options=channel_options, connect_timeout=connect_timeout)
        return cls(channel, bearer_token=bearer_token, admin_token=admin_token, default_timeout=default_timeout)

    # AccountService: sign-up and sessions.

    async def register(
        self, *, email: str, password: str, timeout: float | None = None, metadata: Options = None
    ) -> User:
        """Create an account; RoutingError with reason EMAIL_TAKEN if the email is in use."""
        request = pb.RegisterRequest(email=email, password=password)
        response = await self._call(self._accounts.Register, request, None, timeout, metadata)
        return responses.user(response.user)

    async def login(
        self, *, email: str, password: str, timeout: float | None = None, metadata: Options = None
    ) -> TokenGrant:
        """Log in; the client uses the new access token for its calls from now on."""
        request = pb.LoginRequest(email=email, password=password)
        grant = responses.token_grant(await self._call(self._accounts.Login, request, None, timeout, metadata))
        self.bearer_token = grant.access_token
        return grant

    async def refresh_token(
        self, *, refresh_token: str, timeout: float | None = None, metadata: Options = None
    ) -> TokenGrant:
        """Rotate the refresh token (the one given stops working); the client uses the new access token."""
        request = pb.RefreshTokenRequest(refresh_token=refresh_token)
        grant = responses.token_grant(await self._call(self._accounts.RefreshToken, request, None, timeout, metadata))
        self.bearer_token = grant.access_token
        return grant

    async def logout(self, *, refresh_token: str, timeout: float | None = None, metadata: Options = None) -> None:
        """End the refresh token's session, its access tokens included."""
        await self._call(self._accounts.Logout, pb.LogoutRequest(refresh_token=refresh_token), None, timeout, metadata)

    # AccountService: the caller's account.

    async def get_profile(self, *, timeout: float | None = None, metadata: Options = None) -> User:
        response = await self._user_call(self._accounts.GetProfile, pb.GetProfileRequest(), timeout, metadata)
        return responses.user(response.user)

    async def create_api_key(
        self, *, name: str, timeout: float | None = None, metadata: Options = None
    ) -> CreatedApiKey:
        """A new API key; `secret` is the key, shown this once (needs an access token)."""
        request = pb.CreateApiKeyRequest(name=name)
        return responses.created_api_key(await self._user_call(self._accounts.CreateApiKey, request, timeout, metadata))

    async def list_api_keys(self, *, timeout: float | None = None, metadata: Options = None) -> list[ApiKey]:
        response = await self._user_call(self._accounts.ListApiKeys, pb.ListApiKeysRequest(), timeout, metadata)
        return [responses.api_key(key) for key in response.api_keys]

    async def revoke_api_key(self, *, key_id: int, timeout: float | None = None, metadata: Options = None) -> ApiKey:
        """Revoke a key (needs an access token); every proxy instance refuses it within a second."""
        request = pb.RevokeApiKeyRequest(key_id=key_id)
        response = await self._user_call(self._accounts.RevokeApiKey, request, timeout, metadata)
        return responses.api_key(response.api_key)

    async def get_balance(self, *, timeout: float | None = None, metadata: Options = None) -> Balance:
        response = await self._user_call(self._accounts.GetBalance, pb.GetBalanceRequest(), timeout, metadata)
        return responses.balance(response.balance)

    async def list_usage(
        self,
        *,
        page_size: int = 0,
        page_token: str | None = None,
        timeout: float | None = None,
        metadata: Options = None,
    ) -> UsagePage:
        """A page of usage records, newest first; pass `next_page_token` back for the next page."""
        request = pb.ListUsageRequest(page_size=page_size, page_token=page_token or "")
        return responses.usage_page(await self._user_call(self._accounts.ListUsage, request, timeout, metadata))

    async def get_usage_summary(
        self,
        *,
        start_date: str | None = None,
        end_date: str | None = None,
        timeout: float | None = None,
        metadata: Options = None,
    ) -> UsageSummary:
        """Usage per UTC day and per model, between two inclusive YYYY-MM-DD days (None: unbounded)."""
        request = pb.GetUsageSummaryRequest(start_date=start_date or "", end_date=end_date or "")
        return responses.usage_summary(
            await self._user_call(self._accounts.GetUsageSummary, request, timeout, metadata)
        )

    async def buy_stack(
        self, *, node_id: str, model: str, compute_units: int, timeout: float | None = None, metadata: Options = None
    ) -> Stack:
        """Buy compute units on a node at its price, from the balance (needs an access token)."""
        request = pb.BuyStackRequest(node_id=node_id, model=model, compute_units=compute_units)
        response = await self._user_call(self._accounts.BuyStack, request, timeout, metadata)
        return responses.stack(response.stack)

    async def list_stacks(self, *, timeout: float | None = None, metadata: Options = None) -> list[Stack]:
        response = await self._user_call(self._accounts.ListStacks, pb.ListStacksRequest(), timeout, metadata)
        return [responses.stack(stack) for stack in response.stacks]

    # Sui wallet and USDC deposits (README "Sui"): an access token.

    async def create_wallet_challenge(
        self, *, timeout: float | None = None, metadata: Options = None
    ) -> WalletChallenge:
        """A one-time message for the wallet to sign (`sign_personal_message`), then `link_wallet`."""
        request = pb.CreateWalletChallengeRequest()
        return responses.wallet_challenge(
            await self._user_call(self._accounts.CreateWalletChallenge, request, timeout, metadata)
        )

    async def link_wallet(
        self, *, nonce: str, signature: str, timeout: float | None = None, metadata: Options = None
    ) -> str:
        """Link the address that signed the challenge; returns it."""
        request = pb.LinkWalletRequest(nonce=nonce, signature=signature)
        return str((await self._user_call(self._accounts.LinkWallet, request, timeout, metadata)).address)

    async def get_wallet(self, *, timeout: float | None = None, metadata: Options = None) -> str | None:
        """The proven Sui address, or None."""
        response = await self._user_call(self._accounts.GetWallet, pb.GetWalletRequest(), timeout, metadata)
        return response.address or None

    async def deposit_usdc(
        self, *, transaction_digest: str, timeout: float | None = None, metadata: Options = None
    ) -> UsdcDeposit:
        """Credit a USDC transfer from the proven wallet to the proxy's, once."""
        request = pb.DepositUsdcRequest(transaction_digest=transaction_digest)
        return responses.usdc_deposit(await self._user_call(self._accounts.DepositUsdc, request, timeout, metadata))

    # AccountAdminService (admin token).

    async def credit_balance(
        self,
        *,
        user_id: int,
        amount_micro_usd: int,
        idempotency_key: str,
        note: str = "",
        timeout: float | None = None,
        metadata: Options = None,
    ) -> CreditResult:
        """Credit a user, once per `idempotency_key` (a retry returns `applied=False`)."""
        request = admin_pb.CreditBalanceRequest(
            user_id=user_id, amount_micro_usd=amount_micro_usd, idempotency_key=idempotency_key, note=note
        )
        return responses.credit_result(await self._admin_call(self._admin.CreditBalance, request, timeout, metadata))

    async def set_user_model_price(
        self,
        *,
        user_id: int,
        model: str,
        input_price_per_million: int,
        output_price_per_million: int,
        timeout: float | None = None,
        metadata: Options = None,
    ) -> ModelPrice:
        request = admin_pb.SetUserModelPriceRequest(
            user_id=user_id,
            model=model,
            input_price_per_million=input_price_per_million,
            output_price_per_million=output_price_per_million,
        )
        response = await self._admin_call(self._admin.SetUserModelPrice, request, timeout, metadata)
        return responses.model_price(response.price)

    async def list_user_model_prices(
        self, *, user_id: int, timeout: float | None = None, metadata: Options = None
    ) -> list[ModelPrice]:
        request = admin_pb.ListUserModelPricesRequest(user_id=user_id)
        response = await self._admin_call(self._admin.ListUserModelPrices, request, timeout, metadata)
        return [responses.model_price(price) for price in response.prices]

    async def get_user_balance(
        self, *, user_id: int, timeout: float | None = None, metadata: Options = None
    ) -> Balance:
        request = admin_pb.GetUserBalanceRequest(user_id=user_id)
        response = await self._admin_call(self._admin.GetUserBalance, request, timeout, metadata)
        return responses.balance(response.balance)

    async def get_usage_stats(
        self,
        *,
        bucket_width: str | int = "hour",
        bucket_count: int = 0,
        top_users_limit: int = 0,
        timeout: float | None = None,
        metadata: Options = None,
    ) -> UsageStats:
        """Usage per bucket (`bucket_count`, 0: 24) and the top spenders (`top_users_limit`, 0: 10).

        `bucket_width` is "hour", "day" or a UsageBucketWidth value of the proto.
        """
        width = _BUCKET_WIDTHS.get(bucket_width) if isinstance(bucket_width, str) else bucket_width
        if width is None:
            raise ValueError(f"bucket_width must be 'hour' or 'day', not {bucket_width!r}")
        request = admin_pb.GetUsageStatsRequest(
            bucket_width=width, bucket_count=bucket_count, top_users_limit=top_users_limit
        )
        return responses.usage_stats(await self._admin_call(self._admin.GetUsageStats, request, timeout, metadata))

    async def _user_call(
        self, method: grpc.aio.UnaryUnaryMultiCallable, request: Any, timeout: float | None, metadata: Options
    ) -> Any:
        return await self._call(method, request, self.bearer_token, timeout, metadata)

    async def _admin_call(
        self, method: grpc.aio.UnaryUnaryMultiCallable, request: Any, timeout: float | None, metadata: Options
    ) -> Any:
        return await self._call(method, request, self.admin_token, timeout, metadata)
