"""The ledger: prices, reservations, settlement and usage of every request, in integer micro-USD.

Account and admin code (the caller owns the session and commits):

    async with sessions() as session, session.begin():
        result = await credit(session, user_id=7, amount=10_000_000, idempotency_key="topup-42")
        balance = await get_balance(session, 7)          # Balance(credited, debited, reserved, available)
        await set_user_model_price(session, user_id=7, model="m", input_per_million=1, output_per_million=2)
        prices = await list_user_model_prices(session, 7)
        records = await list_usage(session, 7, limit=100, before_id=None)
        days = await usage_summary(session, 7, since=date(2025, 11, 1))
        stack = await buy_stack(session, user_id=7, node_id="n", model="m", compute_units=10**6, price_per_million=5)
        stacks = await list_stacks(session, 7)
        buckets = await usage_buckets(session, start=t0, end=t1, width=timedelta(hours=1))   # every user
        spenders = await top_spenders(session, start=t0, end=t1, limit=10)

The request path (`Meter`, `LedgerSweeper`) is wired by `core/server.py`: estimate -> reserve ->
relay -> settle, and a sweeper in every core that frees what crashed cores left held.
"""

from atoma_proxy.core.ledger.balances import (
    Balance,
    CreditLimitExceeded,
    CreditResult,
    IdempotencyConflict,
    credit,
    get_balance,
)
from atoma_proxy.core.ledger.estimate import Estimate, Estimator, RequestKind
from atoma_proxy.core.ledger.metering import Meter, MeteredRequest, Served
from atoma_proxy.core.ledger.pricing import TokenPrice, list_user_model_prices, set_user_model_price, token_cost
from atoma_proxy.core.ledger.reservations import (
    Charge,
    Hold,
    Outcome,
    Settlement,
    release,
    reserve,
    settle,
    sweep_expired,
)
from atoma_proxy.core.ledger.stacks import buy_stack, list_stacks, stack_price
from atoma_proxy.core.ledger.stats import StatsBucket, UserSpend, top_spenders, usage_buckets
from atoma_proxy.core.ledger.stats import window as stats_window
from atoma_proxy.core.ledger.sweeper import LedgerSweeper
from atoma_proxy.core.ledger.token_counting import Tokenizers
from atoma_proxy.core.ledger.usage import list_usage, usage_summary
from atoma_proxy.core.persistence.ledger_models import DailyUsage, Stack, UsageRecord, UserModelPrice

__all__ = [
    "Balance",
    "Charge",
    "CreditLimitExceeded",
    "CreditResult",
    "DailyUsage",
    "Estimate",
    "Estimator",
    "Hold",
    "IdempotencyConflict",
    "LedgerSweeper",
    "Meter",
    "MeteredRequest",
    "Outcome",
    "RequestKind",
    "Served",
    "Settlement",
    "Stack",
    "StatsBucket",
    "TokenPrice",
    "Tokenizers",
    "UsageRecord",
    "UserModelPrice",
    "UserSpend",
    "buy_stack",
    "credit",
    "get_balance",
    "list_stacks",
    "list_usage",
    "list_user_model_prices",
    "release",
    "reserve",
    "set_user_model_price",
    "settle",
    "stack_price",
    "stats_window",
    "sweep_expired",
    "token_cost",
    "top_spenders",
    "usage_buckets",
    "usage_summary",
]
