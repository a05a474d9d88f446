"""Domain objects (rows, ledger results) -> atoma.accounts.v1 protos. No logic beyond field mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from atoma_proxy.core import ledger
from atoma_proxy.core.accounts.billing import UsageStats, UsageSummary, UsageTotals
from atoma_proxy.core.accounts.logins import TokenGrant
from atoma_proxy.core.persistence.models import ApiKey, User
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources

__all__ = [
    "api_key",
    "balance",
    "login_response",
    "model_price",
    "refresh_response",
    "stack",
    "timestamp",
    "usage_record",
    "usage_stats",
    "usage_summary",
    "user",
]


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment)
    return message


def user(row: User, *, has_password: bool) -> resources.User:
    return resources.User(
        id=row.id, email=row.email or "", create_time=timestamp(row.created_at), has_password=has_password
    )


def api_key(row: ApiKey) -> resources.ApiKey:
    return resources.ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        state=resources.API_KEY_STATE_ACTIVE if row.revoked_at is None else resources.API_KEY_STATE_REVOKED,
        create_time=timestamp(row.created_at),
        last_use_time=timestamp(row.last_used_at),
        revoke_time=timestamp(row.revoked_at),
    )


def login_response(grant: TokenGrant) -> pb.LoginResponse:
    return pb.LoginResponse(token_type="Bearer", **_grant_fields(grant))


def refresh_response(grant: TokenGrant) -> pb.RefreshTokenResponse:
    return pb.RefreshTokenResponse(token_type="Bearer", **_grant_fields(grant))


def _grant_fields(grant: TokenGrant) -> dict[str, Any]:
    return {
        "access_token": grant.access_token,
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
        "refresh_expires_in": grant.refresh_expires_in,
    }


def balance(value: ledger.Balance) -> resources.Balance:
    """From the ledger's Balance(credited, debited, reserved, available)."""
    return resources.Balance(
        credited_micro_usd=value.credited,
        debited_micro_usd=value.debited,
        reserved_micro_usd=value.reserved,
        available_micro_usd=value.available,
    )


def usage_record(row: ledger.UsageRecord) -> resources.UsageRecord:
    return resources.UsageRecord(
        id=row.id,
        request_id=row.request_id,
        model=row.model,
        node_id=row.node_id or "",
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost_micro_usd=row.cost,
        create_time=timestamp(row.created_at),
    )


def usage_summary(summary: UsageSummary) -> pb.GetUsageSummaryResponse:
    return pb.GetUsageSummaryResponse(
        days=[resources.DailyUsage(date=day.isoformat(), **_totals(totals)) for day, totals in summary.days],
        models=[resources.ModelUsage(model=model, **_totals(totals)) for model, totals in summary.models],
    )


def _totals(totals: UsageTotals) -> dict[str, int]:
    return {
        "requests": totals.requests,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "cost_micro_usd": totals.cost,
    }


def model_price(row: ledger.UserModelPrice) -> resources.ModelPrice:
    return resources.ModelPrice(
        model=row.model,
        input_price_per_million=row.input_per_million,
        output_price_per_million=row.output_per_million,
    )


def stack(row: ledger.Stack) -> resources.Stack:
    return resources.Stack(
        id=row.id,
        node_id=row.node_id,
        model=row.model,
        compute_units=row.total_units,
        used_compute_units=row.used_units,
        price_per_million=row.price_per_million,
        cost_micro_usd=row.price_paid,
        create_time=timestamp(row.created_at),
    )


def usage_stats(stats: UsageStats) -> admin_pb.GetUsageStatsResponse:
    return admin_pb.GetUsageStatsResponse(
        buckets=[
            admin_pb.UsageBucket(
                start_time=timestamp(bucket.start),
                requests=bucket.requests,
                errors=bucket.errors,
                prompt_tokens=bucket.prompt_tokens,
                completion_tokens=bucket.completion_tokens,
                cost_micro_usd=bucket.cost,
                mean_latency_ms=bucket.mean_latency_ms,
                max_latency_ms=bucket.max_latency_ms,
            )
            for bucket in stats.buckets
        ],
        top_users=[
            admin_pb.UserSpend(
                user_id=spender.user_id,
                email=spender.email,
                requests=spender.requests,
                prompt_tokens=spender.prompt_tokens,
                completion_tokens=spender.completion_tokens,
                cost_micro_usd=spender.cost,
            )
            for spender in stats.top_users
        ],
        start_time=timestamp(stats.start),
        end_time=timestamp(stats.end),
    )
