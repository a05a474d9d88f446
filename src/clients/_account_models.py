"""What an AccountClient returns: frozen dataclasses over the atoma.accounts.v1 response protos.

Each keeps its proto in `raw`. Money is integer micro-USD (1 USD = 1,000,000); times are aware UTC
datetimes, None where the server sent none (a key never used, a key not revoked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources


@dataclass(frozen=True)
class User:
    """An account."""

    id: int
    email: str
    created_at: datetime | None
    has_password: bool
    raw: resources.User


@dataclass(frozen=True)
class TokenGrant:
    """Tokens from Login or RefreshToken; lifetimes in seconds."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    raw: pb.LoginResponse | pb.RefreshTokenResponse


@dataclass(frozen=True)
class ApiKey:
    """An API key without its secret."""

    id: int
    name: str
    prefix: str
    active: bool
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    raw: resources.ApiKey


@dataclass(frozen=True)
class CreatedApiKey:
    """A new API key and its secret, which is never shown again."""

    api_key: ApiKey
    secret: str
    raw: pb.CreateApiKeyResponse


@dataclass(frozen=True)
class Balance:
    """A balance in micro-USD; `available` = credited - debited - reserved."""

    credited: int
    debited: int
    reserved: int
    available: int
    raw: resources.Balance


@dataclass(frozen=True)
class UsageRecord:
    """The metered usage of one request."""

    id: int
    request_id: str
    model: str
    node_id: str
    prompt_tokens: int
    completion_tokens: int
    cost: int
    created_at: datetime | None
    raw: resources.UsageRecord


@dataclass(frozen=True)
class UsagePage:
    """A page of usage records, newest first; `next_page_token` is None on the last page."""

    records: tuple[UsageRecord, ...]
    next_page_token: str | None
    raw: pb.ListUsageResponse


@dataclass(frozen=True)
class UsageTotals:
    """Requests, tokens and cost (micro-USD) of a UTC day (`key` "YYYY-MM-DD") or of a model (`key` the model)."""

    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: int
    raw: resources.DailyUsage | resources.ModelUsage


@dataclass(frozen=True)
class UsageSummary:
    """Usage per UTC day (oldest first) and per model."""

    days: tuple[UsageTotals, ...]
    models: tuple[UsageTotals, ...]
    raw: pb.GetUsageSummaryResponse


@dataclass(frozen=True)
class Stack:
    """Compute units bought on a node for a model."""

    id: int
    node_id: str
    model: str
    compute_units: int
    used_compute_units: int
    price_per_million: int
    cost: int
    created_at: datetime | None
    raw: resources.Stack


@dataclass(frozen=True)
class ModelPrice:
    """A user's own price of a model, micro-USD per million tokens."""

    model: str
    input_price_per_million: int
    output_price_per_million: int
    raw: resources.ModelPrice


@dataclass(frozen=True)
class CreditResult:
    """Whether a credit was applied (False: its idempotency key had been used) and the balance after."""

    applied: bool
    balance: Balance
    raw: admin_pb.CreditBalanceResponse


@dataclass(frozen=True)
class WalletChallenge:
    """A wallet proof to sign: `message` as a Sui personal message, before `expires_at` (RFC 3339, UTC)."""

    nonce: str
    message: str
    expires_at: str
    raw: pb.CreateWalletChallengeResponse


@dataclass(frozen=True)
class UsdcDeposit:
    """A USDC deposit: `credited` is False when the transaction had been credited before; `amount` in micro-USD."""

    credited: bool
    amount: int
    balance: Balance
    raw: pb.DepositUsdcResponse
