"""Account response protos turned into the dataclasses of `_account_models`."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from atoma_proxy.clients._account_models import (
    ApiKey,
    Balance,
    CreatedApiKey,
    CreditResult,
    ModelPrice,
    Stack,
    TokenGrant,
    UsagePage,
    UsageRecord,
    UsageSummary,
    UsageTotals,
    UsdcDeposit,
    User,
    WalletChallenge,
)
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources


def _time(message: object, field: str) -> datetime | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def user(proto: resources.User) -> User:
    return User(proto.id, proto.email, _time(proto, "create_time"), proto.has_password, proto)


def token_grant(proto: pb.LoginResponse | pb.RefreshTokenResponse) -> TokenGrant:
    return TokenGrant(
        proto.access_token, proto.token_type, proto.expires_in, proto.refresh_token, proto.refresh_expires_in, proto
    )


def api_key(proto: resources.ApiKey) -> ApiKey:
    return ApiKey(
        id=proto.id,
        name=proto.name,
        prefix=proto.prefix,
        active=proto.state == resources.API_KEY_STATE_ACTIVE,
        created_at=_time(proto, "create_time"),
        last_used_at=_time(proto, "last_use_time"),
        revoked_at=_time(proto, "revoke_time"),
        raw=proto,
    )


def balance(proto: resources.Balance) -> Balance:
    return Balance(
        proto.credited_micro_usd, proto.debited_micro_usd, proto.reserved_micro_usd, proto.available_micro_usd, proto
    )


def usage_record(proto: resources.UsageRecord) -> UsageRecord:
    return UsageRecord(
        id=proto.id,
        request_id=proto.request_id,
        model=proto.model,
        node_id=proto.node_id,
        prompt_tokens=proto.prompt_tokens,
        completion_tokens=proto.completion_tokens,
        cost=proto.cost_micro_usd,
        created_at=_time(proto, "create_time"),
        raw=proto,
    )


def usage_page(proto: pb.ListUsageResponse) -> UsagePage:
    return UsagePage(tuple(usage_record(r) for r in proto.records), proto.next_page_token or None, proto)


def usage_summary(proto: pb.GetUsageSummaryResponse) -> UsageSummary:
    def totals(key: str, row: resources.DailyUsage | resources.ModelUsage) -> UsageTotals:
        return UsageTotals(key, row.requests, row.prompt_tokens, row.completion_tokens, row.cost_micro_usd, row)

    return UsageSummary(
        days=tuple(totals(day.date, day) for day in proto.days),
        models=tuple(totals(model.model, model) for model in proto.models),
        raw=proto,
    )


def stack(proto: resources.Stack) -> Stack:
    return Stack(
        id=proto.id,
        node_id=proto.node_id,
        model=proto.model,
        compute_units=proto.compute_units,
        used_compute_units=proto.used_compute_units,
        price_per_million=proto.price_per_million,
        cost=proto.cost_micro_usd,
        created_at=_time(proto, "create_time"),
        raw=proto,
    )


def model_price(proto: resources.ModelPrice) -> ModelPrice:
    return ModelPrice(proto.model, proto.input_price_per_million, proto.output_price_per_million, proto)


def credit_result(proto: admin_pb.CreditBalanceResponse) -> CreditResult:
    return CreditResult(proto.applied, balance(proto.balance), proto)


def created_api_key(proto: pb.CreateApiKeyResponse) -> CreatedApiKey:
    return CreatedApiKey(api_key(proto.api_key), proto.secret, proto)


def wallet_challenge(proto: pb.CreateWalletChallengeResponse) -> WalletChallenge:
    return WalletChallenge(proto.nonce, proto.message, proto.expires_at, proto)


def usdc_deposit(proto: pb.DepositUsdcResponse) -> UsdcDeposit:
    return UsdcDeposit(proto.credited, proto.amount, balance(proto.balance), proto)
