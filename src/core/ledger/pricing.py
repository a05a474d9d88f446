"""What a request costs: node prices from the configuration, per-user overrides, the cost formula.

Prices are integer micro-USD: per million prompt tokens, per million generated tokens, and per
image. The cost of a text request is

    cost = ceil((prompt_tokens * input_per_million + completion_tokens * output_per_million) / 1_000_000)

in integer arithmetic (rounded up once, on the sum, so splitting a request never changes its price
by more than one micro-USD). Embeddings are priced as prompt tokens at the input price; images
at `price_per_image` each. A user's override for a model (the newest `user_model_prices` row, as
in the original proxy) replaces the node prices for both reservation and settlement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.ledger._sql import MICRO, ceil_div, user_model_prices
from atoma_proxy.core.limits import MAX_PRICE_MICRO_USD
from atoma_proxy.core.persistence.ledger_models import UserModelPrice
from atoma_proxy.core.persistence.models import utcnow

__all__ = [
    "TokenPrice",
    "highest_price",
    "list_user_model_prices",
    "load_user_model_prices",
    "set_user_model_price",
    "token_cost",
]


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """Micro-USD per million prompt tokens and per million generated tokens."""

    input_per_million: int
    output_per_million: int


def token_cost(prompt_tokens: int, completion_tokens: int, price: TokenPrice) -> int:
    """ceil((prompt * input + completion * output) / 1e6) micro-USD (see the module docstring)."""
    return ceil_div(prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million, MICRO)


def highest_price(prices: Iterable[TokenPrice]) -> TokenPrice:
    """The largest input and the largest output price (possibly of different nodes): an upper bound for any."""
    inputs, outputs = [0], [0]
    for price in prices:
        inputs.append(price.input_per_million)
        outputs.append(price.output_per_million)
    return TokenPrice(max(inputs), max(outputs))


async def set_user_model_price(
    session: AsyncSession, *, user_id: int, model: str, input_per_million: int, output_per_million: int
) -> None:
    """Give the user its own price for `model` (a new row: the history stays, the newest wins).

    Cores cache overrides for `ledger.price_cache_ttl` seconds, so other instances apply it within that.
    """
    if not (0 <= input_per_million <= MAX_PRICE_MICRO_USD and 0 <= output_per_million <= MAX_PRICE_MICRO_USD):
        raise ValueError(f"prices must be between 0 and {MAX_PRICE_MICRO_USD}")
    if not model:
        raise ValueError("a model is required")
    session.add(
        UserModelPrice(
            user_id=user_id,
            model=model,
            input_per_million=input_per_million,
            output_per_million=output_per_million,
            created_at=utcnow(),
        )
    )
    await session.flush()


async def list_user_model_prices(session: AsyncSession, user_id: int) -> list[UserModelPrice]:
    """The user's prices in force: the newest row of each model, by model name."""
    newest = (
        select(func.max(user_model_prices.c.id))
        .where(user_model_prices.c.user_id == user_id)
        .group_by(user_model_prices.c.model)
    )
    rows = await session.scalars(
        select(UserModelPrice).where(UserModelPrice.id.in_(newest)).order_by(UserModelPrice.model)
    )
    return list(rows.all())


async def load_user_model_prices(session: AsyncSession, user_id: int) -> dict[str, TokenPrice]:
    """Model -> the user's price in force, for the request path's cache."""
    return {
        row.model: TokenPrice(row.input_per_million, row.output_per_million)
        for row in await list_user_model_prices(session, user_id)
    }
