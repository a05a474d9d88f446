"""Money views and actions of accounts, over the ledger's functions (no ledger SQL here).

    balance, usage pages and summaries, per-user prices, credits and stacks

Each method is one unit of work. Admin operations name a user by id and first check that it exists
(USER_NOT_FOUND rather than a foreign-key failure). Stacks are bought at the node's price from the
node registry, never at a price the buyer names, and only what a request could spend: never for an
image model (its requests pay per image), never from a node that is down, ejected or draining.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core import ledger
from atoma_proxy.core.accounts.pagination import decode_page_token, encode_page_token
from atoma_proxy.core.errors import AlreadyExists, InvalidRequest, NoNodeAvailable, NotFound
from atoma_proxy.core.limits import MAX_CREDITED_MICRO_USD
from atoma_proxy.core.nodes.breaker import CircuitState
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.persistence.models import User

__all__ = ["Billing", "UsagePage", "UsageSummary", "UsageTotals"]


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Billable requests, tokens and micro-USD of a day or a model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0

    def plus(self, row: ledger.DailyUsage) -> UsageTotals:
        return UsageTotals(
            self.requests + row.requests,
            self.prompt_tokens + row.prompt_tokens,
            self.completion_tokens + row.completion_tokens,
            self.cost + row.cost,
        )


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """(day, totals) oldest first and (model, totals) by model."""

    days: list[tuple[date, UsageTotals]]
    models: list[tuple[str, UsageTotals]]


@dataclass(frozen=True, slots=True)
class UsagePage:
    """One page of usage records, newest first, and the token of the next page ("" on the last)."""

    records: Sequence[ledger.UsageRecord]
    next_page_token: str


class Billing:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: NodeRegistry,
        *,
        image_models: Iterable[str] = (),
    ) -> None:
        """`image_models` (`ledger.image_models`) are paid per image: no stack is sold for them."""
        self._sessions = sessions
        self._registry = registry
        self._image_models = frozenset(image_models)

    async def balance(self, user_id: int) -> ledger.Balance:
        async with self._sessions() as session:
            return await ledger.get_balance(session, user_id)

    async def user_balance(self, user_id: int) -> ledger.Balance:
        async with self._sessions() as session:
            await _require_user(session, user_id)
            return await ledger.get_balance(session, user_id)

    async def usage_page(self, user_id: int, page_size: int, page_token: str) -> UsagePage:
        before_id = decode_page_token(page_token)
        async with self._sessions() as session:
            records = await ledger.list_usage(session, user_id, limit=page_size, before_id=before_id)
        # A full page may have a successor (at worst an empty last page, which AIP-158 allows).
        next_token = encode_page_token(records[-1].id) if len(records) == page_size else ""
        return UsagePage(records, next_token)

    async def usage_summary(self, user_id: int, since: date | None, until: date | None) -> UsageSummary:
        """Totals per UTC day and per model between two inclusive days, from the ledger's daily rows."""
        async with self._sessions() as session:
            rows = await ledger.usage_summary(session, user_id, since=since, until=until)
        days: dict[date, UsageTotals] = {}
        models: dict[str, UsageTotals] = {}
        for row in rows:
            days[row.day] = days.get(row.day, UsageTotals()).plus(row)
            models[row.model] = models.get(row.model, UsageTotals()).plus(row)
        return UsageSummary(days=sorted(days.items()), models=sorted(models.items()))

    async def credit(self, user_id: int, amount: int, idempotency_key: str, note: str) -> ledger.CreditResult:
        try:
            async with self._sessions() as session, session.begin():
                await _require_user(session, user_id)
                return await ledger.credit(
                    session, user_id=user_id, amount=amount, idempotency_key=idempotency_key, note=note
                )
        except ledger.IdempotencyConflict as conflict:
            raise AlreadyExists(
                f"The idempotency key was used for another credit: {conflict}", reason="IDEMPOTENCY_KEY_REUSED"
            ) from None
        except ledger.CreditLimitExceeded:
            raise InvalidRequest(
                f"This credit would take the balance's credited total past {MAX_CREDITED_MICRO_USD} micro-USD.",
                param="amount_micro_usd",
            ) from None

    async def set_price(self, user_id: int, model: str, input_per_million: int, output_per_million: int) -> None:
        async with self._sessions() as session, session.begin():
            await _require_user(session, user_id)
            await ledger.set_user_model_price(
                session,
                user_id=user_id,
                model=model,
                input_per_million=input_per_million,
                output_per_million=output_per_million,
            )

    async def prices(self, user_id: int) -> Sequence[ledger.UserModelPrice]:
        async with self._sessions() as session:
            await _require_user(session, user_id)
            return await ledger.list_user_model_prices(session, user_id)

    async def buy_stack(self, user_id: int, node_id: str, model: str, compute_units: int) -> ledger.Stack:
        node = next((n for n in self._registry.nodes() if n.id == node_id), None)
        if node is None:
            raise NotFound(f"No node with id `{node_id}`.", reason="NODE_NOT_FOUND")
        if model not in node.models:
            raise NotFound(f"Node `{node_id}` does not serve the model `{model}`.", reason="MODEL_NOT_FOUND")
        if model in self._image_models:
            raise InvalidRequest(
                f"`{model}` generates images, which are paid per image: a stack's units are tokens.", param="model"
            )
        unusable = _why_unusable(node)
        if unusable:
            raise NoNodeAvailable(f"Node `{node_id}` is {unusable}: a stack bought from it could not be spent now.")
        # A unit is a token, prompt or generated: priced at the dearer of the node's two prices.
        price = max(node.input_price_per_million, node.output_price_per_million)
        async with self._sessions() as session, session.begin():
            return await ledger.buy_stack(
                session,
                user_id=user_id,
                node_id=node_id,
                model=model,
                compute_units=compute_units,
                price_per_million=price,
            )

    async def stacks(self, user_id: int) -> Sequence[ledger.Stack]:
        async with self._sessions() as session:
            return await ledger.list_stacks(session, user_id)


def _why_unusable(node: Node) -> str:
    """Why no request could spend a stack of this node now ("" when one could)."""
    if node.draining:
        return "draining"
    if not node.healthy:
        return "down"
    if node.breaker.state is CircuitState.OPEN:
        return "set aside after failures"
    return ""


async def _require_user(session: AsyncSession, user_id: int) -> None:
    if await session.get(User, user_id) is None:
        raise NotFound(f"No user with id {user_id}.", reason="USER_NOT_FOUND")
