"""Metering in the request path: estimate -> reserve -> (relay) -> settle.

    metered = await meter.reserve(principal, request_id, model, estimate, deadline=...)  # estimate.py
    ... relay (the pipeline counts the tokens it delivers)
    cost = await meter.settle(metered, Outcome.OK, Served(node, usage, delivered))   # on any outcome

`reserve` prices the request at its maximum (`estimate`) at the highest price among the
candidate nodes (or the user's override), holds that in one short transaction, and raises
InsufficientFunds before any node is called when the balance cannot cover it. When the user
owns a stack for the model on a healthy node, units of the stack are held instead and the call is
pinned to the stack's node. Per-user price overrides and stacks are cached for
`ledger.price_cache_ttl` seconds, so the hot path reads no prices from the database.

`settle` computes what the request used and applies it in one transaction, as a task the
caller's cancellation cannot interrupt (a client that leaves must not skip its settlement); the
server drains those tasks at shutdown. A successful request does not wait for that commit
(`ledger.answer_before_settlement`): its charge is known before, and the answer leaves first; a
core that dies in between leaves the hold to the sweeper, which frees it at no charge. What a request used:

* it succeeded and the node reported usage the request could have produced (`node_limits`):
  the node's usage;
* otherwise (the client left, the node failed mid-stream, or no usage came): the completion
  tokens are the tokens delivered (a stream: one per chunk with generated text, as vLLM and
  SGLang stream, see `pipeline.chunks`; a non-streamed answer: its text counted, `Estimator.generated`),
  the prompt tokens the exact count when the model has a tokenizer, else the node's usage if
  seen, else the estimate's bound; nothing at all when nothing was generated (a non-streamed
  request that did not complete has produced nothing the proxy saw);
* images: `n * price_per_image` of the serving node, when the node answered.

Completion tokens are never counted past the reserved output cap; the charge is at the serving
node's price (or the override), and never more than was reserved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import DatabaseSettings, LedgerSettings, Settings
from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import InsufficientFunds, InternalError
from atoma_proxy.core.ledger._postgres import LedgerWriter
from atoma_proxy.core.ledger.estimate import Estimate, Estimator, RequestKind, max_cost
from atoma_proxy.core.ledger.pricing import TokenPrice, highest_price, load_user_model_prices, token_cost
from atoma_proxy.core.ledger.reservations import (
    Charge,
    DuplicateRequestId,
    Hold,
    Outcome,
    Settlement,
    reserve,
    reserve_postgresql,
    settle,
    settle_held_postgresql,
    settle_late,
)
from atoma_proxy.core.ledger.stacks import load_chain_stacks, load_usable_stacks
from atoma_proxy.core.ledger.token_counting import Tokenizers
from atoma_proxy.core.limits import MAX_COMPUTE_UNITS, MAX_CREDITED_MICRO_USD
from atoma_proxy.core.node_limits import ImplausibleUsage, check_usage
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.transport import RequestContext
from atoma_proxy.core.persistence.database import session_factory
from atoma_proxy.core.persistence.models import utcnow
from atoma_proxy.core.persistence.outage import DatabaseTimeout, is_database_outage, within
from atoma_proxy.core.telemetry.metrics import RESERVATIONS_HELD

__all__ = ["Meter", "MeteredRequest", "Served", "UserTerms"]

log = logging.getLogger(__name__)

_SETTLE_ATTEMPTS = 4
_MAX_SETTLE_RETRY_DELAY = 2.0  # seconds between two settlement attempts while the database is away
_CLOSE_GRACE = 10.0  # seconds settlements get at shutdown
_MAX_CACHED_USERS = 100_000


@dataclass
class MeteredRequest:
    """One request between reservation and settlement."""

    hold: Hold
    estimate: Estimate
    override: TokenPrice | None
    started: float
    # A stack pays: what Atoma-protocol nodes are told of it (only the stack's node, `hold.node_id`, may serve).
    stack_context: RequestContext | None = None
    settled: bool = False
    cost: int = 0  # micro-USD charged, once settled

    @property
    def request_id(self) -> str:
        """The id the reservation was made under (a fresh one when the caller's was seen before)."""
        return self.hold.request_id


@dataclass(frozen=True, slots=True)
class Served:
    """What a request got from its nodes, as the ledger charges it."""

    node: Node | None = None  # the node that served (the last tried); None when none was called
    usage: dict[str, Any] | None = None  # the node's usage (checked again before it is believed)
    delivered: int = 0  # generated tokens delivered to the client (when the node reported no usage)


@dataclass(frozen=True)
class UserTerms:
    """A user's price overrides and usable stacks, by model."""

    prices: dict[str, TokenPrice] = field(default_factory=dict)
    stacks: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # Stack id -> (stack small id, transaction digest) of the usable stacks bought on chain.
    chain_stacks: dict[int, tuple[int, str]] = field(default_factory=dict)


class _TermsCache:
    """`UserTerms` per user for `ttl` seconds; concurrent misses for one user share one load."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float, clock: Callable[[], float]) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[float, UserTerms]] = {}
        self._loading: dict[int, asyncio.Future[UserTerms]] = {}

    async def get(self, user_id: int) -> UserTerms:
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        loading = self._loading.get(user_id)
        if loading is None:
            loading = self._loading[user_id] = asyncio.ensure_future(self._load(user_id))
            loading.add_done_callback(lambda _: self._loading.pop(user_id, None))
        return await asyncio.shield(loading)

    def forget(self, user_id: int) -> None:
        self._entries.pop(user_id, None)

    async def _load(self, user_id: int) -> UserTerms:
        async with self._sessions() as session:
            terms = UserTerms(
                await load_user_model_prices(session, user_id),
                await load_usable_stacks(session, user_id),
                await load_chain_stacks(session, user_id),
            )
        if len(self._entries) >= _MAX_CACHED_USERS:
            self._entries.clear()
        self._entries[user_id] = (self._clock() + self._ttl, terms)
        return terms


def _stack_context(principal: Principal, stack_id: int, terms: UserTerms) -> RequestContext:
    """What Atoma-protocol nodes are told of a stack-paid request: the chain's small id and digest
    for a stack bought on chain, else the ledger's stack id."""
    small_id, digest = terms.chain_stacks.get(stack_id, (stack_id, ""))
    return RequestContext(user_id=str(principal.user_id), stack_small_id=small_id, tx_digest=digest)


def _node_price(node: Node) -> TokenPrice:
    return TokenPrice(node.input_price_per_million, node.output_price_per_million)


def _believed_usage(usage: Any, estimate: Estimate) -> dict[str, int]:
    """The node's usage when the request could have produced it (see `node_limits`), else none at all."""
    try:
        return check_usage(usage, estimate.limits()) or {}
    except ImplausibleUsage:
        return {}


def new_instance_id() -> str:
    """This process's name in `reservations.instance_id`: host, pid and a random suffix."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Meter:
    """Reserves and settles every request of one core instance (see the module docstring)."""

    def __init__(
        self,
        settings: LedgerSettings,
        engine: AsyncEngine,
        registry: NodeRegistry,
        tokenizers: Tokenizers | None = None,
        *,
        instance_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        database: DatabaseSettings | None = None,
    ) -> None:
        """`database` bounds the waits of the request path (connect, statement; README "Outages")."""
        self.settings = settings
        self._engine = engine
        database = database or DatabaseSettings()
        self._statement_timeout = database.statement_timeout
        # On PostgreSQL a reservation and a settlement are one statement each, on the LedgerWriter's own
        # connection with group commit (see `_postgres`). SQLite runs the portable statements in a transaction.
        postgresql = engine.dialect.name == "postgresql"
        self._writer = (
            LedgerWriter(
                engine.url.render_as_string(hide_password=False),
                connect_timeout=database.connect_timeout,
                statement_timeout=database.statement_timeout,
            )
            if postgresql
            else None
        )
        self._registry = registry
        self.estimator = Estimator(tokenizers, default_max_completion_tokens=settings.default_max_completion_tokens)
        self.instance_id = instance_id or new_instance_id()
        self._clock = clock
        self._terms = _TermsCache(session_factory(engine), settings.price_cache_ttl, clock)
        self._pending: set[asyncio.Task[Settlement | None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine, registry: NodeRegistry) -> Meter:
        return cls(
            settings.ledger,
            engine,
            registry,
            Tokenizers.from_config(settings.tokenizers),
            database=settings.database,
        )

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @staticmethod
    def image_price(node: Node) -> int:
        """Micro-USD per image at `node` (its own price: configured, or given when it was added)."""
        return node.price_per_image

    def serving_nodes(self, model: str) -> list[Node]:
        """The nodes a request for `model` is priced at: the healthy candidates, else all (ModelNotFound: none)."""
        candidates = self._registry.candidates(model)
        return [n for n in candidates if n.healthy] or candidates

    def reservation_amount(self, estimate: Estimate, serving: list[Node], override: TokenPrice | None) -> int:
        """Micro-USD held for `estimate`: at the user's price, else the highest prices among `serving`."""
        return max_cost(
            estimate,
            override or highest_price(_node_price(n) for n in serving),
            max((self.image_price(n) for n in serving), default=0),
        )

    def node_cost(self, estimate: Estimate, node: Node, override: TokenPrice | None) -> int:
        """Micro-USD of the whole `estimate` at one node's prices (or the user's)."""
        return max_cost(estimate, override or _node_price(node), self.image_price(node))

    async def user_price(self, user_id: int, model: str) -> TokenPrice | None:
        """The user's own price for `model`, if any (cached like the request path's)."""
        return (await self._terms.get(user_id)).prices.get(model)

    def estimate(self, kind: RequestKind, model: str, body: dict[str, Any]) -> Estimate:
        return self.estimator.estimate(kind, model, body)

    async def reserve(
        self, principal: Principal, request_id: str, model: str, estimate: Estimate, *, deadline: float | None
    ) -> MeteredRequest | None:
        """Hold the most `estimate` may cost; None when the ledger is off. Raises InsufficientFunds.

        When a stack of the user pays, the hold names its node (only that node may serve) and the
        request's `stack_context`. A `request_id` seen before is replaced by a fresh one (`metered.request_id`)."""
        if not self.enabled:
            return None
        kind = estimate.kind
        serving = self.serving_nodes(model)  # ModelNotFound before anything is held
        terms = await within(self._statement_timeout, self._terms.get(principal.user_id), "reading the user's prices")
        override = terms.prices.get(model)
        amount = self.reservation_amount(estimate, serving, override)
        if amount > MAX_CREDITED_MICRO_USD:  # no balance can hold it (README "Limits"); never a BIGINT overflow
            raise InsufficientFunds(user_id=principal.user_id, required=amount)
        usable = {n.id for n in serving}
        stacks_to_try = [] if kind is RequestKind.IMAGES else [s for s in terms.stacks.get(model, ()) if s[1] in usable]
        if estimate.tokens > MAX_COMPUTE_UNITS:  # more than any stack holds
            stacks_to_try = []
        lifetime = min(deadline, self.settings.max_request_seconds) if deadline else self.settings.max_request_seconds
        expires_at = utcnow() + timedelta(seconds=lifetime + self.settings.reservation_margin)
        for attempt in range(2):
            try:
                hold = await self._reserve_once(
                    request_id=request_id,
                    user_id=principal.user_id,
                    api_key_id=principal.api_key_id,
                    model=model,
                    amount=amount,
                    expires_at=expires_at,
                    instance_id=self.instance_id,
                    stacks_to_try=stacks_to_try,
                    units=estimate.tokens if stacks_to_try else 0,
                )
                break
            except DuplicateRequestId:
                if attempt:
                    raise InternalError("Could not reserve under a fresh request id.") from None
                # A caller-supplied x-request-id seen before: the request gets a fresh id (reported back).
                request_id = uuid.uuid4().hex
        stack_context = None
        if hold.stack_id is not None:
            stack_context = _stack_context(principal, hold.stack_id, terms)
        elif stacks_to_try:
            self._terms.forget(principal.user_id)  # its stacks are used up: stop trying them
        RESERVATIONS_HELD.inc()
        return MeteredRequest(hold, estimate, override, self._clock(), stack_context)

    def resume(self, hold: Hold, estimate: Estimate, override: TokenPrice | None) -> MeteredRequest:
        """A reservation made elsewhere (another core instance's confidential lock), to settle here."""
        return MeteredRequest(hold, estimate, override, self._clock())

    def charge(self, metered: MeteredRequest, outcome: str, served: Served) -> Charge:
        """What the request used and costs (see the module docstring), before the cap of its hold."""
        latency_ms = int((self._clock() - metered.started) * 1000)
        node = served.node
        if node is None:
            return Charge(outcome, latency_ms=latency_ms)
        estimate = metered.estimate
        if estimate.kind is RequestKind.IMAGES:
            cost = estimate.images * self.image_price(node) if outcome == Outcome.OK else 0
            return Charge(outcome, node.id, cost=cost, latency_ms=latency_ms)
        usage = _believed_usage(served.usage, estimate)
        reported_prompt = usage.get("prompt_tokens")
        reported_completion = usage.get("completion_tokens")
        if estimate.kind is RequestKind.EMBEDDINGS:
            completion = 0
            produced = outcome == Outcome.OK
        else:
            completion = reported_completion if reported_completion is not None else served.delivered
            completion = min(completion, estimate.completion_tokens)  # never more than was reserved
            produced = outcome == Outcome.OK or completion > 0
        if not produced:
            return Charge(outcome, node.id, latency_ms=latency_ms)
        if outcome == Outcome.OK and reported_prompt is not None:
            prompt = reported_prompt
        elif estimate.prompt_exact or reported_prompt is None:
            prompt = estimate.prompt_tokens
        else:
            prompt = reported_prompt
        if metered.hold.stack_id is not None:
            return Charge(outcome, node.id, prompt, completion, units=prompt + completion, latency_ms=latency_ms)
        price = metered.override or _node_price(node)
        return Charge(
            outcome, node.id, prompt, completion, cost=token_cost(prompt, completion, price), latency_ms=latency_ms
        )

    async def settle(self, metered: MeteredRequest | None, outcome: str, served: Served) -> int:
        """Settle once (later calls return the first result); returns the micro-USD charged.

        The settlement runs as its own task: cancelling the caller (the client left, the deadline
        passed) stops the wait, never the settlement.
        """
        if metered is None:
            return 0
        if metered.settled:
            return metered.cost
        metered.settled = True
        RESERVATIONS_HELD.dec()
        charge = self.charge(metered, outcome, served)
        task = asyncio.create_task(self._apply(metered.hold, charge), name=f"settle-{metered.hold.request_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        # The answer does not wait for a database that is away: it reports what the settlement will charge
        # (the charge, capped by the hold) while the settlement retries until the database is back. With
        # `answer_before_settlement` a successful answer does not wait at all: the commit follows it.
        done: set[Any] = set()
        if not (self.settings.answer_before_settlement and outcome == Outcome.OK):
            done, _ = await asyncio.wait({task}, timeout=self._statement_timeout)
        if not done:
            metered.cost = 0 if metered.hold.stack_id is not None else min(charge.cost, metered.hold.amount)
            return metered.cost
        settlement = task.result()
        metered.cost = settlement.cost if settlement is not None else 0
        return metered.cost

    async def _apply(self, hold: Hold, charge: Charge) -> Settlement | None:
        # During a database outage a settlement is retried until the database is back (as long as a
        # reservation may live): the request was served, so it is charged, late if need be.
        give_up_at = self._clock() + self.settings.max_request_seconds + self.settings.reservation_margin
        attempt = 0
        while True:
            try:
                settlement = await self._settle_once(hold, charge)
            except (IntegrityError, psycopg.errors.IntegrityError):
                log.exception("settlement of %s violates the ledger's constraints", hold.request_id)
                return None
            except (SQLAlchemyError, psycopg.Error, DatabaseTimeout) as error:
                attempt += 1
                outage = is_database_outage(error)
                if (not outage and attempt >= _SETTLE_ATTEMPTS) or self._clock() >= give_up_at:
                    # The reservation stays held; the sweeper releases it when it expires.
                    log.exception("could not settle %s; the sweeper will release it", hold.request_id)
                    return None
                if outage and attempt == _SETTLE_ATTEMPTS:
                    log.warning("database unavailable: settling %s once it is back", hold.request_id)
                await asyncio.sleep(min(0.05 * 4 ** (attempt - 1), _MAX_SETTLE_RETRY_DELAY))
                continue
            if settlement is None:
                log.warning("reservation %s was no longer held: nothing settled", hold.request_id)
            elif settlement.late:
                log.warning("reservation %s had expired; settled late for %d", hold.request_id, settlement.cost)
            elif charge.cost > settlement.cost or charge.units > settlement.units:
                log.warning(
                    "request %s used more than it reserved (%d > %d micro-USD): charged the reservation",
                    hold.request_id,
                    charge.cost,
                    settlement.cost,
                )
            return settlement

    async def _reserve_once(self, **reservation: Any) -> Hold:
        if self._writer is not None:  # bounded by the writer's own statement timeout
            return await reserve_postgresql(self._writer, **reservation)
        return await within(self._statement_timeout, self._reserve_sqlite(**reservation), "the reservation")

    async def _reserve_sqlite(self, **reservation: Any) -> Hold:
        async with self._engine.begin() as connection:
            return await reserve(connection, **reservation)

    async def _settle_once(self, hold: Hold, charge: Charge) -> Settlement | None:
        request_id = hold.request_id
        if self._writer is None:
            async with self._engine.begin() as connection:
                return await settle(connection, request_id, charge)
        settlement = await settle_held_postgresql(self._writer, request_id, charge, user_id=hold.user_id)
        if settlement is None and (charge.cost > 0 or charge.units > 0):
            async with self._engine.begin() as connection:  # the rare late path: several statements
                settlement = await settle_late(connection, request_id, charge)
        return settlement

    async def drain(self, grace: float | None = None) -> None:
        """Wait for the settlements under way (at most `grace` seconds: then those still waiting for an
        unavailable database are abandoned to the sweeper)."""
        deadline = None if grace is None else time.monotonic() + grace
        while self._pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.warning("%d settlements abandoned at shutdown; the sweeper releases them", len(self._pending))
                for task in list(self._pending):
                    task.cancel()
                await asyncio.gather(*list(self._pending), return_exceptions=True)
                return
            await asyncio.wait(list(self._pending), timeout=left)

    async def aclose(self) -> None:
        """Drain the settlements, then close the ledger's connections (before disposing of the engine)."""
        await self.drain(grace=_CLOSE_GRACE)
        if self._writer is not None:
            await self._writer.aclose()
